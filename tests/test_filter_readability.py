"""Readability on clean maths solutions (MATH-500 and GSM8K test files, MIT; see
tests/data/README.md) wrapped as R1 traces, and on constructed degenerate ones."""

import json

import polars as pl
import pytest

from conftest import GSM8K_TEST, MATH500_TEST
from curate.errors import CurateError
from curate.filters.readability import Readability, readability_signals


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def clean() -> list[str]:
    rows = [f"<think>{r['solution']}</think>\n\nThe answer is $\\boxed{{{r['answer']}}}$."
            for r in read(MATH500_TEST)]
    for r in read(GSM8K_TEST):
        work, final = r["answer"].rsplit("####", 1)
        rows.append(f"<think>{work.strip()}</think>\n\nThe answer is {final.strip()}.")
    return rows


@pytest.fixture(scope="module")
def solution() -> str:
    return read(MATH500_TEST)[3]["solution"]


def reason(completion: str, **params) -> str | None:
    return Readability(**params)(pl.DataFrame({"completion": [completion]})).reason[0]


def test_clean_maths_traces_are_all_kept(clean):
    d = Readability()(pl.DataFrame({"completion": clean}))
    assert len(clean) == 1819
    assert d.keep.all(), d.reason.drop_nulls().to_list()[:5]


def test_maths_delimiter_lines_are_not_repeated_lines():
    trace = "<think>First,\n\\[\nx = 1\n\\]\nthen\n\\[\ny = 2\n\\]\nand\n$$\nz = 3\n$$\n</think>\n\nok"
    assert readability_signals(trace)["duplicate_line_fraction"] == 0.0


def test_paragraph_repeated_ten_times(solution):
    para = "Wait, let me reconsider the problem from the start and check the computation again carefully."
    trace = f"<think>{solution}\n\n" + "\n\n".join([para] * 10) + "</think>\n\nDone."
    s = readability_signals(trace)
    assert s["duplicate_paragraph_fraction"] > 0.3
    assert reason(trace).startswith("duplicate lines")
    assert reason(trace, max_duplicate_line_fraction=1.0).startswith("duplicate paragraphs")


def test_line_repeated_fifty_times(solution):
    trace = f"<think>{solution}\n" + "\n".join(["So the answer is 5, but wait."] * 50) + "</think>\n\nDone."
    assert reason(trace) == "duplicate lines 0.73 > 0.30"


def test_long_paragraph_reason_names_the_value():
    trace = "<think>" + " ".join(f"word{i}" for i in range(900))[:6000] + "</think>\n\nDone."
    assert reason(trace) == "paragraph of 6,000 chars > 3,000"


def test_code_fence_in_maths_reasoning_but_not_in_code_or_answer(solution):
    trace = f"<think>{solution}\n\n```python\nprint(2+2)\n```\n</think>\n\nDone."
    assert reason(trace) == "code fence in reasoning (2 ```)"
    code = Readability()(pl.DataFrame({"completion": [trace], "domain": ["code"]}))
    assert code.keep.to_list() == [True]
    assert reason(trace, allow_code_in_reasoning=True) is None
    assert reason(f"<think>{solution}</think>\n\n```python\nprint(4)\n```") is None


def test_repeated_phrase_across_distinct_lines_is_a_top_ngram():
    lines = [f"Let me check step {i} again, wait, let me check the sum once more." for i in range(40)]
    trace = "<think>" + "\n".join(lines) + "</think>\n\nok"
    assert reason(trace) == "top 3-gram covers 0.39 > 0.30"  # "let me check", 80 times


def test_signals_keys_and_unique_ratio_uses_windows(solution):
    s = readability_signals(f"<think>{solution}</think>\n\nok")
    assert set(s) == {"longest_paragraph_chars", "code_fences_in_reasoning", "duplicate_line_fraction",
                      "duplicate_paragraph_fraction", "top_2gram", "top_3gram", "top_4gram", "unique_word_ratio"}
    looped = "<think>" + " ".join(f"w{i}" for i in range(3000)) + " " + " ".join(["again"] * 600) + "</think>"
    assert readability_signals(looped)["unique_word_ratio"] < 0.01  # the loop's window, not the whole


def test_null_completion_is_kept_and_bad_params_fail():
    d = Readability()(pl.DataFrame({"completion": [None]}, schema={"completion": pl.String}))
    assert d.keep.to_list() == [True]
    with pytest.raises(CurateError, match="max_duplicate_line_fraction"):
        Readability(max_duplicate_line_fraction=1.5)
    with pytest.raises(CurateError, match="max_paragraph_chars"):
        Readability(max_paragraph_chars=0)


def test_batch_path_gives_each_rows_own_verdict(clean, solution):
    """The batch path (words of all rows numbered together) decides as verify does row by row."""
    rows = [*clean[:300], "<think>" + (solution + "\n\n") * 10 + "</think>", None, "x " * 300,
            "<think>\n```python\nprint(1)\n```\n</think>"]
    domains = [None] * (len(rows) - 1) + ["code"]
    f = Readability()
    batch = f(pl.DataFrame({"completion": rows, "domain": domains}))
    one_by_one = [f.verify({"completion": c, "domain": d}) for c, d in zip(rows, domains)]
    assert batch.keep.to_list() == [v.keep for v in one_by_one]
    assert batch.reason.to_list() == [None if v.keep else v.reason for v in one_by_one]
    assert batch.scores["readability_duplicate_lines"].to_list() == [
        v.scores.get("readability_duplicate_lines") for v in one_by_one]
    assert not all(batch.keep) and any(batch.keep)
