import json
import random

import polars as pl
import pytest

from conftest import MATH500_TEST
from curate.errors import CurateError
from curate.executor import make_executor
from curate.filters.dedup import (
    Dedup,
    band_values,
    bbit_jaccard,
    estimated_jaccard,
    exact_key,
    lsh_bands,
    minhash_signature,
    near_pairs,
    normalize_text,
    shingle_hashes,
    slot_bits,
    text_hashes,
    word_hashes,
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


def shards_of(frame: pl.DataFrame, sizes: list[int]) -> list[pl.DataFrame]:
    """The frame cut into shards of the given sizes (the last takes the rest), each with
    the chain's `_row` (position in the whole input)."""
    frame = frame.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    cuts, start = [], 0
    for size in sizes:
        cuts.append(frame.slice(start, size))
        start += size
    return [*cuts, frame.slice(start)] if start < frame.height else cuts


def protocol(f: Dedup, shards: list[pl.DataFrame], executor) -> list[pl.DataFrame]:
    """The chain's stateful-filter steps: index every shard (through the executor), resolve,
    then mark every shard; the shards come back with `keep` and `reason`."""
    indexes = list(executor.map(f.index, shards))
    f.resolve(indexes, executor)
    # marked in worker processes / Ray tasks (the filter travels with its drops), in reverse order
    marked = [shard.with_columns(keep=d.keep, reason=d.reason)
              for shard, d in zip(shards[::-1], executor.map(f, shards[::-1]))]
    return marked[::-1]


def run(f: Dedup, frame: pl.DataFrame, sizes=(2,)) -> list[str | None]:
    with make_executor("local", 1) as executor:
        return pl.concat(protocol(f, shards_of(frame, list(sizes)), executor))["reason"].to_list()


def test_normalize_text_and_exact_key_ignore_case_punctuation_space():
    assert normalize_text("  Ｈｅｌｌｏ,   World!\n$x^2$ ") == "hello world x 2"
    assert exact_key("Hello, world!") == exact_key("hello   WORLD") != exact_key("hello there")


def test_byte_kernel_words_are_the_normalised_words():
    """The numpy kernel splits and lowercases ASCII text exactly as normalize_text does
    (every ASCII byte, mixed with non-ASCII texts, which polars normalises first)."""
    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)] + list("éÉ—’…≤×πΩ中ﬁＡ")
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    texts += ["Hello, World!", "hello world", "", " \t ", "A.B", "x" * 300]
    hashes, counts = word_hashes(pl.Series(texts))
    words = [w for t in texts for w in normalize_text(t).split(" ") if w]
    assert counts.tolist() == [len([w for w in normalize_text(t).split(" ") if w]) for t in texts]
    by_word = {}
    for w, h in zip(words, hashes.tolist()):
        assert by_word.setdefault(w, h) == h
    assert len(set(by_word.values())) == len(by_word)  # distinct words, distinct hashes
    keys = text_hashes(pl.Series(texts))[0].tolist()
    by_text = {}
    for t, k in zip(texts, keys):
        assert by_text.setdefault(normalize_text(t), k) == k and exact_key(t) == k
    assert len(set(by_text.values())) == len(by_text)


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


def test_near_pairs_are_rows_equal_on_a_whole_band():
    import numpy as np

    sig = np.arange(5 * 8, dtype=np.uint8).reshape(5, 8)
    sig[3, :4] = sig[0, :4]  # rows 0 and 3 share band 0 (slots 0-3)
    sig[4, 4:] = sig[1, 4:]  # rows 1 and 4 share band 1
    sig[2, :3] = sig[1, :3]  # rows 1 and 2 share 3 of band 0's 4 slots: not a candidate
    values = band_values(sig, bands=2)
    assert values[3, 0] == values[0, 0] and values[4, 1] == values[1, 1] and values[2, 0] != values[1, 0]
    assert values[3, 0] != band_values(sig[:, [4, 5, 6, 7, 0, 1, 2, 3]], bands=2)[0, 1]  # band number mixed in
    with make_executor("local", 1) as executor:
        found = near_pairs(sig, 2, 0.0, executor)
        assert found[:, :2].tolist() == [[0, 3], [1, 4]]
        assert found[:, 2] == pytest.approx(bbit_jaccard(sig[[0, 1]], sig[[3, 4]]))
        assert near_pairs(sig, 2, 0.5, executor).shape == (0, 3)  # 4 of 8 slots: J = 0.498 after the chance
        assert near_pairs(sig, 2, 0.0, executor, split=2)[:, :2].tolist() == [[0, 3], [1, 4]]
        assert near_pairs(sig, 2, 0.0, executor, split=4)[:, :2].tolist() == [[1, 4]]
        assert near_pairs(sig, 2, 0.0, executor, split=5).shape == (0, 3)
        assert near_pairs(sig[:1], 2, 0.0, executor).shape == (0, 3)


