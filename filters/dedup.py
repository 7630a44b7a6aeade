"""Deduplication: exact (a hash of the normalised text) and near (MinHash + LSH), within
the input and against earlier datasets, as a stateful filter that streams its input.

Pure helpers, usable on one text:

    normalize_text(s)            NFKC, lowercase, punctuation and symbols -> space,
                                 whitespace collapsed, ends stripped
    exact_key(s) -> int          64-bit hash of normalize_text(s) (its words in order)
    minhash_signature(s)         MinHash digest (uint64[num_perm], one-permutation
                                 hashing) of the word 5-grams of the normalised text (a
                                 text of fewer than 5 words is one shingle: itself)
    estimated_jaccard(a, b)      share of equal digest slots

`Dedup` follows the stateful filter protocol (docs/ARCHITECTURE.md, "Dedup"):

- `index(batch)` (map, one shard, any process): per row with a text, its id (`sample_id`,
  else the chain's `_row`), its exact `key` and (near modes) its signature `sig`: the top
  8 bits of every MinHash slot (b-bit MinHash, num_perm bytes a row). Never the text.
- `resolve(indexes, executor)` (reduce, the driver): one representative per exact key
  (the smallest id); the representatives' LSH band values are shuffled into buckets by
  hash and each bucket's candidate pairs (rows equal on a whole band) are found in
  parallel (`executor.map`); the candidates are verified in parallel (estimated Jaccard,
  corrected for 8-bit slots, >= `threshold`: LSH only proposes); union-find makes the
  clusters. The survivor of a cluster is the row with the smallest `sample_id` (string
  order), without `sample_id` the first row by `_row`: it depends on neither the shard
  order nor the executor.
- `__call__(batch)` marks a shard from the resolved drops by id, in any order.

Reasons: "exact duplicate of <survivor>" when a row's exact key equals the survivor's,
else "near duplicate of <survivor> (J≈0.87)" (estimated Jaccard to the survivor; through
a chain of near pairs it can be below `threshold`). `against`: earlier datasets, indexed
file by file through the executor; an input row whose exact key, or (near modes)
verified near match, is found there is dropped with "duplicate of <path>", which takes
precedence over the within-input reason.

Choosing LSH bands: with `b` bands of `r` rows (`b * r = num_perm`) a pair of Jaccard J
becomes a candidate with probability `1 - (1 - J**r)**b`, whose steep part sits at
`(1/b)**(1/r)`. We take the divisor `b` of `num_perm` with the largest `(1/b)**(1/r)`
that is still <= `threshold - 0.05` (128 perms, threshold 0.8 -> 16 bands x 8 rows,
P(candidate | J=0.8) = 0.95, J=0.85 -> 0.99); the Jaccard check then removes the extra
candidates. `bands` overrides.

Text to signatures, with no Python object per word, shingle or slot, a cache-sized run
of texts at a time: ASCII texts go straight to a numpy kernel over their UTF-8 bytes (a
table lowercases and marks separators; a word's hash is its bytes read 8 at a time);
texts with a non-ASCII byte are normalised by polars first (NFKC, Unicode classes), then
go the same way. numpy combines each run of 5 word hashes into one shingle hash, and
one-permutation hashing (`one_permutation_minhash`: one hash per shingle picks a slot,
two rounds, the rare empty slot densified) makes the MinHash slots with one scatter-min
per round instead of num_perm hash functions. Hashes are recomputed on every run, never
stored.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterator

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.filters.base import Decision, Filter, ParamError
from curate.store import open_table

NGRAM = 5
SLOT_BITS = 8  # bits kept per signature slot in the index (b-bit MinHash)
PAIRS_PER_TASK = 1 << 20  # candidate pairs verified per executor task
INDEX_SLICE = 16_384  # rows hashed at once by index (bounds a worker's memory whatever the shard size)


def _fold_nonascii(texts: pl.Series) -> pl.Series:
    """The non-ASCII share of the normalisation, for texts with a non-ASCII character:
    NFKC (Python's unicodedata, whose quick check returns text already in NFKC without
    rebuilding it: mostly-ASCII text rarely needs more), lowercase, and non-ASCII punctuation,
    symbols and spaces to a space. The ASCII share is `normalized_texts`' or the byte kernel's."""
    nfkc = pl.Series([None if t is None else unicodedata.normalize("NFKC", t) for t in texts.to_list()],
                     dtype=pl.String)
    return nfkc.str.to_lowercase().str.replace_all(r"[[\p{P}\p{S}\s]&&[^\x00-\x7F]]", " ")


def normalized_texts(texts: pl.Series) -> pl.Series:
    """The normalisation (the one definition; normalize_text and the byte kernel follow
    it): NFKC, lowercase, punctuation, symbols and whitespace collapsed to one space,
    ends stripped. The non-ASCII steps run only on rows with a non-ASCII character."""
    rows = texts.str.contains(r"[^\x00-\x7F]").fill_null(False).arg_true()
    if len(rows):
        texts = texts.clone().scatter(rows, _fold_nonascii(texts.gather(rows)))  # the caller's stays
    return texts.str.to_lowercase().str.replace_all(r"[\p{P}\p{S}\s]+", " ").str.strip_chars()


def normalize_text(s: str) -> str:
    """NFKC, lowercase, punctuation/symbols to spaces, whitespace collapsed."""
    return normalized_texts(pl.Series([s], dtype=pl.String))[0]


def exact_key(s: str) -> int:
    """The 64-bit hash of normalize_text(s) (of its sequence of words), as the filter keys it."""
    return int(text_hashes(pl.Series([s], dtype=pl.String))[0][0])


# Odd 64-bit constants: a shingle's hash is sum(word_hash[k] * C[k]) mod 2**64 (so "a b
# c d e" and "b a c d e" differ); C[6], C[7] also drive the mixing function.
_POSITION_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                  0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0x94D049BB133111EB,
                                  0xBF58476D1CE4E5B9, 0x2545F4914F6CDD1D], dtype=np.uint64)
CHUNK_BYTES = 1 << 17  # text bytes hashed at once (the kernel's working arrays stay in cache)


def _byte_values() -> np.ndarray:
    """Per byte: 0 where the normalisation makes it a separator (ASCII punctuation,
    symbols and whitespace: what `normalized` replaces in ASCII text), else its
    lowercase; NUL, a word byte, takes the space's value (no word holds a space). Bytes
    >= 0x80 are word bytes: non-ASCII texts are normalised first."""
    table = np.zeros(256, dtype=np.uint8)
    for b in range(256):
        c = chr(b)
        if b >= 128 or not (c in string.punctuation or c in " \t\n\x0b\x0c\r"):
            table[b] = ord(c.lower()) if 0 < b < 128 else b or ord(" ")
    return table


_BYTE_VALUE = _byte_values()
_WORD_MASK = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # the first k bytes of 8
_BASE = np.uint64(0x100000001B3 * 2 + 1)  # odd, so invertible mod 2**64
_POWERS: list[np.ndarray] = [np.ones(1, np.uint64), np.ones(1, np.uint64)]  # _BASE**i and _BASE**-i


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(_POWERS[0]) < n:
        size = max(n, 2 * len(_POWERS[0]))
        for k, base in enumerate((_BASE, np.uint64(pow(int(_BASE), -1, 1 << 64)))):
            p = np.full(size, base, dtype=np.uint64)
            p[0] = 1
            _POWERS[k] = np.cumprod(p, dtype=np.uint64)  # wraps mod 2**64
    return _POWERS[0], _POWERS[1]


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64's), element-wise."""
    h = h ^ (h >> np.uint64(30))
    h *= _POSITION_MULTIPLIERS[6]
    h ^= h >> np.uint64(27)
    h *= _POSITION_MULTIPLIERS[7]
    return h ^ (h >> np.uint64(31))


