"""Deduplication: exact (xxh3 of normalised text) and near (MinHash + LSH), within the
input and against earlier datasets.

Pure helpers, usable on one text:

    normalize_text(s)            NFKC, lowercase, punctuation and symbols -> space,
                                 whitespace collapsed, ends stripped
    exact_key(s) -> int          xxh3_64 of normalize_text(s)
    minhash_signature(s)         MinHash digest (rensa R-MinHash, uint32[num_perm]) of the
                                 word 5-grams of the normalised text (a text of fewer
                                 than 5 words is one shingle: itself)
    estimated_jaccard(a, b)      share of equal digest slots

`Dedup` is a stateful filter. `prepare(frame)` sees the whole input once and decides
everything; `__call__(batch)` only looks the batch's rows up by `sample_id`.

How prepare decides:

1. Text per row: `on="completion"` (default), `"problem"`, or `"both"` (problem and
   completion joined by a newline: the pair is the unit). Null texts take no part.
2. Exact: polars computes the normalised text column (vectorised), xxh3_64 keys it, and
   rows with equal keys form a group.
3. Near (`mode="near"` or `"both"`): one MinHash signature per distinct exact key.
   No Python string is made per shingle: polars splits the normalised texts into
   words and hashes them, numpy combines each run of 5 word hashes into one shingle
   hash, and rensa computes all the signatures from that flat buffer in one call.
   rensa's `RMinHashLSH(threshold, num_perm, bands)` then flags the rows that share a
   band with another row (most rows share none and are done); only the flagged rows'
   signatures come back to numpy, where rows sharing a band (the same layout: `bands`
   consecutive slices of `num_perm / bands` slots) become candidate pairs, and every
   candidate pair is verified with the estimated Jaccard (share of equal signature
   slots) >= `threshold` (the "estimated-Jaccard check": LSH only proposes, it never
   decides). Word hashes come from polars' seeded hash, which polars does not promise
   to keep across its versions: signatures are recomputed on every run, never stored.
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

from typing import NamedTuple

import numpy as np
import polars as pl
import xxhash
from rensa import RMinHash, RMinHashLSH

from curate.errors import CurateError
from curate.filters.base import Decision, Filter
from curate.store import open_table

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


# One odd 64-bit constant per position of a word in its n-gram: a shingle's hash is
# sum(word_hash[k] * C[k]) mod 2**64, so "a b c d e" and "b a c d e" differ.
_POSITION_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                  0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0x94D049BB133111EB,
                                  0xBF58476D1CE4E5B9, 0x2545F4914F6CDD1D], dtype=np.uint64)


def shingle_hashes(normalised: pl.Series, ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """The word n-grams of every (non-null, normalised) text as uint64 hashes in one flat
    array, and the row offsets into it (length rows + 1). A text of fewer than `ngram`
    words is one shingle: the hash of the whole text."""
    if not 1 <= ngram <= len(_POSITION_MULTIPLIERS):
        raise CurateError(f"filter dedup: n-grams of 1 to {len(_POSITION_MULTIPLIERS)} words, not {ngram}")
    words = normalised.str.split(" ")
    lengths = words.list.len().to_numpy().astype(np.int64)
    word_hashes = words.explode().hash(seed=SEED).to_numpy()
    m = max(len(word_hashes) - ngram + 1, 0)  # an n-gram starts at every flat position < m
    grams = word_hashes[:m] * _POSITION_MULTIPLIERS[0]
    product = np.empty_like(grams)
    for k in range(1, ngram):
        grams += np.multiply(word_hashes[k : m + k], _POSITION_MULTIPLIERS[k], out=product)  # wraps mod 2**64
    # keep the n-grams that end inside their own text. The starts to drop are the last
    # ngram-1 positions before each text's end: for a long text, those that reach into
    # the next one; a short text's own positions are all among them; and any earlier
    # position they hit is one of these of an earlier text already.
    ends = np.cumsum(lengths)
    crossing = (ends[:, None] - np.arange(1, ngram)[None, :]).ravel()
    valid = np.ones(m, dtype=bool)
    valid[crossing[(crossing >= 0) & (crossing < m)]] = False
    grams = grams[valid]
    short = lengths < ngram
    counts = np.where(short, 1, lengths - ngram + 1)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = np.empty(offsets[-1], dtype=np.uint64)
    own = np.zeros(offsets[-1], dtype=bool)
    own[offsets[:-1][short]] = True
    flat[~own] = grams
    if short.any():
        flat[own] = normalised.filter(pl.Series(short)).hash(seed=SEED).to_numpy()
    return flat, offsets


def signature_matrix(normalised: pl.Series, num_perm: int):
    """rensa's digest matrix (one row of num_perm uint32 per text) of the shingle hashes."""
    flat, offsets = shingle_hashes(normalised)
    return RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets.astype(np.uint64), num_perm, SEED)