def test_bbit_signatures_estimate_the_jaccard(solutions):
    long = next(s for s in solutions if len(s.split()) > 200)
    full = [minhash_signature(t, 256) for t in (long, word_edits(long, 3), solutions[0])]
    bbit = [slot_bits(s) for s in full]
    assert bbit[0].dtype == "uint8" and bbit[0].shape == (256,)
    assert abs(bbit_jaccard(bbit[0], bbit[1]) - estimated_jaccard(full[0], full[1])) < 0.05
    assert bbit_jaccard(bbit[0], bbit[2]) < 0.05


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
    with make_executor("local", 1) as executor:
        f.resolve([f.index(frame.slice(2, 2)), f.index(frame.slice(0, 2))], executor)
    assert f(frame.slice(2, 2)).reason.to_list() == ["exact duplicate of 1", None]
    assert f(frame.slice(0, 2)).keep.to_list() == [True, True]


def test_empty_input_resolves_to_nothing_dropped():
    f = Dedup()
    with make_executor("local", 1) as executor:
        f.resolve([f.index(pl.DataFrame({"sample_id": [], "completion": []},
                                        schema={"sample_id": pl.String, "completion": pl.String})), None], executor)
    assert f(pl.DataFrame({"sample_id": ["1"], "completion": ["x"]})).keep.to_list() == [True]


def test_without_sample_id_rows_are_the_chains_row_numbers():
    frame = pl.DataFrame({"completion": ["a b c", "d e f", "A B C", "a b c"]})
    assert run(Dedup(), frame, sizes=(1, 2)) == [None, None, "exact duplicate of 0", "exact duplicate of 0"]
    f = Dedup()
    with make_executor("local", 1) as executor:
        f.resolve([f.index(s) for s in shards_of(frame, [2])], executor)
    with pytest.raises(CurateError, match="sample_id or a _row"):
        f(frame)


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
        Dedup(on="problem").index(pl.DataFrame({"sample_id": ["1"], "completion": ["x"]}))
    with pytest.raises(CurateError, match="not unique"):  # across shards
        run(Dedup(), pl.DataFrame({"sample_id": ["1", "1"], "completion": ["x", "y"]}), sizes=(1,))
    with pytest.raises(CurateError, match="resolve"):
        Dedup()(pl.DataFrame({"sample_id": ["1"], "completion": ["x"]}))
    with pytest.raises(CurateError, match="no such file"):
        Dedup(against=[str(tmp_path / "missing.parquet")])


def planted(solutions: list[str]) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """The 500 MATH-500 solutions, a near copy (2 words edited) of each of the 70 of at
    least 150 words, and exact copies (case and punctuation changed) of 10; ids shuffled."""
    rng = random.Random(7)
    long = [i for i, s in enumerate(solutions) if len(s.split()) >= 150]
    texts = solutions + [word_edits(solutions[i], 2, seed=i) for i in long]
    texts += [solutions[i].upper().replace(".", " !") for i in range(10)]
    ids = [f"{rng.random():.12f}" for _ in texts]
    truth = [(ids[i], ids[len(solutions) + k]) for k, i in enumerate(long)]
    return pl.DataFrame({"sample_id": ids, "completion": texts}), truth


def decisions(shards: list[pl.DataFrame]) -> dict:
    return dict(pl.concat(shards).select("sample_id", "reason").iter_rows())


def survivor(reasons: dict, x: str) -> str:
    r = reasons[x]
    return r.split(" of ")[1].split(" ")[0] if r else x