def _span_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The polynomial hash sum(values[j] * B**(j - start)) mod 2**64 of every span
    [start, end), from one prefix sum: the same span gives the same hash anywhere."""
    pw, pinv = _powers(len(values) + 1)
    prefix = np.zeros(len(values) + 1, dtype=np.uint64)
    np.cumsum(np.multiply(values, pw[: len(values)], dtype=np.uint64), out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * pinv[starts]


def _chunk_words(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The word hashes of a run of texts (their UTF-8 bytes and offsets) and the words per
    text. A word's hash mixes its length with its bytes read 8 at a time: a word of up
    to 8 bytes is its one (masked) 8-byte load; a longer one is the polynomial hash of
    its 8-byte blocks."""
    n = len(data)
    value = np.zeros(n + 8, dtype=np.uint8)  # 8 bytes of padding: the last word's load stays inside
    np.take(_BYTE_VALUE, data, out=value[:n])
    word = value[:n] != 0
    first = word.copy()
    first[1:] &= ~word[:-1]
    last = word.copy()
    last[:-1] &= ~word[1:]
    nonempty = offsets[:-1] < offsets[1:]
    begin, end = offsets[:-1][nonempty], offsets[1:][nonempty] - 1
    first[begin], last[end] = word[begin], word[end]  # words never run across texts
    starts, ends = np.flatnonzero(first), np.flatnonzero(last) + 1
    length = ends - starts
    loads = np.ndarray((n + 1,), dtype="<u8", buffer=value, strides=(1,))  # the 8 bytes from each position
    hashes = loads[starts] & _WORD_MASK[np.minimum(length, 8)]
    long = np.flatnonzero(length > 8)
    if len(long):
        blocks = (length[long] + 7) // 8
        bounds = np.zeros(len(long) + 1, dtype=np.int64)
        np.cumsum(blocks, out=bounds[1:])
        at = np.repeat(starts[long] - 8 * bounds[:-1], blocks) + 8 * np.arange(bounds[-1])
        left = np.repeat(ends[long], blocks) - at  # the word's bytes from this block on
        hashes[long] = _span_hashes(loads[at] & _WORD_MASK[np.minimum(left, 8)], bounds[:-1], bounds[1:])
    return _mix(hashes ^ length.astype(np.uint64)), np.diff(np.searchsorted(starts, offsets))