def minhash_signature(text: str, num_perm: int = 128) -> np.ndarray:
    """The MinHash digest of normalize_text(text), as the filter computes it."""
    matrix = signature_matrix(pl.Series([normalize_text(text)], dtype=pl.String), num_perm)
    return np.array(matrix.to_rows()[0], dtype=np.uint32)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Share of equal digest slots (row-wise for matrices)."""
    return (a == b).mean(axis=-1)


def lsh_bands(threshold: float, num_perm: int) -> int:
    """Bands for the LSH index (see the module docstring for the rule). The S-curve's
    midpoint (1/b)**(1/r) falls as b grows, so the first divisor that fits is the one
    with the largest midpoint; if none fits, every slot is its own band."""
    divisors = [b for b in range(1, num_perm + 1) if num_perm % b == 0]
    return next((b for b in divisors if (1 / b) ** (b / num_perm) <= threshold - 0.05), num_perm)


def candidate_pairs(digests: np.ndarray, bands: int) -> np.ndarray:
    """(i, j), i < j, for the rows of `digests` that are equal on all the slots of at
    least one band (bands consecutive slices, as rensa's index bands them): an (k, 2)
    int64 array, each pair once."""
    n, num_perm = digests.shape
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    rows = num_perm // bands
    slots = [f"s{k}" for k in range(rows)]
    # one row per (document, band): the band's number and its `rows` slot values
    by_band = digests.reshape(n, bands, rows).transpose(1, 0, 2).reshape(bands * n, rows)
    frame = pl.DataFrame({"row": np.tile(np.arange(n), bands), "band": np.repeat(np.arange(bands), n),
                          **{slot: by_band[:, k] for k, slot in enumerate(slots)}})
    members = frame.filter(pl.len().over(["band", *slots]) > 1)
    pairs = (members.join(members, on=["band", *slots], suffix="_b")
             .filter(pl.col("row") < pl.col("row_b")).select("row", "row_b").unique())
    return pairs.to_numpy().astype(np.int64).reshape(-1, 2)


class NearPairs(NamedTuple):
    pairs: list[tuple[int, int]]  # verified (i, j), i < j, row positions in the input
    digests: dict[int, np.ndarray]  # uint32 digest of every row that is in a candidate pair


def near_pairs(normalised: pl.Series, num_perm: int, threshold: float, bands: int) -> NearPairs:
    """The near-duplicate pairs among the (non-null, normalised) texts: rensa computes
    every signature and flags the rows that share an LSH band with another; only the
    flagged rows' digests come back to numpy, where their candidate pairs are checked
    with the estimated Jaccard >= threshold."""
    lsh = RMinHashLSH(threshold, num_perm, bands)
    flags = lsh.insert_matrix_and_query_duplicate_flags(signature_matrix(normalised, num_perm), 0)
    flagged = np.flatnonzero(np.asarray(flags, dtype=bool))
    if len(flagged) < 2:
        return NearPairs([], {})
    digests = np.array(signature_matrix(normalised.gather(flagged), num_perm).to_rows(), dtype=np.uint32)
    pairs = candidate_pairs(digests, bands)
    verified = pairs[estimated_jaccard(digests[pairs[:, 0]], digests[pairs[:, 1]]) >= threshold]
    return NearPairs([(int(flagged[i]), int(flagged[j])) for i, j in verified],
                     {int(row): digest for row, digest in zip(flagged, digests)})


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
                open_table(path)
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
        near = NearPairs([], {})
        if self._near() and reps.height:
            near = near_pairs(reps["norm"], self.num_perm, self.threshold, self._bands())
            keys_list = reps["key"].to_list()
            for i, j in near.pairs:
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
                j = 1.0 if key == root else float(estimated_jaccard(near.digests[rank[key]], near.digests[rank[root]]))
                reasons[rid] = f"near duplicate of {survivor} (J≈{j:.2f})"
        reasons.update(self._against(rows, reps))
        dtype = pl.Int64 if self._by_position else pl.String
        self._drops = pl.DataFrame(
            {"id": list(reasons), "reason": list(reasons.values())},
            schema={"id": dtype, "reason": pl.String},
        )

    def _bands(self) -> int:
        return self.bands or lsh_bands(self.threshold, self.num_perm)

    def _against(self, rows: pl.DataFrame, reps: pl.DataFrame) -> dict:
        """Rows of the input that duplicate (exact, or verified near) a row of an
        earlier dataset. Near: the input's distinct texts and the earlier ones go through
        near_pairs together, and the pairs that join the two sides count."""
        found: dict = {}
        for path in self.against:
            earlier = self._normalised_text(read_dataset(path), path).drop_nulls()
            earlier_keys = {xxhash.xxh3_64_intdigest(t.encode()) for t in earlier}
            rep_keys = reps["key"].to_list()
            dup_keys = {k for k in rep_keys if k in earlier_keys}
            if self._near() and reps.height and len(earlier):
                both = pl.concat([reps["norm"], earlier.alias("norm")])
                pairs = near_pairs(both, self.num_perm, self.threshold, self._bands()).pairs
                dup_keys.update(rep_keys[i] for i, j in pairs if i < reps.height <= j)
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
    """An earlier dataset: any table `open_table` reads (a file, a folder, a curate run, a Hub name)."""
    try:
        return open_table(path).read()
    except CurateError as e:
        raise CurateError(f"filter dedup: against {e}") from None