def test_index_holds_ids_keys_and_signatures_never_text(solutions):
    frame = pl.DataFrame({"sample_id": ["a", "b", "c"], "completion": solutions[:2] + [None]})
    index = Dedup().index(frame)
    assert index.schema == {"id": pl.String, "key": pl.UInt64, "sig": pl.Array(pl.UInt8, 128)}
    assert index["id"].to_list() == ["a", "b"]  # a null text takes no part
    assert index.estimated_size() <= 2 * (128 + 8 + 8 + 8)
    rows = Dedup(mode="exact").index(frame.drop("sample_id").with_row_index("_row", offset=10))
    assert rows.schema == {"id": pl.Int64, "key": pl.UInt64} and rows["id"].to_list() == [10, 11]


def test_planted_near_copies_recalled_and_nothing_else_dropped(solutions):
    frame, truth = planted(solutions)
    reasons = decisions(protocol(Dedup(), shards_of(frame, [100, 200]), make_executor("local", 1)))
    recall = sum(survivor(reasons, a) == survivor(reasons, b) for a, b in truth) / len(truth)
    assert recall == 1.0  # 2 edited words of >= 150: J >= 0.87
    assert sum(r is not None for r in reasons.values()) == len(truth) + 10  # and the 10 exact copies


def test_survivors_do_not_depend_on_shard_order_sizes_or_workers(solutions):
    frame, _ = planted(solutions)
    with make_executor("local", 1) as one:
        expected = decisions(protocol(Dedup(), shards_of(frame, [580]), one))
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
        for sizes in ([1, 99, 250], [300]):
            shards = shards_of(shuffled, sizes)
            assert decisions(protocol(Dedup(), shards[::-1], one)) == expected
    with make_executor("local", 2) as two:  # worker processes: index and the shuffle's tasks run there
        assert decisions(protocol(Dedup(), shards_of(frame, [200, 200]), two)) == expected
    # without sample_id: the survivor is the first row by _row, whatever the shard order
    by_row = frame.drop("sample_id")
    with make_executor("local", 1) as one:
        a = pl.concat(protocol(Dedup(), shards_of(by_row, [580]), one))["reason"].to_list()
        b = pl.concat(protocol(Dedup(), shards_of(by_row, [50, 100])[::-1], one)).sort("_row")["reason"].to_list()
    assert a == b and sum(r is not None for r in a) == 80


@pytest.mark.slow
def test_local_and_ray_give_the_same_survivors(ray_cluster, solutions, tmp_path):
    frame, _ = planted(solutions)
    earlier = tmp_path / "earlier.parquet"
    frame.slice(0, 5).select("completion").write_parquet(earlier)
    shards = shards_of(frame, [150, 150, 150])
    with make_executor("local", 1) as local:
        expected = decisions(protocol(Dedup(against=[str(earlier)]), shards, local))
    with make_executor("ray", address=ray_cluster.address) as ray:
        assert decisions(protocol(Dedup(against=[str(earlier)]), shards[::-1], ray)) == expected
    assert sum(r == f"duplicate of {earlier}" for r in expected.values()) >= 5


def test_index_hashes_in_slices_and_chunks_with_the_same_result(solutions, monkeypatch):
    from curate.filters import dedup as dedup_module

    texts = solutions[:60] + ["Ünïcode — ＡＢＣ text", "", "short"]
    frame = pl.DataFrame({"sample_id": [str(i) for i in range(len(texts))], "completion": texts})
    whole = Dedup().index(frame)
    monkeypatch.setattr(dedup_module, "CHUNK_BYTES", 300)  # smaller than most texts: one text a chunk
    assert Dedup().index(frame).equals(whole)
    monkeypatch.setattr(dedup_module, "CHUNK_BYTES", 3000)
    assert Dedup().index(frame).equals(whole)
    monkeypatch.setattr(dedup_module, "INDEX_SLICE", 7)
    assert Dedup().index(frame).equals(whole)
    series = pl.Series(texts)
    word_hashes(series), normalize_text(texts[60])
    assert series.to_list() == texts  # the non-ASCII rows are normalised in a copy