def _utf8(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The texts' UTF-8 bytes, one buffer, and the offsets of each text into it."""
    arr = texts.cast(pl.String).to_arrow()
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return data[offsets[0] :], offsets - offsets[0]


def _utf8_chunks(texts: pl.Series) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (non-null) texts as runs of about CHUNK_BYTES: (UTF-8 bytes, offsets from 0).
    Texts with a non-ASCII byte (found by numpy) get `_fold_nonascii` first (the
    ASCII share of the normalisation is the kernel's)."""
    data, offsets = _utf8(texts)
    nonempty = offsets[:-1] < offsets[1:]
    top = np.zeros(len(texts), dtype=np.uint8)
    top[nonempty] = np.maximum.reduceat(data, offsets[:-1][nonempty]) if len(data) else 0
    rows = np.flatnonzero(top >= 0x80)
    if len(rows):
        texts = texts.clone().scatter(rows, _fold_nonascii(texts.gather(rows)))  # the caller's stays
        data, offsets = _utf8(texts)
    row = 0
    while row < len(texts):
        stop = min(len(texts), max(row + 1, int(np.searchsorted(offsets, offsets[row] + CHUNK_BYTES, "right")) - 1))
        lo = offsets[row]
        yield data[lo : offsets[stop]], offsets[row : stop + 1] - lo
        row = stop


def word_hashes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The words of normalize_text of every (non-null) text as uint64 hashes, flat, and
    the number of words per text. ASCII texts go straight to a numpy kernel over their
    bytes (lowercase, separators, one polynomial hash per word from a prefix sum); the
    others are normalised by polars first (NFKC and Unicode classes), then go the same way."""
    parts = [_chunk_words(*chunk) for chunk in _utf8_chunks(texts)]
    return (np.concatenate([np.zeros(0, np.uint64), *(h for h, _ in parts)]),
            np.concatenate([np.zeros(0, np.int64), *(c for _, c in parts)]))


def _shingle_chunks(texts: pl.Series, ngram: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per cache-sized run of texts: their keys, flat n-gram hashes and n-grams per text."""
    if not 1 <= ngram <= len(_POSITION_MULTIPLIERS):
        raise CurateError(f"filter dedup: n-grams of 1 to {len(_POSITION_MULTIPLIERS)} words, not {ngram}")
    for chunk in _utf8_chunks(texts):
        yield _chunk_shingles(*_chunk_words(*chunk), ngram)


def text_hashes(texts: pl.Series, ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every (non-null) text: its exact key (uint64: a hash of its normalised words
    in order), and its word n-grams as uint64 hashes in one flat array with the row
    offsets into it (length rows + 1). A text of fewer than `ngram` words is one
    shingle: the hash of its whole (normalised) text. Computed a cache-sized run of
    texts at a time."""
    keys, flats, counts = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    for key, flat, count in _shingle_chunks(texts, ngram):
        keys.append(key)
        flats.append(flat)
        counts.append(count)
    count = np.concatenate(counts)
    offsets = np.zeros(len(count) + 1, dtype=np.int64)
    np.cumsum(count, out=offsets[1:])
    return np.concatenate(keys), np.concatenate(flats), offsets


def _chunk_shingles(words: np.ndarray, lengths: np.ndarray, ngram: int) -> tuple[np.ndarray, ...]:
    """A run of texts' (keys, flat n-gram hashes, n-grams per text) from their word hashes."""
    ends = np.cumsum(lengths)
    whole = _mix(_span_hashes(words, ends - lengths, ends) ^ lengths.astype(np.uint64))  # one per text
    m = max(len(words) - ngram + 1, 0)  # an n-gram starts at every flat position < m
    grams = words[:m] * _POSITION_MULTIPLIERS[0]
    product = np.empty_like(grams)
    for k in range(1, ngram):
        grams += np.multiply(words[k : m + k], _POSITION_MULTIPLIERS[k], out=product)  # wraps mod 2**64
    # keep the n-grams that end inside their own text. The starts to drop are the last
    # ngram-1 positions before each text's end: for a long text, those that reach into
    # the next one; a short text's own positions are all among them; and any earlier
    # position they hit is one of these of an earlier text already.
    crossing = (ends[:, None] - np.arange(1, ngram)[None, :]).ravel()
    valid = np.ones(m, dtype=bool)
    valid[crossing[(crossing >= 0) & (crossing < m)]] = False
    grams = grams[valid]
    short = lengths < ngram
    counts = np.where(short, 1, lengths - ngram + 1)
    if not short.any():
        return whole, grams, counts
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = np.empty(offsets[-1], dtype=np.uint64)
    own = np.zeros(offsets[-1], dtype=bool)
    own[offsets[:-1][short]] = True
    flat[~own] = grams
    flat[own] = whole[short]
    return whole, flat, counts


def shingle_hashes(texts: pl.Series, ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """The word n-grams of every (non-null) text (text_hashes without the keys)."""
    return text_hashes(texts, ngram)[1:]


_EMPTY = np.uint64((1 << 64) - 1)  # a bin no n-gram fell into
_SECOND = np.uint64(1 << 63)  # second-round values sort after every first-round value


def one_permutation_minhash(flat: np.ndarray, counts: np.ndarray, num_perm: int) -> np.ndarray:
    """The MinHash digests (uint64[rows, num_perm]) of rows of n-gram hashes (flat, and
    n-grams per row), by one-permutation hashing in two rounds: in the first, each
    n-gram's mixed hash picks one of `num_perm` bins and each bin keeps the smallest; in
    the second, a bin left empty takes the smallest of a second, independent hash of the
    n-grams that pick it (values above every first-round value, so a full bin keeps its
    own). A bin still empty (rows of few n-grams) takes the value of the next full bin to
    its right, circularly, plus its distance times an odd constant (rotation
    densification). Two rows agree on a slot with probability about their Jaccard."""
    rows, k = len(counts), np.uint64(num_perm)
    base = np.repeat(np.arange(0, rows * num_perm, num_perm, dtype=np.int64), counts)
    sig = np.full(rows * num_perm, _EMPTY)
    h = _mix(flat)  # a bin from the top 32 bits (h * k >> 64), the order within it from the rest
    np.minimum.at(sig, base + ((h >> np.uint64(32)) * k >> np.uint64(32)).view(np.int64), h >> np.uint64(1))
    h *= _POSITION_MULTIPLIERS[4]  # the second round's hash: its top bits depend on every bit of h
    np.minimum.at(sig, base + ((h >> np.uint64(32)) * k >> np.uint64(32)).view(np.int64), h | _SECOND)
    empty = np.flatnonzero(sig == _EMPTY)
    if len(empty):  # every row has a full bin: each empty one finds one within num_perm - 1 steps
        start, col = empty - empty % num_perm, empty % num_perm
        value = np.empty(len(empty), np.uint64)
        todo = np.arange(len(empty))
        offset = np.arange(num_perm, dtype=np.uint64) * _POSITION_MULTIPLIERS[5]  # wraps mod 2**64
        for step in range(1, num_perm):
            found = sig[start[todo] + (col[todo] + step) % num_perm]
            hit = found != _EMPTY
            value[todo[hit]] = found[hit] + offset[step]
            todo = todo[~hit]
            if not len(todo):
                break
        sig[empty] = value
    return sig.reshape(rows, num_perm)


def signature_matrix(texts: pl.Series, num_perm: int) -> np.ndarray:
    """The MinHash digests (uint64[rows, num_perm]) of the texts' word n-grams."""
    return np.concatenate([np.zeros((0, num_perm), np.uint64),
                           *(one_permutation_minhash(flat, count, num_perm) for _, flat, count in
                             _shingle_chunks(texts, NGRAM))])


def minhash_signature(text: str, num_perm: int = 128) -> np.ndarray:
    """The MinHash digest of normalize_text(text), as the filter computes it."""
    return signature_matrix(pl.Series([text], dtype=pl.String), num_perm)[0]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Share of equal digest slots (row-wise for matrices)."""
    return (a == b).mean(axis=-1)


def slot_bits(digests: np.ndarray) -> np.ndarray:
    """The index's b-bit signature: the top SLOT_BITS bits of each slot after a
    multiplicative mix (uint8[rows, num_perm])."""
    return ((digests * _POSITION_MULTIPLIERS[0]) >> np.uint64(64 - SLOT_BITS)).astype(np.uint8)


def bbit_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The estimated Jaccard of b-bit signatures, row-wise: the share of equal slots less
    the chance that two different slots agree on SLOT_BITS bits (Li and König, 2010)."""
    chance = 1.0 / (1 << SLOT_BITS)
    return np.clip(((a == b).mean(axis=-1) - chance) / (1.0 - chance), 0.0, 1.0)


def lsh_bands(threshold: float, num_perm: int) -> int:
    """Bands for the LSH index (see the module docstring for the rule). The S-curve's
    midpoint (1/b)**(1/r) falls as b grows, so the first divisor that fits is the one
    with the largest midpoint; if none fits, every slot is its own band."""
    divisors = [b for b in range(1, num_perm + 1) if num_perm % b == 0]
    return next((b for b in divisors if (1 / b) ** (b / num_perm) <= threshold - 0.05), num_perm)


def band_values(sig: np.ndarray, bands: int, band: int | None = None) -> np.ndarray:
    """One uint64 per (row, band) of b-bit signatures (uint8[rows, num_perm]), or per row
    for one `band`: a band of up to 8 slots is its bytes themselves (equal values = equal
    bands); a longer band folds its 8-byte words with odd multipliers. Band k's value
    also mixes in k, so the values of different bands never meet."""
    if band is None:
        return np.stack([band_values(sig, bands, k) for k in range(bands)], axis=1)
    n, num_perm = sig.shape
    rows = num_perm // bands
    width = -(-rows // 8) * 8
    padded = np.zeros((n, width), dtype=np.uint8)
    padded[:, :rows] = sig[:, band * rows : (band + 1) * rows]
    words = padded.view(np.uint64)  # (n, width // 8)
    value = words[:, 0].copy()
    for k in range(1, words.shape[1]):
        value = value * _POSITION_MULTIPLIERS[k % len(_POSITION_MULTIPLIERS)] + words[:, k]
    return value ^ np.uint64((band + 1) * int(_POSITION_MULTIPLIERS[0]) % (1 << 64))


def _band_buckets(sig: np.ndarray, bands: int, buckets: int) -> Iterator[pl.DataFrame]:
    """The shuffle's items, one band at a time (so only one band's table is held): the
    band's (value, node) rows split into `buckets` by value."""
    nodes = np.arange(len(sig), dtype=np.uint32)
    for band in range(bands):
        values = band_values(sig, bands, band)
        table = pl.DataFrame({"value": values, "node": nodes,
                              "bucket": (values % np.uint64(buckets)).astype(np.uint16)})
        yield from table.partition_by("bucket", include_key=False)


def candidate_pairs(bucket: pl.DataFrame) -> np.ndarray:
    """Executor task: (i, j), i < j, for the nodes of one bucket of the band shuffle
    (columns `value`, `node`) that share a band value: an (k, 2) int64 array, each pair once."""
    members = bucket.filter(pl.len().over("value") > 1)
    pairs = (members.join(members, on="value", suffix="_b")
             .filter(pl.col("node") < pl.col("node_b")).select("node", "node_b").unique())
    return pairs.to_numpy().astype(np.int64).reshape(-1, 2)


def pair_jaccard(sides: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Executor task: the estimated Jaccard of each pair of b-bit signatures."""
    return bbit_jaccard(*sides)


def near_pairs(sig: np.ndarray, bands: int, threshold: float, executor, split: int | None = None) -> np.ndarray:
    """The verified near pairs among the rows of `sig` (b-bit signatures): (k, 3) float64
    rows (i, j, J), i < j, sorted. With `split`, only pairs with i < split <= j (one side
    against the other). The band values are shuffled into buckets by value, each bucket's
    candidates found in one task (streamed a band at a time), and the candidates verified
    in tasks of PAIRS_PER_TASK."""
    n = len(sig)
    if n < 2:
        return np.empty((0, 3))
    buckets = max(1, 2 * executor.workers)
    found = [p for p in executor.map(candidate_pairs, _band_buckets(sig, bands, buckets)) if len(p)]
    if not found:
        return np.empty((0, 3))
    pairs = np.unique(np.concatenate(found), axis=0)  # a pair may share several bands
    if split is not None:
        pairs = pairs[(pairs[:, 0] < split) & (pairs[:, 1] >= split)]
    chunks = [pairs[k : k + PAIRS_PER_TASK] for k in range(0, len(pairs), PAIRS_PER_TASK)]
    jaccard = np.concatenate([np.empty(0), *executor.map(pair_jaccard, ((sig[c[:, 0]], sig[c[:, 1]]) for c in chunks))])
    keep = jaccard >= threshold
    return np.column_stack([pairs[keep].astype(np.float64), jaccard[keep]])


def union_find_roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """The root of every node 0..n-1 after joining the pairs: the smallest node of its
    component (whatever the order of the pairs)."""
    parent = np.arange(n, dtype=np.int64)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for i, j in pairs[:, :2].astype(np.int64).tolist():
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    touched = np.unique(pairs[:, :2].astype(np.int64)) if len(pairs) else np.empty(0, np.int64)
    for x in touched.tolist():
        parent[x] = find(x)
    return parent


def index_part(task: tuple[Dedup, str, int]) -> pl.DataFrame:
    """Executor task: the index of one file (an earlier dataset's, or an input shard on
    disk), read here; without `sample_id`, rows are numbered from `offset`."""
    f, path, offset = task
    parts = []
    for _, lazy in open_table(path).parts():
        columns = lazy.collect_schema().names()
        frame = lazy.select([c for c in ("sample_id", *f.needs) if c in columns]).collect()
        frame = frame.with_row_index("_row", offset=offset).with_columns(pl.col("_row").cast(pl.Int64))
        parts.append(f.index(frame, where=path))
        offset += frame.height
    return pl.concat(parts)


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
            raise ParamError(f"filter dedup: parameter bands must divide num_perm ({num_perm}), got {bands}", "bands")
        self.against = [str(p) for p in self.param("against", against or [], list)]
        for path in self.against:  # refused when the chain is planned, before anything is written
            try:
                open_table(path)
            except CurateError as e:
                raise CurateError(f"filter dedup: against {e}") from None
        self._drops: pl.DataFrame | None = None  # id, reason

    @property
    def needs(self) -> tuple[str, ...]:
        return ("problem", "completion") if self.on == "both" else (self.on,)

    def _near(self) -> bool:
        return self.mode in ("near", "both")

    def _exact(self) -> bool:
        return self.mode in ("exact", "both")

    def _bands(self) -> int:
        return self.bands or lsh_bands(self.threshold, self.num_perm)

    # -- index: the map step over one shard --------------------------------------------

    def empty_index(self, id_type: pl.DataType) -> pl.DataFrame:
        schema = {"id": id_type, "key": pl.UInt64}
        if self._near():
            schema["sig"] = pl.Array(pl.UInt8, self.num_perm)
        return pl.DataFrame(schema=schema)

    def _ids(self, batch: pl.DataFrame) -> pl.Series:
        if "sample_id" in batch.columns:
            return batch["sample_id"].cast(pl.String).alias("id")
        if "_row" in batch.columns:
            return batch["_row"].cast(pl.Int64).alias("id")
        raise CurateError("filter dedup: a batch needs a sample_id or a _row column")

    def index(self, batch: pl.DataFrame, where: str = "the input") -> pl.DataFrame:
        """Per row with a text: `id`, `key` (UInt64) and, in near modes, `sig`
        (Array(UInt8, num_perm)). Rows with a null text are left out."""
        missing = [c for c in self.needs if c not in batch.columns]
        if missing:
            raise CurateError(f"filter dedup: {where} has no column {', '.join(missing)}")
        ids = self._ids(batch)
        if self.on == "both":
            text = pl.concat_str("problem", "completion", separator="\n")
        else:
            text = pl.col(self.on).cast(pl.String)
        texts = batch.select(text.alias("text"))["text"]
        present = texts.is_not_null()
        if not present.all():
            ids, texts = ids.filter(present), texts.filter(present)
        if texts.is_empty():
            return self.empty_index(ids.dtype)
        keys, sigs = [], []
        for k in range(0, len(texts), INDEX_SLICE):  # the text's copies (UTF-8 buffer, NFKC) a slice at a time
            for key, flat, counts in _shingle_chunks(texts.slice(k, INDEX_SLICE), NGRAM):
                keys.append(key)
                if self._near():
                    sigs.append(slot_bits(one_permutation_minhash(flat, counts, self.num_perm)))
        out = {"id": ids, "key": pl.Series("key", np.concatenate(keys), dtype=pl.UInt64)}
        if self._near():
            out["sig"] = pl.Series("sig", np.concatenate(sigs))
        return pl.DataFrame(out)

    # -- resolve: the reduce step ------------------------------------------------------

    def resolve(self, indexes: list[pl.DataFrame | None], executor) -> None:
        """Decide every drop from the shards' indexes (in any shard order: the result is
        the same), fanning the band shuffle and the pair checks out through `executor`."""
        indexes = [i for i in indexes if i is not None and i.height]
        if not indexes:
            self._drops = pl.DataFrame(schema={"id": pl.String, "reason": pl.String})
            return
        rows = pl.concat(indexes, how="vertical")
        if rows["id"].n_unique() != rows.height:
            raise CurateError("filter dedup: sample_id is not unique in the input")
        # one representative per exact key, the smallest id; reps are sorted by id, so a
        # component's smallest rep number is its survivor
        first = (rows.select("id", "key").with_row_index("i").sort("id")
                 .unique("key", keep="first", maintain_order=True)["i"])
        reps = rows[first]
        rank = reps.select("key").with_row_index("rank")
        pairs = np.empty((0, 3))
        if self._near():
            pairs = near_pairs(reps["sig"].to_numpy(), self._bands(), self.threshold, executor)
        root = union_find_roots(reps.height, pairs)
        rows = rows.select("id", "key").join(rank, on="key", how="left", maintain_order="left")
        ranks = rows["rank"].to_numpy().astype(np.int64)
        roots = root[ranks]
        survivor_ids = reps["id"].gather(roots)
        dropped = np.flatnonzero((rows["id"] != survivor_ids).to_numpy())
        reasons: dict = {}
        if len(dropped):
            d_ids = rows["id"].gather(dropped).to_list()
            s_ids = survivor_ids.gather(dropped).to_list()
            same_key = ranks[dropped] == roots[dropped]
            if self._near():
                sig = reps["sig"].to_numpy()
                jaccard = bbit_jaccard(sig[ranks[dropped]], sig[roots[dropped]])
            for n, (rid, sid) in enumerate(zip(d_ids, s_ids)):
                if same_key[n] and self._exact():
                    reasons[rid] = f"exact duplicate of {sid}"
                else:  # in mode "near" an exact copy is a near duplicate with J = 1
                    j = 1.0 if same_key[n] else float(jaccard[n])
                    reasons[rid] = f"near duplicate of {sid} (J≈{j:.2f})"
        reasons.update(self._against(rows, reps, executor))
        self._drops = pl.DataFrame({"id": list(reasons), "reason": list(reasons.values())},
                                   schema={"id": rows["id"].dtype, "reason": pl.String})

    def _against(self, rows: pl.DataFrame, reps: pl.DataFrame, executor) -> dict:
        """Rows of the input that duplicate (exact, or verified near) a row of an earlier
        dataset. Each earlier file is indexed in one executor task; for near, the input's
        representatives and the earlier rows go through the band shuffle together and
        only pairs across the two sides count."""
        found: dict = {}
        for path in self.against:
            try:
                files = [name for name, _ in open_table(path).parts()]
            except CurateError as e:
                raise CurateError(f"filter dedup: against {e}") from None
            earlier = [i.drop("id") for i in executor.map(index_part, [(self, name, 0) for name in files]) if i.height]
            if not earlier:
                continue
            earlier = pl.concat(earlier, how="vertical")
            dup = set(reps["key"].filter(reps["key"].is_in(earlier["key"].implode())).to_list())
            if self._near():
                both = np.concatenate([reps["sig"].to_numpy(), earlier["sig"].to_numpy()])
                pairs = near_pairs(both, self._bands(), self.threshold, executor, split=reps.height)
                dup.update(reps["key"].gather(np.unique(pairs[:, 0].astype(np.int64))).to_list())
            for rid in rows.filter(pl.col("key").is_in(list(dup)))["id"].to_list():
                found.setdefault(rid, f"duplicate of {path}")
        return found

    # -- call: mark a shard ------------------------------------------------------------

    def __call__(self, batch: pl.DataFrame) -> Decision:
        if self._drops is None:
            raise CurateError("filter dedup: resolve(indexes) must see every shard's index before any batch")
        if self._drops.is_empty():
            return Decision(pl.repeat(True, batch.height, eager=True).alias("keep"),
                            pl.repeat(None, batch.height, dtype=pl.String, eager=True).alias("reason"))
        ids = self._ids(batch).cast(self._drops["id"].dtype)
        reason = ids.to_frame().join(self._drops, on="id", how="left", maintain_order="left")["reason"]
        return Decision(reason.is_null().alias("keep"), reason.alias("reason"))
