"""Deduplication: exact (xxh3 of normalised text) and near (MinHash + LSH), within the
input and against earlier datasets.

Pure helpers, usable on one text:

    normalize_text(s)            NFKC, lowercase, punctuation and symbols -> space,
                                 whitespace collapsed, ends stripped
    exact_key(s) -> int          xxh3_64 of normalize_text(s)
    minhash_signature(s)         rensa RMinHash over word 5-grams of the normalised text
                                 (a text of fewer than 5 words is one shingle: itself)

`Dedup` is a stateful filter. `prepare(frame)` sees the whole input once and decides
everything; `__call__(batch)` only looks the batch's rows up by `sample_id`.

How prepare decides:

1. Text per row: `on="completion"` (default), `"problem"`, or `"both"` (problem and
   completion joined by a newline: the pair is the unit). Null texts take no part.
2. Exact: polars computes the normalised text column (vectorised), xxh3_64 keys it, and
   rows with equal keys form a group.
3. Near (`mode="near"` or `"both"`): one MinHash signature per distinct exact key,
   inserted into rensa's `RMinHashLSH(threshold, num_perm, bands)`; every LSH candidate
   pair is verified with the estimated Jaccard (share of equal signature slots) >=
   `threshold` (the "estimated-Jaccard check": LSH only proposes, it never decides).
4. Clusters: union-find over exact groups and verified near pairs. The survivor of a
   cluster is the row with the smallest `sample_id` (string order), so the choice does
   not depend on batch order or on the order of the input files; without a
   `sample_id` column it is the first row in frame order.
5. Every other member is dropped: "exact duplicate of <survivor>" when its exact key
   equals the survivor's, else "near duplicate of <survivor> (J≈0.87)" with the estimated
   Jaccard to the survivor (through a chain of near pairs it can be below `threshold`).
6. `against`: earlier datasets (Parquet files, folders of Parquet, JSONL). A row whose
   exact key, or (near modes) verified near match, is found there is dropped with
   "duplicate of <path>"; this takes precedence over the within-input reason.

Choosing LSH bands: with `b` bands of `r` rows (`b * r = num_perm`) a pair of Jaccard J
becomes a candidate with probability `1 - (1 - J**r)**b`, whose steep part sits at
`(1/b)**(1/r)`. We take the divisor `b` of `num_perm` with the largest `(1/b)**(1/r)`
that is still <= `threshold - 0.05` (so pairs at the threshold are found with high
probability: 128 perms, threshold 0.8 -> 16 bands x 8 rows, P(candidate | J=0.8) = 0.95,
J=0.85 -> 0.99); the Jaccard check then removes the extra candidates. `bands` overrides.

Rows are identified by `sample_id` (must be unique). Without that column the row
position is the id, and then every batch must be a slice of the frame given to
prepare, in order, starting at row 0 (the filter counts rows as batches pass).
"""

from __future__ import annotations


import numpy as np
import polars as pl
import xxhash
from rensa import RMinHash, RMinHashLSH

from curate.errors import CurateError
from curate.filters.base import Decision, Filter
from curate.store import read_table_file, table_files

SEED = 42
NGRAM = 5


def normalized(texts: pl.Expr) -> pl.Expr:
    """The vectorised normalisation (the one definition; normalize_text uses it too).
    NFKC runs only on rows with a non-ASCII character (ASCII is already NFKC), and
    punctuation, symbols and whitespace collapse to one space in a single regex pass."""
    nfkc = pl.when(texts.str.contains(r"[^\x00-\x7F]")).then(texts.str.normalize("NFKC")).otherwise(texts)
    return nfkc.str.to_lowercase().str.replace_all(r"[\p{P}\p{S}\s]+", " ").str.strip_chars()


def normalize_text(s: str) -> str:
    """NFKC, lowercase, punctuation/symbols to spaces, whitespace collapsed."""
    return pl.select(normalized(pl.lit(s, dtype=pl.String))).item()


def exact_key(s: str) -> int:
    """xxh3_64 of the normalised text."""
    return xxhash.xxh3_64_intdigest(normalize_text(s).encode())


def shingles(normalised: str, ngram: int = NGRAM) -> list[str]:
    """Word n-grams of an already normalised text; a shorter text is one shingle."""
    words = normalised.split(" ")
    if len(words) < ngram:
        return [normalised]
    return list(map(" ".join, zip(*(words[i:] for i in range(ngram)))))


def minhash_signature(text: str, num_perm: int = 128, ngram: int = NGRAM) -> RMinHash:
    """rensa RMinHash over word n-grams of normalize_text(text)."""
    m = RMinHash(num_perm, SEED)
    m.update(shingles(normalize_text(text), ngram))
    return m


