"""filters/base.py: a filter written as one `verify` per row, mapped over a batch by
the base class; the registry in curate.filters."""

import subprocess
import sys

import polars as pl
import pytest

from curate.errors import CurateError
from curate.filters import filter_names, get_filter
from curate.filters.base import RowFilter, Verdict


class Shout(RowFilter):
    """Drops completions that are all capitals; scores their length and, when dropped,
    the first word."""

    name = "shout"
    needs = ("completion",)
    uses = ("domain",)
    scores = {"shout_chars": pl.Int64, "shout_word": pl.String}

    def verify(self, row):
        text = row["completion"]
        if row.get("domain") == "poetry" or not text.isupper():
            return Verdict(True, None, {"shout_chars": len(text)})
        return Verdict(False, "all capitals", {"shout_chars": len(text), "shout_word": text.split()[0]})


def test_one_verify_makes_a_batch_decision():
    batch = pl.DataFrame({"completion": ["calm words", "LOUD WORDS", "LOUD POEM", "Mixed"],
                          "domain": ["math", "math", "poetry", None], "other": [1, 2, 3, 4]})
    d = Shout()(batch)
    assert d.keep.to_list() == [True, False, True, True]
    assert d.reason.to_list() == [None, "all capitals", None, None]
    assert d.scores["shout_chars"].to_list() == [10, 10, 9, 5]
    assert d.scores["shout_word"].to_list() == [None, "LOUD", None, None]
    # a column in `uses` is optional: without it every row is judged without it
    assert Shout()(batch.drop("domain")).keep.to_list() == [True, False, False, True]


def test_an_empty_batch_gives_typed_empty_columns():
    d = Shout()(pl.DataFrame({"completion": []}, schema={"completion": pl.String}))
    assert (d.keep.dtype, d.reason.dtype) == (pl.Boolean, pl.String)
    assert {name: s.dtype for name, s in d.scores.items()} == {"shout_chars": pl.Int64, "shout_word": pl.String}
    assert all(len(s) == 0 for s in (d.keep, d.reason, *d.scores.values()))


def test_score_columns_keep_their_type_when_every_value_is_missing():
    d = Shout()(pl.DataFrame({"completion": ["calm", "quiet"]}))
    assert d.scores["shout_word"].dtype == pl.String and d.scores["shout_word"].null_count() == 2


def test_a_kept_row_has_no_reason_and_an_undeclared_score_is_refused():
    class Loose(Shout):
        def verify(self, row):
            return Verdict(True, "ignored: the row is kept", {"shout_chars": 1, "surprise": 2})

    with pytest.raises(ValueError, match="'surprise' is not declared in Loose.scores"):
        Loose()(pl.DataFrame({"completion": ["a"]}))
    loose = Loose()
    loose.scores = {**Shout.scores, "surprise": pl.Int64}
    assert loose(pl.DataFrame({"completion": ["a"]})).reason.to_list() == [None]


def test_verdicts_are_values():
    assert Verdict(False, "x", {"a": 1}) == Verdict(False, "x", {"a": 1})
    with pytest.raises(AttributeError):
        Verdict(True).keep = False


def test_the_registry_names_every_filter_and_imports_lazily():
    assert filter_names() == ["format", "length", "math", "code", "language", "readability", "dedup", "decontam"]
    assert get_filter("format").__name__ == "Format"
    with pytest.raises(CurateError, match="unknown filter 'nope'; available: format, length, math"):
        get_filter("nope")
    code = "import sys, curate.filters; print(sorted({'polars', 'math_verify', 'fasttext'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
