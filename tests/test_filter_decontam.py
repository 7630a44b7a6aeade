"""Decontamination against the MATH-500 test file (MIT; see tests/data/README.md)
as a local benchmark; GSM8K questions are the clean problems. The Hub is offline here."""

import json

import polars as pl
import pytest

from conftest import GSM8K_TEST, MATH500_TEST
from curate.errors import CurateError
from curate.filters.decontam import METHODS, Benchmark, Decontam, NgramOverlap, ngrams, words

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
    f = Decontam(benchmarks=[f"MATH-500={MATH500}"])
    f.prepare(pl.DataFrame({"problem": ["unused"]}))
    return f


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
    assert Decontam().params() == {"benchmarks": ["math500"], "n": 8, "method": "ngram"}


def test_methods_registry_has_the_ngram_method(math500):
    assert METHODS["ngram"] is NgramOverlap
    m = NgramOverlap(n=8)
    m.index([Benchmark("MATH-500", math500)])
    assert m.match(math500[3])[0] == "MATH-500"
    assert m.match("Nothing like any benchmark problem at all, surely not.") is None
