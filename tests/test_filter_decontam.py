"""Decontamination against the MATH-500 test file (MIT; see tests/data/README.md)
as a local benchmark; GSM8K questions are the clean problems. The Hub is offline here."""

import json
from pathlib import Path

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


def test_the_ngram_method(math500):
    assert METHODS == ("ngram", "embed", "llm")
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


# -- paraphrase-robust methods: embed (nearest neighbours + numbers) and llm (a judge) -----

# GSM8K and MATH-500 test problems rephrased (benchmarks/data/README.md)
REPHRASED = [json.loads(line) for line in
             (Path(__file__).parents[1] / "benchmarks" / "data" / "decontam_rephrased.jsonl").open()]


def test_embed_catches_rephrased_benchmark_problems(gsm8k, math500):
    f = Decontam(benchmarks=["gsm8k", f"MATH-500={MATH500}"], method="embed")
    verdicts = f.check_many([r["rephrased"] for r in REPHRASED])
    caught = [not v.keep for v in verdicts]
    assert sum(caught) / len(caught) >= 0.9
    first = verdicts[0]  # Janet's ducks, rephrased
    assert first.scores["decontam_benchmark"] == "GSM8K"
    assert first.reason.startswith("contaminated: GSM8K rephrased (GSM8K item 0, cosine ")
    assert "numbers 1.00" in first.reason
    assert Decontam(benchmarks=["gsm8k"], method="ngram").check_many([REPHRASED[0]["rephrased"]])[0].keep


def test_embed_leaves_other_problems_of_the_same_kind(gsm8k, tmp_path):
    # GSM8K's even items as the benchmark, its odd items as training problems: all different problems
    path = tmp_path / "even.jsonl"
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in gsm8k[0::2]))
    verdicts = Decontam(benchmarks=[f"GSM8K-even={path}"], method="embed").check_many(gsm8k[1::2])
    flagged = sum(not v.keep for v in verdicts)
    assert flagged / len(verdicts) <= 0.01, flagged


def test_the_same_template_with_other_numbers_is_not_contaminated():
    f = Decontam(benchmarks=["gsm8k"], method="embed")
    original_numbers = REPHRASED[0]["rephrased"]
    other = original_numbers.replace("16", "25").replace("three", "five").replace("four", "six").replace("$2", "$3")
    assert not f.check(original_numbers).keep and f.check(other).keep


def test_llm_method_asks_the_judge_about_near_items_only():
    from servers import Reply, ScriptedServer, chat_response

    janet = REPHRASED[0]["rephrased"]

    def respond(call):
        same = "Janet" in call.prompt.split("Benchmark problem:")[1] and "Janet" in call.prompt.split("Benchmark")[0]
        return Reply(body=chat_response(["Same givens, same question. [[YES]]" if same else "Different. [[NO]]"]))

    with ScriptedServer(respond) as server:
        f = Decontam(benchmarks=["gsm8k"], method="llm", ask=1,
                     judge={"backend": "openai", "base_url": server.base_url, "model": "judge"})
        try:
            verdicts = f.check_many([janet, "Write a haiku about the sea.", REPHRASED[1]["rephrased"]])
        finally:
            f.close()
        asked = len(server.calls)
    assert [v.keep for v in verdicts] == [False, True, True]
    assert verdicts[0].reason.startswith("contaminated: GSM8K rephrased (judge: same problem; GSM8K item 0, cosine")
    assert asked == 2  # the haiku has no candidate near enough to ask about
    assert f.work_counts() == {"judge_calls": 2} and f.manifest_info()["methods"] == ["llm"]


def test_methods_combine_in_order_and_bad_settings_are_one_line_errors(math500):
    f = Decontam(benchmarks=[f"MATH-500={MATH500}"], method="ngram+embed")
    rephrased = next(r["rephrased"] for r in REPHRASED if r["benchmark"] == "math500")
    verdicts = f.check_many([math500[3], rephrased])
    assert "8-gram" in verdicts[0].reason or "whole problem" in verdicts[0].reason
    assert "rephrased" in verdicts[1].reason
    assert Decontam(benchmarks=["math500"]).params() == {"benchmarks": ["math500"], "n": 8, "method": "ngram",
                                                         "min_informative": 3}
    for kwargs, message in [({"method": "bert"}, "method must be one or more of ngram, embed, llm"),
                            ({"method": "embed+embed"}, "method must be one or more"),
                            ({"threshold": 0.5}, "parameter threshold is not used by method ngram"),
                            ({"method": "llm"}, "method llm needs a judge"),
                            ({"method": "embed", "threshold": 2.0}, "parameter threshold must be <= 1.0")]:
        with pytest.raises(CurateError, match=message):
            Decontam(benchmarks=["math500"], **kwargs)


def test_an_embed_filter_travels_to_a_worker_and_rebuilds_its_index():
    import pickle

    f = Decontam(benchmarks=["gsm8k"], method="embed")
    assert not f.check(REPHRASED[0]["rephrased"]).keep
    g = pickle.loads(pickle.dumps(f))
    assert not g.check(REPHRASED[0]["rephrased"]).keep


def test_embed_with_a_local_encoder_model(tiny_model):
    f = Decontam(benchmarks=[f"MATH-500={MATH500}"], method="embed", embed_model=str(tiny_model), threshold=0.999)
    verdict = f.check(read(MATH500, "problem")[7])  # the very text: cosine 1 with any encoder
    assert not verdict.keep and "MATH-500 item 7" in verdict.reason
