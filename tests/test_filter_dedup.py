import json
import random

import polars as pl
import pytest

from conftest import MATH500_TEST
from curate.errors import CurateError
from curate.filters.dedup import (
    Dedup,
    candidate_pairs,
    estimated_jaccard,
    exact_key,
    lsh_bands,
    minhash_signature,
    normalize_text,
    shingle_hashes,
)


@pytest.fixture(scope="module")
def solutions() -> list[str]:
    with open(MATH500_TEST) as f:
        return [json.loads(line)["solution"] for line in f]


def word_edits(text: str, k: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = text.split(" ")
    for _ in range(k):
        words[rng.randrange(len(words))] += "s"
    return " ".join(words)


def run(f: Dedup, frame: pl.DataFrame) -> list[str | None]:
    f.prepare(frame)
    return f(frame).reason.to_list()


def test_normalize_text_and_exact_key_ignore_case_punctuation_space():
    assert normalize_text("  Ｈｅｌｌｏ,   World!\n$x^2$ ") == "hello world x 2"
    assert exact_key("Hello, world!") == exact_key("hello   WORLD") != exact_key("hello there")


def test_minhash_signature_near_copy_vs_unrelated(solutions):
    long = next(s for s in solutions if len(s.split()) > 200)
    assert estimated_jaccard(minhash_signature(long), minhash_signature(word_edits(long, 1))) > 0.9
    assert estimated_jaccard(minhash_signature(long), minhash_signature(solutions[0])) < 0.1
    # shorter than 5 words: the whole text is the one shingle
    assert estimated_jaccard(minhash_signature("Answer: 18"), minhash_signature("answer 18")) == 1.0
    assert estimated_jaccard(minhash_signature("Answer: 18"), minhash_signature("answer 19")) == 0.0


def test_shingle_hashes_are_word_ngrams_within_each_text():
    import polars as pl

    texts = pl.Series(["a b c d e f", "a b c d e", "x y", "b c d e f a", ""])
    flat, offsets = shingle_hashes(texts)
    assert offsets.tolist() == [0, 2, 3, 4, 6, 7]  # 2 five-grams, 1, one short text, 2, one (empty) text
    rows = [flat[offsets[i] : offsets[i + 1]].tolist() for i in range(5)]
    assert rows[0][0] == rows[1][0]  # "a b c d e" in both texts
    assert rows[0][1] == rows[3][0]  # "b c d e f" in both: n-grams never cross into the next text
    assert rows[3][1] not in rows[0]  # "c d e f a" is not "a b c d e": word order counts
    assert rows[2] != rows[4] and len(set(flat.tolist())) == 5
    # the same text gives the same hashes wherever it sits in the batch
    again, _ = shingle_hashes(pl.Series(["x y", "a b c d e f"]))
    assert again[0] == rows[2][0] and again[1:].tolist() == rows[0]


def test_candidate_pairs_share_a_whole_band():
    import numpy as np

    d = np.arange(5 * 8, dtype=np.uint32).reshape(5, 8)
    d[3, :4] = d[0, :4]  # rows 0 and 3 share band 0 (slots 0-3)
    d[4, 4:] = d[1, 4:]  # rows 1 and 4 share band 1
    d[2, :3] = d[1, :3]  # rows 1 and 2 share 3 of band 0's 4 slots: not a candidate
    assert sorted(map(tuple, candidate_pairs(d, bands=2).tolist())) == [(0, 3), (1, 4)]
    assert candidate_pairs(d[:1], bands=2).shape == (0, 2)


def test_lsh_bands_from_threshold():
    assert lsh_bands(0.8, 128) == 16  # 16 bands x 8 rows: (1/16)**(1/8) = 0.71
    assert lsh_bands(0.5, 128) == 32


def test_exact_survivor_is_smallest_sample_id_whatever_the_order():
    frame = pl.DataFrame({
        "sample_id": ["c", "a", "b", "d"],
        "completion": ["Same text.", "same   TEXT", "other", "SAME text!"],
    })
    for seed in range(3):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        reasons = dict(zip(shuffled["sample_id"], run(Dedup(mode="exact"), shuffled)))
        assert reasons == {"a": None, "b": None, "c": "exact duplicate of a", "d": "exact duplicate of a"}


def test_near_copies_caught_distinct_solutions_kept(solutions):
    originals = [s for s in solutions if len(s.split()) >= 150][:20]
    copies = [word_edits(s, 2, seed=i) for i, s in enumerate(originals)]
    frame = pl.DataFrame({
        "sample_id": [f"a{i:03d}" for i in range(len(solutions))] + [f"b{i:03d}" for i in range(len(copies))],
        "completion": solutions + copies,
    })
    reasons = run(Dedup(), frame)
    assert all(r is None for r in reasons[: len(solutions)])  # 500 distinct solutions: none flagged
    dropped = reasons[len(solutions):]
    assert all(r is not None and r.startswith("near duplicate of a") for r in dropped)
    j = float(dropped[0].split("J≈")[1].rstrip(")"))
    assert 0.8 <= j < 1.0


def test_mode_exact_ignores_near_and_mode_near_names_exact_copies_near(solutions):
    long = next(s for s in solutions if len(s.split()) > 200)
    frame = pl.DataFrame({"sample_id": ["1", "2", "3"], "completion": [long, long.upper(), word_edits(long, 1)]})
    assert run(Dedup(mode="exact"), frame) == [None, "exact duplicate of 1", None]
    near = run(Dedup(mode="near"), frame)
    assert near[0] is None and near[1] == "near duplicate of 1 (J≈1.00)" and near[2].startswith("near duplicate of 1")


def test_on_problem_and_on_pair():
    frame = pl.DataFrame({
        "sample_id": ["1", "2", "3"],
        "problem": ["What is 2+2?", "What is 2+2?", "What is 3+3?"],
        "completion": ["It is 4.", "Four.", "It is 4."],
    })
    assert run(Dedup(on="problem"), frame) == [None, "exact duplicate of 1", None]
    assert run(Dedup(on="both"), frame) == [None, None, None]
    assert run(Dedup(on="completion"), frame) == [None, None, "exact duplicate of 1"]


def test_batches_are_marked_by_sample_id_and_nulls_kept():
    frame = pl.DataFrame({"sample_id": ["1", "2", "3", "4"], "completion": ["x y", None, "X, y.", None]})
    f = Dedup()
    f.prepare(frame)
    assert f(frame.slice(2, 2)).reason.to_list() == ["exact duplicate of 1", None]
    assert f(frame.slice(0, 2)).keep.to_list() == [True, True]


def test_empty_input_prepares_an_empty_index():
    f = Dedup()
    f.prepare(pl.DataFrame())
    assert f(pl.DataFrame({"sample_id": ["1"], "completion": ["x"]})).keep.to_list() == [True]


def test_without_sample_id_rows_are_positions():
    frame = pl.DataFrame({"completion": ["a b c", "d e f", "A B C"]})
    f = Dedup()
    f.prepare(frame)
    first, second = f(frame.slice(0, 2)), f(frame.slice(2, 1))
    assert first.reason.to_list() == [None, None]
    assert second.reason.to_list() == ["exact duplicate of 0"]


def test_against_earlier_datasets(tmp_path, solutions):
    long = next(s for s in solutions if len(s.split()) > 200)
    folder = tmp_path / "earlier"
    folder.mkdir()
    pl.DataFrame({"completion": [long]}).write_parquet(folder / "part-0.parquet")
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_text(json.dumps({"completion": "An old answer."}) + "\n")
    frame = pl.DataFrame({
        "sample_id": ["1", "2", "3"],
        "completion": [word_edits(long, 1), "an OLD answer", "fresh text"],
    })
    reasons = run(Dedup(against=[str(folder), str(jsonl)]), frame)
    assert reasons == [f"duplicate of {folder}", f"duplicate of {jsonl}", None]


def test_errors_are_one_line_curate_errors(tmp_path):
    with pytest.raises(CurateError, match="parameter mode"):
        Dedup(mode="fuzzy")
    with pytest.raises(CurateError, match="bands must divide"):
        Dedup(bands=7)
    with pytest.raises(CurateError, match="no column problem"):
        Dedup(on="problem").prepare(pl.DataFrame({"completion": ["x"]}))
    with pytest.raises(CurateError, match="not unique"):
        Dedup().prepare(pl.DataFrame({"sample_id": ["1", "1"], "completion": ["x", "y"]}))
    with pytest.raises(CurateError, match="prepare"):
        Dedup()(pl.DataFrame({"sample_id": ["1"], "completion": ["x"]}))
    with pytest.raises(CurateError, match="no such file"):
        Dedup(against=[str(tmp_path / "missing.parquet")])