def lsh_bands(threshold: float, num_perm: int) -> int:
    """Bands for the LSH index (see the module docstring for the rule). The S-curve's
    midpoint (1/b)**(1/r) falls as b grows, so the first divisor that fits is the one
    with the largest midpoint; if none fits, every slot is its own band."""
    divisors = [b for b in range(1, num_perm + 1) if num_perm % b == 0]
    return next((b for b in divisors if (1 / b) ** (b / num_perm) <= threshold - 0.05), num_perm)


def signatures(normalised: list[str], num_perm: int) -> tuple[list[RMinHash], np.ndarray]:
    """RMinHash objects (for the LSH index) and the digests as an (n, num_perm) matrix
    (for the Jaccard check)."""
    hashes = RMinHash.from_token_sets([shingles(t) for t in normalised], num_perm, SEED)
    matrix = np.array([m.digest() for m in hashes], dtype=np.uint32).reshape(len(hashes), num_perm)
    return hashes, matrix


class Dedup(Filter):
    name = "dedup"

    def __init__(
        self,
        on: str = "completion",
        mode: str = "both",
        threshold: float = 0.8,
        num_perm: int = 128,
        bands: int | None = None,
        against: list[str] | None = None,
    ):
        self.on = self.param("on", on, str, choices=("problem", "completion", "both"))
        self.mode = self.param("mode", mode, str, choices=("exact", "near", "both"))
        self.threshold = self.param("threshold", threshold, float, minimum=0.05, maximum=1.0)
        self.num_perm = self.param("num_perm", num_perm, int, minimum=8)
        self.bands = self.param("bands", bands, int, minimum=1, optional=True)
        if self.bands is not None and self.num_perm % self.bands:
            raise CurateError(f"filter dedup: parameter bands must divide num_perm ({num_perm}), got {bands}")
        self.against = [str(p) for p in self.param("against", against or [], list)]
        for path in self.against:  # refused when the chain is planned, before anything is written
            try:
                table_files(path)
            except CurateError as e:
                raise CurateError(f"filter dedup: against {e}") from None
        self._drops: pl.DataFrame | None = None  # id, reason
        self._by_position = False
        self._seen = 0

    @property
    def needs(self) -> tuple[str, ...]:
        return ("problem", "completion") if self.on == "both" else (self.on,)

    # -- text and ids ------------------------------------------------------------------

    def _normalised_text(self, frame: pl.DataFrame, where: str) -> pl.Series:
        """The normalised text per row (null where the text is null). The streaming
        engine spreads the regex work over the cores."""
        missing = [c for c in self.needs if c not in frame.columns]
        if missing:
            raise CurateError(f"filter dedup: {where} has no column {', '.join(missing)}")
        if self.on == "both":
            text = pl.concat_str("problem", "completion", separator="\n")
        else:
            text = pl.col(self.on).cast(pl.String)
        return frame.lazy().select(normalized(text).alias("norm")).collect(engine="streaming")["norm"]

    def _near(self) -> bool:
        return self.mode in ("near", "both")

    def _exact(self) -> bool:
        return self.mode in ("exact", "both")

    # -- prepare: build the index and decide -------------------------------------------

    def prepare(self, frame: pl.DataFrame) -> None:
        self._by_position = "sample_id" not in frame.columns
        self._seen = 0
        if frame.height == 0:  # the chain's previous stage kept nothing
            self._drops = pl.DataFrame(schema={"id": pl.String, "reason": pl.String})
            return
        ids = (
            pl.Series("id", range(frame.height), dtype=pl.Int64)
            if self._by_position
            else frame["sample_id"].cast(pl.String).alias("id")
        )
        if not self._by_position and ids.n_unique() != frame.height:
            raise CurateError("filter dedup: sample_id is not unique in the input")
        rows = pl.DataFrame({"id": ids, "norm": self._normalised_text(frame, "the input")})
        rows = rows.with_row_index("row").filter(pl.col("norm").is_not_null())
        keys = [xxhash.xxh3_64_intdigest(t.encode()) for t in rows["norm"]]
        rows = rows.with_columns(key=pl.Series(keys, dtype=pl.UInt64))

        # one representative per exact key: the smallest id (frame order without sample_id)
        order = ["id"] if not self._by_position else ["row"]
        reps = rows.sort(order).unique("key", keep="first", maintain_order=True)
        parent = {k: k for k in reps["key"]}  # union-find over exact keys

        def find(k):
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        rep_id = dict(zip(reps["key"], reps["id"]))
        rank = {k: i for i, k in enumerate(reps["key"])}  # reps are sorted: lower rank wins
        hashes, matrix = [], None
        if self._near() and reps.height:
            hashes, matrix = signatures(reps["norm"].to_list(), self.num_perm)
            keys_list = reps["key"].to_list()
            for i, j in self._near_pairs(hashes, matrix):
                a, b = find(keys_list[i]), find(keys_list[j])
                if a != b:
                    parent[max(a, b, key=rank.get)] = min(a, b, key=rank.get)

        reasons: dict = {}
        for key, rid in zip(rows["key"], rows["id"]):
            root = find(key)
            survivor = rep_id[root]
            if rid == survivor:
                continue
            if key == root and self._exact():
                reasons[rid] = f"exact duplicate of {survivor}"
            else:  # in mode "near" an exact copy is a near duplicate with J = 1
                j = float(np.mean(matrix[rank[key]] == matrix[rank[root]]))
                reasons[rid] = f"near duplicate of {survivor} (J≈{j:.2f})"
        reasons.update(self._against(rows, reps, hashes, matrix))
        dtype = pl.Int64 if self._by_position else pl.String
        self._drops = pl.DataFrame(
            {"id": list(reasons), "reason": list(reasons.values())},
            schema={"id": dtype, "reason": pl.String},
        )

    def _lsh(self, hashes: list[RMinHash]) -> RMinHashLSH:
        bands = self.bands or lsh_bands(self.threshold, self.num_perm)
        lsh = RMinHashLSH(self.threshold, self.num_perm, bands)
        lsh.insert_many(hashes, 0)
        return lsh

    def _near_pairs(self, hashes: list[RMinHash], matrix: np.ndarray):
        """(i, j) for LSH candidates i < j whose estimated Jaccard is >= threshold."""
        for i, candidates in enumerate(self._lsh(hashes).query_all(hashes)):
            others = np.array([j for j in candidates if j > i], dtype=np.int64)
            if len(others):
                jac = (matrix[others] == matrix[i]).mean(axis=1)
                yield from ((i, int(j)) for j in others[jac >= self.threshold])

    def _against(self, rows: pl.DataFrame, reps: pl.DataFrame, hashes, matrix) -> dict:
        """Rows of the input that duplicate (exact, or verified near) a row of an
        earlier dataset."""
        found: dict = {}
        for path in self.against:
            earlier = self._normalised_text(read_dataset(path), path).drop_nulls()
            earlier_keys = {xxhash.xxh3_64_intdigest(t.encode()) for t in earlier}
            rep_keys = reps["key"].to_list()
            dup_keys = {k for k in rep_keys if k in earlier_keys}
            if self._near() and hashes and len(earlier):
                earlier_hashes, earlier_matrix = signatures(earlier.to_list(), self.num_perm)
                lsh = self._lsh(earlier_hashes)
                for i, candidates in enumerate(lsh.query_all(hashes)):
                    cand = np.array(list(candidates), dtype=np.int64)
                    if len(cand) and ((earlier_matrix[cand] == matrix[i]).mean(axis=1) >= self.threshold).any():
                        dup_keys.add(rep_keys[i])
            for rid in rows.filter(pl.col("key").is_in(list(dup_keys)))["id"]:
                found.setdefault(rid, f"duplicate of {path}")
        return found

    # -- call: mark a batch ------------------------------------------------------------

    def __call__(self, batch: pl.DataFrame) -> Decision:
        if self._drops is None:
            raise CurateError("filter dedup: prepare(frame) must see the whole input before any batch")
        if self._drops.is_empty():
            self._seen += batch.height
            return Decision(pl.repeat(True, batch.height, eager=True).alias("keep"),
                            pl.repeat(None, batch.height, dtype=pl.String, eager=True).alias("reason"))
        if self._by_position:
            ids = pl.Series("id", range(self._seen, self._seen + batch.height), dtype=pl.Int64)
            self._seen += batch.height
        else:
            ids = batch["sample_id"].cast(pl.String).alias("id")
        marked = ids.to_frame().join(self._drops, on="id", how="left", maintain_order="left")
        reason = marked["reason"]
        return Decision(reason.is_null().alias("keep"), reason.alias("reason"))


def read_dataset(path: str) -> pl.DataFrame:
    """An earlier dataset: a Parquet or JSONL file, or a folder of Parquet."""
    try:
        return pl.concat([read_table_file(f) for f in table_files(path)], how="diagonal_relaxed")
    except CurateError as e:
        raise CurateError(f"filter dedup: against {e}") from None
