"""Decontamination against the MATH-500 test file (MIT; see tests/data/README.md)
as a local benchmark; GSM8K questions are the clean problems. The Hub is offline here."""

import json

import polars as pl
import pytest

from conftest import GSM8K_TEST, MATH500_TEST
from curate.errors import CurateError
from curate.filters.decontam import METHODS, STOP_WORDS, Benchmark, Decontam, NgramOverlap, informative, ngrams, words

MATH500 = MATH500_TEST


def read(path, field):
    with open(path) as f:
        return [json.loads(line)[field] for line in f]


@pytest.fixture(scope="module")
def math500():
    return read(MATH500, "problem")


@pytest.fixture(scope="module")
def gsm8k():
    return read(GSM8K_TEST, "question")


@pytest.fixture(scope="module")
def decontam():
    return Decontam(benchmarks=[f"MATH-500={MATH500}"])


def test_words_keep_latex_commands_and_drop_delimiters():
    assert words(r"Convert $(0,3)$ to $(r,\theta)$, with \frac{1}{2}.") == [
        "convert", "0", "3", "to", "r", "\\theta", "with", "\\frac", "1", "2"]
    assert ("to", "r", "\\theta") in ngrams(r"Convert $(0,3)$ to $(r,\theta)$", 3)
    assert ngrams("Find x.", 8) == {("find", "x")}  # shorter than n: the whole word tuple
    assert ngrams("$$ $$", 8) == set()


def test_verbatim_problem_is_caught_with_the_ngram_in_the_reason(decontam, math500):
    d = decontam(pl.DataFrame({"problem": [math500[0]]}))
    assert d.keep.to_list() == [False]
    assert d.reason[0] == "contaminated: MATH-500 8-gram 'convert the point 0 3 in rectangular coordinates'"
    assert d.scores["decontam_benchmark"].to_list() == ["MATH-500"]


def test_changed_prefix_sharing_an_8gram_is_caught(decontam, math500):
    edited = "A student asks: please turn the point $(0, 3)$ in rectangular coordinates to polar coordinates, r > 0."
    assert decontam(pl.DataFrame({"problem": [edited]})).reason[0] == (
        "contaminated: MATH-500 8-gram 'the point 0 3 in rectangular coordinates to'")


def test_gsm8k_questions_are_clean(decontam, gsm8k):
    d = decontam(pl.DataFrame({"problem": gsm8k[:300] + [None]}))
    assert d.keep.all()
    assert d.scores["decontam_benchmark"].null_count() == 301


def test_short_problems_match_only_whole(tmp_path):
    bench = tmp_path / "tiny.jsonl"
    bench.write_text(json.dumps({"question": "What is 2+2?"}) + "\n")
    f = Decontam(benchmarks=[str(bench)])
    d = f(pl.DataFrame({"problem": ["what is 2 + 2", "What is 2+2? Show your work.", "What is 3+3?"]}))
    assert d.reason.to_list() == ["contaminated: tiny whole problem 'what is 2 2'", None, None]


def test_benchmark_files_parquet_and_json(tmp_path, math500):
    pl.DataFrame({"prompt": math500[:5]}).write_parquet(tmp_path / "b.parquet")
    pl.DataFrame({"Question": math500[5:10]}).write_json(tmp_path / "c.json")
    assert Benchmark.load(str(tmp_path / "b.parquet")).problems == math500[:5]
    assert Benchmark.load({"name": "C", "path": str(tmp_path / "c.json")}).name == "C"
    pl.DataFrame({"text": ["x"]}).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(CurateError, match="no problem column"):
        Benchmark.load(str(tmp_path / "bad.parquet"))


def test_hub_benchmark_offline_is_one_clean_line():
    with pytest.raises(CurateError) as e:  # when the chain is built, before any work
        Decontam(benchmarks=["aime24"])
    message = str(e.value)
    assert "\n" not in message
    assert "AIME 2024" in message and "HuggingFaceH4/aime_2024" in message and "local file" in message


def test_bad_parameters():
    with pytest.raises(CurateError, match="parameter method"):
        Decontam(method="embedding")
    with pytest.raises(CurateError, match="neither a known name"):
        Decontam(benchmarks=["no such thing"])
    assert Decontam().params() == {"benchmarks": ["math500"], "n": 8, "method": "ngram", "min_informative": 3}


def test_methods_registry_has_the_ngram_method(math500):
    assert METHODS["ngram"] is NgramOverlap
    m = NgramOverlap(n=8)
    m.index([Benchmark("MATH-500", math500)])
    assert m.match(math500[3])[0] == "MATH-500"
    assert m.match("Nothing like any benchmark problem at all, surely not.") is None


def test_a_benchmark_file_is_named_by_its_name_or_its_folder_not_a_split_stem(tmp_path, math500):
    for rel in ("aime24/test.jsonl", "MATH-500/data/test-00000-of-00001.parquet", "olympiad/train.json"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True)
        frame = pl.DataFrame({"problem": math500[:3]})
        frame.write_parquet(path) if path.suffix == ".parquet" else path.write_text(
            "".join(json.dumps(r) + "\n" for r in frame.to_dicts()) if path.suffix == ".jsonl" else frame.write_json())
    assert Benchmark.load(str(tmp_path / "aime24/test.jsonl")).name == "aime24"
    assert Benchmark.load(str(tmp_path / "MATH-500/data/test-00000-of-00001.parquet")).name == "MATH-500"
    assert Benchmark.load(str(tmp_path / "olympiad/train.json")).name == "olympiad"
    assert Benchmark.load(f"Mine={tmp_path / 'aime24/test.jsonl'}").name == "Mine"
    assert Benchmark.load({"name": "Given", "path": str(tmp_path / "aime24/test.jsonl")}).name == "Given"
    f = Decontam(benchmarks=[str(tmp_path / "aime24/test.jsonl")])
    reason = f(pl.DataFrame({"problem": [math500[0]]})).reason[0]
    assert reason.startswith("contaminated: aime24 8-gram '") and "test" not in reason


def test_stop_words_and_informative_words():
    assert {"what", "is", "the", "total", "amount", "of", "money", "he", "how", "many"} <= STOP_WORDS
    assert informative(tuple("what is the total amount of money he".split())) == 0
    assert informative(tuple("1 2 3 4 5 6 7 8".split())) == 0
    assert informative(("\\frac", "1", "2", "x", "y", "\\sqrt", "3", "n")) == 0  # commands, numbers, letters
    assert informative(tuple("liters of water how many liters of water".split())) == 2  # distinct words
    assert informative(tuple("convert the point 0 3 in rectangular coordinates".split())) == 4


# GSM8K test questions (0-based lines) that share an 8-gram with another question. Generic: the shared
# words are boilerplate ("calculate the total amount of money the company"); real: a shared sentence.
GENERIC_PAIRS = [(325, 796), (325, 409), (299, 1055), (32, 1088), (792, 1165), (627, 1263), (238, 979), (39, 123),
                 (110, 157), (521, 604), (639, 647), (1052, 1216), (80, 200)]
SHARED_SENTENCE_PAIRS = [(33, 863), (216, 1213), (339, 1317), (418, 558), (488, 761)]


@pytest.mark.parametrize("min_informative, generic_flagged", [(3, False), (0, True)])
def test_an_overlap_of_generic_words_or_numbers_does_not_flag_on_its_own(gsm8k, min_informative, generic_flagged):
    def flagged(a, b):
        m = NgramOverlap(n=8, min_informative=min_informative)
        m.index([Benchmark("GSM8K", [gsm8k[a]])])
        return m.match(gsm8k[b]) is not None

    assert [flagged(a, b) for a, b in GENERIC_PAIRS] == [generic_flagged] * len(GENERIC_PAIRS)
    assert all(flagged(a, b) for a, b in SHARED_SENTENCE_PAIRS)  # a shared sentence still flags
    m = NgramOverlap(n=8, min_informative=min_informative)  # a doctest's number list
    m.index([Benchmark("HumanEval", [">>> sort_numbers([1, 2, 3, 4, 5, 6, 7, 8])\n[1, 2, 3, 4, 5, 6, 7, 8]"])])
    assert (m.match("Reverse the list 1, 2, 3, 4, 5, 6, 7, 8, 9 in place.") is not None) == generic_flagged
