"""`curate mix`: build a training mixture with exact counts from several sources.

    curate mix --out runs/mix --source reasoning=runs/r1/select:600000 \\
                              --source general=runs/chat/select:200000

Each `--source NAME=PATH:TARGET` names a table and what to take from it:

* PATH: a `curate select` / `filter` / `generate` folder, a Parquet or JSONL file, a
  folder of Parquet, a `datasets` save_to_disk folder, or a Hub dataset name (train split).
* TARGET: an exact count (`600000`) or a ratio of `--total` (`0.75` or `75%`).

Rows become chat `messages`: curate rows (`problem`, `completion`, `reasoning`,
`answer`) give a user turn with the problem and an assistant turn
`<think>\\n{reasoning}\\n</think>\\n\\n{answer}`, whatever spelling the completion used
(curate.parsing; `--keep-spelling` writes the source's own); tables that already have `messages`
keep them. A row without a `<think>` block (a non-reasoning teacher, such as the
embedded SmolLM2) gets an empty one, `<think>\\n\\n</think>\\n\\n{completion}`, which is
also what `--no-cot NAME` writes for every row of a source (R1 answered simple queries
without a chain of thought); `--missing-think drop` drops such rows instead.

Counts are exact. Down-sampling is stratified by domain within each source (largest
remainders); up-sampling (only with `--allow-upsample`) repeats every row
TARGET // AVAILABLE times plus a stratified sample of the rest, and the card says so.
Everything random draws from numpy generators seeded by `--seed` and the source name, so
the same command gives the same Parquet bytes. `num_tokens` counts the tokens of the
message contents (no chat-template tokens) with `--tokenizer` (default: the embedded
SmolLM2's). Generated rows reuse generate's count instead of re-tokenising their
completion (`--token-counts reuse`, the default) when the tokenizer *matches*: the
row's `model` column (the generate model, whose tokenizer counted `completion_tokens`)
equals the --tokenizer name as given (the embedded model's name when none is given).
Such a row's num_tokens is its problem's tokens (counted) + `completion_tokens` (the
completion as generated: the think-form rewrite may differ from it by the few tokens of
the delimiters). Other rows, and every row with `--token-counts recount`, are counted;
the manifest records the rule and, per source, how many rows were counted either way.

Big sources stream: one pass over each source reads its rows in batches for the keys
(domain, whether it has a <think> block), the sampling runs on the keys, and only the
picked rows are read again (file by file) and converted; the delivered rows are then
shuffled, split and written in memory.

Output (written in a temporary folder next to OUT, renamed at the end):

    OUT/data/train-00000-of-00001.parquet   the Hub layout (and data/test-… with --test-size)
    OUT/dataset/                            DatasetDict.save_to_disk
    OUT/README.md, OUT/plots/*.png          the dataset card (curate/card.py)
    OUT/manifest.json                       sources, requested vs delivered, lineage, timings
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.formats import COMPLETION_COLUMNS, resolve
from curate.options import opt
from curate.parsing import has_markup, parse_trace, think_form
from curate.progress import Progress
from curate.schema import with_problem_id
from curate.store import RunStore, Table, atomic_path, check_storable, open_run, open_table

COLUMNS = ("messages", "source", "domain", "num_tokens", "problem_id", "sample_id", "origin", "run")
EMPTY_THINK = "<think>\n\n</think>\n\n"
SHARD_BYTES = 500 * 1024 * 1024  # the Hub's usual Parquet shard size
ROW_GROUP_ROWS = 10_000
TOKEN_COUNTS = ("reuse", "recount")
TOKEN_RULE = ("a row's completion_tokens are reused when its `model` (the generate model) equals the tokenizer name "
              "as given to --tokenizer (the embedded model's name when none is given); num_tokens = the problem's "
              "counted tokens + completion_tokens")
_RATIO = re.compile(r"^(\d*\.\d+|\d+\.\d*)$|^(\d+(\.\d+)?)%$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")


@dataclass
class SourceSpec:
    name: str
    path: str
    count: int | None = None  # an exact count...
    ratio: float | None = None  # ...or a share of --total
    target: int = 0  # resolved

    @property
    def shown(self) -> str:
        return f"{self.name}={self.path}"


@dataclass
class MixOptions:
    out: str = opt(help="Output folder: data/, dataset/, README.md, plots/, manifest.json.", path="dir")
    sources: list[str] = opt(help="NAME=PATH:COUNT_OR_RATIO, a source and its target: an exact count (600000) or a "
                                  "ratio of --total (0.75 or 75%). Repeatable.", cli="--source",
                             metavar="NAME=PATH:COUNT_OR_RATIO")
    total: int | None = opt(None, "Total rows; needed by ratio targets, checked against counts.")
    seed: int = opt(0, "Seed of the sampling and the test split.")
    test_size: float | None = opt(None, "Share of rows (whole problems) in a test split.")
    allow_upsample: bool = opt(False, "Let a target exceed its source: rows are repeated (and the card says so).")
    tokenizer: str | None = opt(None, "Tokenizer for num_tokens (name or folder). Default: the embedded SmolLM2's.")
    token_counts: str = opt("reuse", "num_tokens of generated rows: reuse generate's completion_tokens when the "
                                     "row's `model` is the --tokenizer, or recount every row.",
                            choices=TOKEN_COUNTS)
    no_cot: tuple[str, ...] = opt((), "Source whose answers go without a chain of thought (an empty think block).",
                                  metavar="NAME")
    missing_think: str = opt("empty", "Rows without a <think> block: write an empty one, or drop them.",
                             choices=("empty", "drop"))
    keep_spelling: bool = opt(False, "Write each completion as its source spells its reasoning (Sky-T1's thought "
                                     "tags, R1-Zero's answer tags) instead of R1's <think> form.")
    license: str = opt("other", "The dataset's licence for the card.")
    source_licenses: dict = opt({}, "A source's own licence, shown in the card (repeatable).", cli="--source-license",
                                pairs="NAME=LICENSE, e.g. gsm8k=mit", metavar="NAME=LICENSE")
    language: tuple[str, ...] = opt(("en",), "Comma list of language codes for the card.", comma=True)
    pretty_name: str | None = opt(None, "The card's title (default: the folder name).")
    workers: int = opt(help="Processes that count tokens (default: all cores).", factory=lambda: os.cpu_count() or 1,
                       min=1)
    overwrite: bool = opt(False, "Replace an existing mix with a different config.")
    progress: bool = opt(True, "Show progress bars (--no-progress: none).", cli="--no-progress")
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


# -- the plan: parse and check everything before any work ---------------------------


def parse_source(text: str) -> SourceSpec:
    name, sep, rest = text.partition("=")
    path, colon, target = rest.rpartition(":")
    if not sep or not colon or not name or not path or not target:
        raise CurateError(f"--source {text!r}: expected NAME=PATH:COUNT or NAME=PATH:RATIO, "
                          "e.g. reasoning=runs/r1/select:600000 or general=chat.parquet:0.25")
    if not _NAME.match(name):
        raise CurateError(f"--source {text!r}: the name {name!r} must be letters, digits, '_', '-' or '.'")
    if target.isdigit():
        if int(target) < 1:
            raise CurateError(f"--source {text!r}: the count must be at least 1")
        return SourceSpec(name, path, count=int(target))
    m = _RATIO.match(target)
    if not m:
        raise CurateError(f"--source {text!r}: target {target!r} is neither a count (600000) nor a ratio (0.75 or 75%)")
    ratio = float(m.group(1)) if m.group(1) else float(m.group(2)) / 100
    if not 0 < ratio <= 1:
        raise CurateError(f"--source {text!r}: a ratio must lie in (0, 1], got {ratio}")
    return SourceSpec(name, path, ratio=ratio)


def resolve_targets(specs: list[SourceSpec], total: int | None) -> None:
    """Exact counts stay; ratios become counts of --total (largest remainders)."""
    ratios = [s for s in specs if s.ratio is not None]
    if ratios and total is None:
        raise CurateError(f"--source {ratios[0].name}: a ratio target needs --total N")
    for s in specs:
        if s.count is not None:
            s.target = s.count
    if ratios:
        share = sum(s.ratio for s in ratios)
        wanted = round(share * total)
        for s, n in zip(ratios, largest_remainder([s.ratio for s in ratios], wanted)):
            s.target = n
            if n < 1:
                raise CurateError(f"--source {s.name}: ratio {s.ratio} of --total {total} is less than one row")
    delivered = sum(s.target for s in specs)
    if total is not None and delivered != total:
        raise CurateError(f"the targets add up to {delivered:,} rows, not --total {total:,}; "
                          "make the counts and ratios agree with the total")


def largest_remainder(weights: list[float], total: int) -> list[int]:
    """Integers proportional to `weights` that add up to `total` exactly (Hamilton's method)."""
    s = float(sum(weights))
    if total == 0 or s == 0:
        return [0] * len(weights)
    quotas = [w * total / s for w in weights]
    floors = [math.floor(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[: total - sum(floors)]:
        floors[i] += 1
    return floors


@dataclass
class Source:
    """A source scanned once for its keys; its rows are converted only where picked."""

    spec: SourceSpec
    kind: str
    files: list[str]
    table: Table
    columns: list[str] | None  # the columns read (None: all)
    positions: np.ndarray  # the table positions of the rows it offers (rows without <think> dropped or not)
    domains: pl.Series  # the domain of each offered row
    manifest: dict | None  # the source run's manifest (lineage), when it is a curate run
    no_think: int  # rows that had no <think> block
    dropped_no_think: int

    @property
    def available(self) -> int:
        return len(self.positions)


MIX_INPUT = ("messages", "problem", "completion", "reasoning", "answer", "domain", "problem_id", "sample_id",
             "source", "run", "completion_tokens", "model")  # the columns a mixture is made from


KEY_CHUNK = 50_000  # rows per batch of the key scan


def read_source(spec: SourceSpec) -> tuple[Table, list[str] | None]:
    """The source's table and the columns a mixture uses (all of them when it has no
    `messages` and no `problem` + `completion`: to_messages names them)."""
    with _naming(spec):
        table = open_table(spec.path)
        columns = table.columns()
        usable = "messages" in columns or {"problem", "completion"} <= set(columns)
        return table, [c for c in columns if c in MIX_INPUT] if usable else None


@contextlib.contextmanager
def _naming(spec: SourceSpec):
    """A table's one-line error, naming the --source."""
    try:
        yield
    except CurateError as e:
        text = str(e)
        raise CurateError(f"{spec.name}={text}" if text.startswith(spec.path) else f"{spec.shown}: {text}") from None


def scan_keys(spec: SourceSpec, table: Table, columns: list[str] | None, no_cot: bool,
              missing_think: str) -> tuple[np.ndarray, pl.Series, int, int]:
    """One streaming pass over the source (texts in batches, never all held): the
    positions and domains of the rows it offers, the rows without a <think> block and
    how many of them were dropped. The rows' shape is checked on the first batch."""
    domains, thinks, checked, n = [], [], False, 0
    with _naming(spec):
        for batch in _batches(table, columns):
            if not checked:
                to_messages(batch.head(100), spec, no_cot, "empty")  # the shape's errors, in to_messages' words
                checked = True
            n += batch.height
            domain = batch["domain"].cast(pl.String) if "domain" in batch.columns else pl.repeat(
                None, batch.height, dtype=pl.String, eager=True)
            domains.append(domain.fill_null(spec.name))
            thinks.append(_has_think(batch, spec, no_cot))
    if n == 0:
        raise CurateError(f"{spec.shown}: the source has no rows")
    think = pl.concat(thinks).to_numpy()
    no_think = int((~think).sum())
    drop = missing_think == "drop" and not no_cot
    positions = np.flatnonzero(think) if drop else np.arange(n)
    if len(positions) == 0:
        raise CurateError(f"{spec.shown}: no rows left (all {no_think:,} had no <think> block and "
                          "--missing-think drop was given)")
    return positions, pl.concat(domains).gather(positions).rename("domain"), no_think, no_think if drop else 0


def _batches(table: Table, columns: list[str] | None):
    """The columns a mixture reads, in batches; a type Parquet cannot store (the mixture
    is written as Parquet) is refused here, in the key scan, before anything is written.
    `messages` is not checked: only its turns' `role` and `content` are copied."""
    for where, frame in table.parts():
        frame = frame.select(columns) if columns is not None else frame
        try:
            for batch in frame.collect_batches(chunk_size=KEY_CHUNK):
                check_storable({k: v for k, v in batch.schema.items() if k != "messages"}, where)
                yield batch
        except CurateError:
            raise
        except Exception as e:  # noqa: BLE001 - polars and pyarrow raise many kinds
            raise CurateError(f"{table.source}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})") \
                from None


def _has_think(batch: pl.DataFrame, spec: SourceSpec, no_cot: bool) -> pl.Series:
    """Per row: whether it has a <think> block (as to_messages reads it; chat rows and
    --no-cot rows count as having one: they are never dropped)."""
    cols = set(batch.columns)
    if no_cot or "messages" in cols:
        return pl.repeat(True, batch.height, eager=True)
    if not {"problem", "completion"} <= cols:
        batch = resolve(batch.columns, shown=spec.shown).apply(batch)
    return _parsed_parts(batch)[0].is_not_null()


def to_messages(df: pl.DataFrame, spec: SourceSpec, no_cot: bool, missing_think: str,
                keep_spelling: bool = False, reuse_tokens_of: str | None = None) -> tuple[pl.DataFrame, int, int]:
    """The source's rows in the mixture's shape (without num_tokens); rows without a
    <think> block, and how many were dropped. With `reuse_tokens_of` (a tokenizer name),
    generated rows whose `model` is that name carry their `completion_tokens` in
    `_generated_tokens` (null elsewhere; see the module's docstring)."""
    cols = set(df.columns)
    if df.height == 0:
        raise CurateError(f"{spec.shown}: the source has no rows")
    if "messages" in cols:
        out, no_think = df.select(_chat_messages(df, spec, no_cot).alias("messages")), 0
        if not keep_spelling:
            out = out.with_columns(_think_form_turns(out["messages"]))
    elif {"problem", "completion"} <= cols:
        out, no_think = _r1_messages(df, no_cot, keep_spelling)
        if reuse_tokens_of is not None and not no_cot and {"completion_tokens", "model"} <= cols:
            matches = df["model"].cast(pl.String) == reuse_tokens_of
            out = out.with_columns(pl.when(matches).then(df["completion_tokens"].cast(pl.Int64))
                                   .alias("_generated_tokens"))
    elif "conversations" in cols or cols & set(COMPLETION_COLUMNS):  # another layout (curate.formats)
        rows = resolve(df.columns, shown=spec.shown).apply(df)
        problem = pl.col("problem").fill_null("") if "problem" in rows.columns else pl.lit("")
        out, no_think = _r1_messages(rows.with_columns(problem.alias("problem")), no_cot, keep_spelling)
    else:
        raise CurateError(f"{spec.shown}: needs a `messages` column, or `problem` and `completion` "
                          f"(columns: {', '.join(df.columns) or 'none'})")
    out = _with_labels_and_ids(out, df, spec)
    dropped = 0
    if "_no_think" in out.columns:
        if missing_think == "drop" and not no_cot:
            dropped = no_think
            out = out.filter(~pl.col("_no_think"))
        out = out.drop("_no_think")
    if out.height == 0:
        raise CurateError(f"{spec.shown}: no rows left (all {dropped:,} had no <think> block and "
                          "--missing-think drop was given)")
    return out, no_think, dropped


def _chat_messages(df: pl.DataFrame, spec: SourceSpec, no_cot: bool) -> pl.Expr:
    """A table's own `messages`; with --no-cot, each assistant turn's think block emptied."""
    messages = _normalise_messages(df, spec)
    if not no_cot:
        return messages
    after = pl.element().struct.field("content").str.replace(r"(?s)^\s*<think>.*?</think>\s*", "")
    return messages.list.eval(pl.struct(
        role=pl.element().struct.field("role"),
        content=pl.when(pl.element().struct.field("role") == "assistant").then(pl.lit(EMPTY_THINK) + after)
        .otherwise(pl.element().struct.field("content"))))


def _think_form_turns(messages: pl.Series) -> pl.Series:
    """Chat messages whose assistant turns spell their reasoning otherwise (Sky-T1's
    thought tags, R1-Zero's answer tags) rewritten in the think form; others unchanged."""
    def rewrite(turn: dict) -> dict:
        text = turn.get("content")
        if turn.get("role") != "assistant" or not has_markup(text) or text.lstrip().startswith("<think>") \
                and "<answer>" not in text:
            return turn
        trace = parse_trace(text)
        return {**turn, "content": think_form(trace) if trace.reasoning is not None else text}

    rows = messages.to_list()
    if not any(has_markup(t.get("content")) for turns in rows for t in turns or ()):
        return messages
    return pl.Series("messages", [[rewrite(t) for t in turns] if turns else turns for turns in rows],
                     dtype=messages.dtype)


def _r1_messages(df: pl.DataFrame, no_cot: bool, keep_spelling: bool = False) -> tuple[pl.DataFrame, int]:
    """curate rows as a user turn (the problem) and an assistant turn (the reasoning in a
    think block, then the answer; an empty think block without reasoning, or with
    --no-cot); and how many rows had no reasoning. A completion that spells its reasoning
    otherwise (Sky-T1's thought/solution tags, R1-Zero's answer tags) is read by
    curate.parsing and written in the think form, unless `keep_spelling`."""
    df = df.with_columns(_parsed_parts(df))
    reasoning, answer = pl.col("_reasoning"), pl.col("_answer")
    has_think = reasoning.is_not_null() & ~pl.lit(no_cot)
    text_after = pl.when(reasoning.is_not_null()).then(pl.coalesce(answer, pl.lit(""))).otherwise(pl.col("completion"))
    think = pl.lit("<think>\n") + reasoning.str.strip_chars() + pl.lit("\n</think>\n\n") + text_after.str.strip_chars()
    if keep_spelling:
        think = pl.when(pl.col("_markup")).then(pl.col("completion").str.strip_chars()).otherwise(think)
    assistant = (pl.when(has_think)
                 .then(think)
                 .otherwise(pl.lit(EMPTY_THINK) + pl.coalesce(text_after, pl.lit("")).str.strip_chars()))
    messages = pl.concat_list(pl.struct(role=pl.lit("user"), content=pl.col("problem").cast(pl.String)),
                              pl.struct(role=pl.lit("assistant"), content=assistant))
    no_think = int(df.select(reasoning.is_null().sum()).item()) if not no_cot else 0
    return df.select(messages.alias("messages"), reasoning.is_null().alias("_no_think")), no_think


def _parsed_parts(df: pl.DataFrame) -> list[pl.Series]:
    """Each row's (reasoning, answer): parsed from a completion with reasoning markup (any
    spelling), else the row's own `reasoning` / `answer` columns; and whether it had markup."""
    completions = df["completion"].cast(pl.String).to_list()
    own_r = df["reasoning"].to_list() if "reasoning" in df.columns else [None] * df.height
    own_a = df["answer"].to_list() if "answer" in df.columns else [None] * df.height
    markup = [has_markup(c) for c in completions]
    traces = [parse_trace(c) if m else None for c, m in zip(completions, markup)]
    return [pl.Series("_reasoning", [t.reasoning if t else r for t, r in zip(traces, own_r)], dtype=pl.String),
            pl.Series("_answer", [t.answer if t else a for t, a in zip(traces, own_a)], dtype=pl.String),
            pl.Series("_markup", markup, dtype=pl.Boolean)]


def _with_labels_and_ids(out: pl.DataFrame, df: pl.DataFrame, spec: SourceSpec) -> pl.DataFrame:
    """domain, problem_id, sample_id, origin and run from the source's columns; rows from
    elsewhere get ids: the problem from its first message (schema.with_problem_id's hash),
    the sample from its source and row; the domain is the source's name."""
    n = df.height
    out = out.with_columns(
        domain=_series(df, "domain", spec.name, n), problem_id=_series(df, "problem_id", None, n),
        sample_id=_series(df, "sample_id", None, n), origin=_series(df, "source", None, n),
        run=_series(df, "run", spec.path, n))
    if out["problem_id"].null_count():
        firsts = out.select(pl.col("messages").list.first().struct.field("content").fill_null("").alias("problem"))
        hashed = with_problem_id(firsts)["problem_id"]
        out = out.with_columns(pl.coalesce(pl.col("problem_id"), hashed).alias("problem_id"))
    return out.with_columns(
        pl.coalesce("sample_id", pl.lit(f"{spec.name}:") + pl.int_range(pl.len()).cast(pl.String)).alias("sample_id"),
        pl.coalesce("domain", pl.lit(spec.name)).alias("domain"))


def _series(df: pl.DataFrame, name: str, default, n: int) -> pl.Series:
    if name in df.columns:
        return df[name].cast(pl.String)
    return pl.Series(name, [default] * n, dtype=pl.String)


def _normalise_messages(df: pl.DataFrame, spec: SourceSpec) -> pl.Expr:
    dtype = df.schema["messages"]
    if dtype == pl.String:  # JSON-encoded messages
        dtype = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
        try:
            df.select(pl.col("messages").str.json_decode(dtype))
        except Exception as e:  # noqa: BLE001
            raise CurateError(f"{spec.shown}: column `messages` is text but not JSON chat messages ({e})") from None
        return pl.col("messages").str.json_decode(dtype).list.eval(
            pl.struct(role=pl.element().struct.field("role"), content=pl.element().struct.field("content")))
    inner = getattr(dtype, "inner", None)
    if not isinstance(dtype, pl.List) or not isinstance(inner, pl.Struct) or \
            not {"role", "content"} <= {f.name for f in inner.fields}:
        raise CurateError(f"{spec.shown}: column `messages` must be a list of {{role, content}}, got {dtype}")
    return pl.col("messages").list.eval(
        pl.struct(role=pl.element().struct.field("role").cast(pl.String),
                  content=pl.element().struct.field("content").cast(pl.String)))


# -- sampling -------------------------------------------------------------------------


def rng_for(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))


def sample_indices(domains: pl.Series, target: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Row indices (with repeats when target > rows) stratified by domain; and the number
    of full passes over the rows (0 when down-sampling)."""
    n = len(domains)
    passes, rest = divmod(target, n)
    groups = {d: np.flatnonzero((domains == d).to_numpy()) for d in sorted(domains.unique().to_list())}
    alloc = largest_remainder([len(g) for g in groups.values()], rest)
    picked = [g[np.sort(rng.choice(len(g), size=k, replace=False))] for g, k in zip(groups.values(), alloc) if k]
    idx = np.concatenate([np.tile(np.arange(n), passes), *picked]) if passes or picked else np.arange(0)
    return idx.astype(np.int64), passes


# -- tokens ---------------------------------------------------------------------------


def load_tokenizer(name: str | None):
    """`name` (a folder or Hub name), or the embedded SmolLM2's tokenizer, which is read
    from the GGUF once (~10 s) and kept as a folder in the curate cache (~0.5 s)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise CurateError("curate mix counts num_tokens with transformers, which is not installed: "
                          "pip install 'curate[hf]' (or [cpu], [gpu])") from None
    if name is None:
        from curate.embedded import EMBEDDED_NAME, cache_dir
        from curate.embedded import load_tokenizer as from_gguf

        folder = cache_dir() / "tokenizers" / EMBEDDED_NAME
        if not (folder / "tokenizer.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder) as tmp:
                from_gguf().save_pretrained(tmp)
        return AutoTokenizer.from_pretrained(str(folder))

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 - offline, unknown name, ...
        raise CurateError(f"--tokenizer {name}: could not load it "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


class TokenCounter:
    """Tokens of all message contents of each row (no special or chat-template tokens),
    batch-encoded by the Rust tokenizer. Its batch encoder ran on one core here, so big
    inputs go to `workers` spawned processes, each with the same tokenizer (sent as its
    JSON), in chunks whose results come back in order."""

    CHUNK = 20_000  # texts per call
    MIN_PARALLEL = 50_000  # below this many texts, one process is faster than starting workers

    def __init__(self, tokenizer, workers: int):
        backend = getattr(tokenizer, "backend_tokenizer", None) or tokenizer._tokenizer
        self.backend, self.workers, self._pool = backend, max(1, workers), None

    def count(self, messages: pl.Series, bar: Progress | None = None) -> np.ndarray:
        """Tokens per row; each distinct text is encoded once (problems repeat across samples)."""
        exploded = messages.rename("m").to_frame().with_row_index("row").explode("m")
        rows = exploded["row"].to_numpy()
        content = exploded.select(pl.col("m").struct.field("content").fill_null("").alias("t"))
        distinct = content.unique(maintain_order=True).with_row_index("u")
        codes = content.join(distinct, on="t", how="left", maintain_order="left")["u"].to_numpy()
        texts = distinct["t"].to_list()
        if bar:
            bar.advance(len(content) - len(texts))
        chunks = [texts[i:i + self.CHUNK] for i in range(0, len(texts), self.CHUNK)]
        if self.workers > 1 and len(texts) >= self.MIN_PARALLEL:
            results = self.pool().map(_count_chunk, chunks)
        else:
            results = (_encode_lengths(self.backend, c) for c in chunks)
        lengths = np.empty(len(texts), dtype=np.int64)
        at = 0
        for part in results:
            lengths[at:at + len(part)] = part
            at += len(part)
            if bar:
                bar.advance(len(part))
        return np.bincount(rows, weights=lengths[codes], minlength=len(messages)).astype(np.int64)

    def pool(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: polars runs threads, which a fork would copy mid-flight
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.backend.to_str(),))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


_WORKER_TOKENIZER = None


def _init_worker(tokenizer_json: str) -> None:
    global _WORKER_TOKENIZER
    from tokenizers import Tokenizer

    _WORKER_TOKENIZER = Tokenizer.from_str(tokenizer_json)


def _count_chunk(texts: list[str]) -> list[int]:
    return _encode_lengths(_WORKER_TOKENIZER, texts)


def _encode_lengths(backend, texts: list[str]) -> list[int]:
    fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [len(e) for e in fast(texts, add_special_tokens=False)]


# -- the run --------------------------------------------------------------------------


def plan(o: MixOptions) -> tuple[list[SourceSpec], dict, RunStore]:
    """Check the options and resolve the targets; nothing is read or written yet."""
    if not o.sources:
        raise CurateError("give at least one --source NAME=PATH:COUNT_OR_RATIO")
    specs = [parse_source(s) for s in o.sources]
    names = [s.name for s in specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise CurateError(f"--source {dup}: the name is given twice")
    for n in o.no_cot:
        if n not in names:
            raise CurateError(f"--no-cot {n}: unknown source (sources: {', '.join(names)})")
    if o.total is not None and o.total < 1:
        raise CurateError(f"--total must be at least 1, got {o.total}")
    if o.test_size is not None and not 0 < o.test_size < 1:
        raise CurateError(f"--test-size must lie in (0, 1), got {o.test_size}")
    for n in o.source_licenses:
        if n not in names:
            raise CurateError(f"--source-license {n}: unknown source (sources: {', '.join(names)})")
    if o.token_counts not in TOKEN_COUNTS:
        raise CurateError(f"--token-counts {o.token_counts!r}: choose reuse or recount")
    if o.missing_think not in ("empty", "drop"):
        raise CurateError(f"--missing-think {o.missing_think!r}: choose empty or drop")
    resolve_targets(specs, o.total)
    config = {"sources": [{"name": s.name, "path": str(Path(s.path).resolve()) if Path(s.path).exists() else s.path,
                           "count": s.count, "ratio": s.ratio, "target": s.target} for s in specs],
              "total": o.total, "seed": o.seed, "test_size": o.test_size, "allow_upsample": o.allow_upsample,
              "tokenizer": o.tokenizer, **({"token_counts": "recount"} if o.token_counts == "recount" else {}),
              "no_cot": sorted(o.no_cot), "missing_think": o.missing_think,
              **({"keep_spelling": True} if o.keep_spelling else {}),
              "license": o.license, "source_licenses": dict(sorted(o.source_licenses.items())),
              "language": list(o.language), "pretty_name": o.pretty_name}
    out = open_run(o.out, "mix", config, overwrite=o.overwrite, command=o.command)
    return specs, config, out


def run(o: MixOptions) -> dict:
    """Build the mixture in a temporary folder that replaces OUT when complete; returns the manifest.

    The steps: read and convert every source (all are checked before any sampling),
    sample each to its target, count tokens, shuffle and split, write."""
    specs, _, out = plan(o)
    timings: dict[str, float] = {}
    with out.session(replace=True) as manifest:
        with _timed(timings, "read"):
            sources = [read_and_convert(s, o) for s in specs]
        with _timed(timings, "load_tokenizer"):
            tokenizer = load_tokenizer(o.tokenizer)
        with _timed(timings, "sample"):
            picks = [sample_indices(src.domains, src.spec.target, rng_for(o.seed, src.spec.name))
                     for src in sources]
        with _timed(timings, "convert"):  # only the picked rows are read and converted
            pools = [convert(src, np.unique(idx), o) for src, (idx, _) in zip(sources, picks)]
        with _timed(timings, "tokenize"):
            parts, report = take_rows(sources, picks, pools, tokenizer, o)
        with _timed(timings, "shuffle_split"):
            mixture = pl.concat(parts, how="vertical_relaxed")
            mixture = mixture[rng_for(o.seed, "shuffle").permutation(mixture.height)]
            train, test = split(mixture, o.test_size, rng_for(o.seed, "test"))
        manifest.update(
            sources=report, tokenizer=o.tokenizer or "embedded SmolLM2-135M-Instruct",
            token_counts={"mode": o.token_counts, "tokenizer_name": tokenizer_name(o),
                          "rule": TOKEN_RULE if o.token_counts == "reuse" else "every row is tokenised"},
            splits={"train": train.height, **({"test": test.height} if test is not None else {})},
            counts={"rows": mixture.height, "unique_rows": sum(len(np.unique(idx)) for idx, _ in picks)},
            timings=timings)
        write(out, train, test, o, timings)
    return manifest


@contextlib.contextmanager
def _timed(timings: dict, name: str):
    start = time.time()
    yield
    timings[name] = round(time.time() - start, 2)


def read_and_convert(spec: SourceSpec, o: MixOptions) -> Source:
    """A source scanned for its keys, refused when it cannot meet its target."""
    table, columns = read_source(spec)
    positions, domains, no_think, dropped = scan_keys(spec, table, columns, spec.name in o.no_cot, o.missing_think)
    if spec.target > len(positions) and not o.allow_upsample:
        raise CurateError(f"--source {spec.shown}: target {spec.target:,} is larger than the source's "
                          f"{len(positions):,} rows; pass --allow-upsample to repeat rows, or lower the target")
    files = [spec.path] if table.kind == "hub" else [str(f) for f in table.files]
    manifest = table.manifest if table.kind in ("select", "filter", "generate", "mix") else None
    return Source(spec, table.kind, files, table, columns, positions, domains, manifest, no_think, dropped)


def convert(src: Source, picked: np.ndarray, o: MixOptions) -> pl.DataFrame:
    """The offered rows `picked` (sorted indices into src.positions) in the mixture's
    shape: only they are read (file by file) and converted. A row without a sample_id
    gets NAME:its table position, as when every row was converted."""
    from curate.select import read_positions

    with _naming(src.spec):
        df = read_positions(src.table, src.positions[picked], src.columns, index="_mix_row")
    fallback = pl.lit(f"{src.spec.name}:") + pl.col("_mix_row").cast(pl.String)
    sample_id = pl.coalesce(pl.col("sample_id").cast(pl.String), fallback) if "sample_id" in df.columns else fallback
    df = df.with_columns(sample_id.alias("sample_id")).drop("_mix_row")
    rows, _, _ = to_messages(df, src.spec, src.spec.name in o.no_cot, "empty", o.keep_spelling,
                             reuse_tokens_of=tokenizer_name(o) if o.token_counts == "reuse" else None)
    return rows


def tokenizer_name(o: MixOptions) -> str:
    """The name a generated row's `model` must equal for its completion_tokens to be reused."""
    if o.tokenizer is not None:
        return o.tokenizer
    from curate.embedded import EMBEDDED_NAME

    return EMBEDDED_NAME


def take_rows(sources: list[Source], picks: list, converted: list[pl.DataFrame], tokenizer,
              o: MixOptions) -> tuple[list[pl.DataFrame], list[dict]]:
    """Each source's picked rows with num_tokens (each distinct row counted once), and its
    report; `converted`: each source's distinct picked rows (convert), in index order."""
    pools = []
    for (idx, _), pool in zip(picks, converted):
        inverse = np.unique(idx, return_inverse=True)[1]
        reused = pool["_generated_tokens"].is_not_null() if "_generated_tokens" in pool.columns else None
        pools.append((pool, inverse, reused))
    texts = sum(int(pool["messages"].list.len().sum()) - (int(r.sum()) if r is not None else 0)
                for pool, _, r in pools)
    parts, report = [], []
    counter = TokenCounter(tokenizer, o.workers)
    try:
        with Progress("tokens", texts, "texts", enabled=o.progress) as bar:
            for src, (_, passes), (pool, inverse, reused) in zip(sources, picks, pools):
                if reused is None or not reused.any():
                    tokens = counter.count(pool["messages"], bar)
                else:  # the problem's turn counted, the completion's tokens reused
                    counted = pool["messages"].list.head(1).zip_with(reused, pool["messages"])
                    tokens = counter.count(counted, bar) + pool["_generated_tokens"].fill_null(0).to_numpy()
                part = pool.with_columns(pl.Series("num_tokens", tokens, dtype=pl.Int64),
                                         pl.lit(src.spec.name).alias("source"))[inverse]
                parts.append(part.select(COLUMNS))
                report.append(source_report(src, part, pool, passes, o)
                              | {"num_tokens": {"reused": int(reused.sum()) if reused is not None else 0,
                                                "counted": pool.height - (int(reused.sum()) if reused is not None
                                                                          else 0)}})
    finally:
        counter.close()
    return parts, report


def source_report(src: Source, part: pl.DataFrame, pool: pl.DataFrame, passes: int, o: MixOptions) -> dict:
    """What the manifest (and the card) says about one source."""
    domains = part.group_by("domain").len().sort("domain")
    return {
        "name": src.spec.name, "path": src.spec.path, "kind": src.kind, "files": src.files[:20],
        "count": src.spec.count, "ratio": src.spec.ratio, "requested": src.spec.target,
        "available": src.available, "delivered": part.height, "upsampled": src.spec.target > src.available,
        "full_passes": passes, "repeated_rows": int(part.height - pool.height),
        "license": o.source_licenses.get(src.spec.name),
        "no_cot": src.spec.name in o.no_cot, "rows_without_think": src.no_think,
        "dropped_without_think": src.dropped_no_think,
        "domains": {d: n for d, n in domains.iter_rows()}, "lineage": lineage(src.manifest, src.spec.path)}


def split(mixture: pl.DataFrame, test_size: float | None, rng) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """A test split of whole problems (no problem, and no repeat of a row, in both
    splits): problems in seeded random order until test_size of the rows are in."""
    if test_size is None:
        return mixture, None
    sizes = mixture.group_by("problem_id").len().sort("problem_id")
    order = rng.permutation(sizes.height)
    counts = sizes["len"].to_numpy()[order]
    need = max(1, round(test_size * mixture.height))
    take = int(np.searchsorted(np.cumsum(counts), need) + 1)
    if take >= sizes.height:
        raise CurateError(f"--test-size {test_size}: the mixture has only {sizes.height} problems; "
                          "nothing would be left for train")
    test_ids = sizes["problem_id"].gather(order[:take])
    is_test = pl.col("problem_id").is_in(test_ids.implode())
    return mixture.filter(~is_test), mixture.filter(is_test)


def lineage(manifest: dict | None, path: str) -> dict | None:
    """What the card tells about a curate source (select -> filter -> generate, or a
    mix), read now so that the card needs only the mixture folder later. Any part may be
    missing (rows from a file, a Hub set, a filter run over a file): the card says unknown."""
    if not manifest:
        return None
    from curate.select import generate_lineage, pass_rate_histogram

    stage, inputs = manifest.get("stage"), manifest.get("inputs") or {}
    out = {}
    if stage == "mix":
        inner = manifest.get("sources") or []
        out["mix"] = {"path": str(Path(path).resolve()), "command": manifest.get("command"),
                      "sources": [s.get("name") for s in inner], "teachers": [_teacher(s) for s in inner]}
    elif stage == "select":
        out["select"] = {k: manifest.get(k) for k in ("config", "counts", "command")}
        out["filter"], out["generate"] = inputs.get("filter"), inputs.get("generate")
        problems = Path(path) / "problems.parquet"
        if problems.is_file() and manifest.get("correctness", {}).get("filters"):
            out["pass_rates"] = pass_rate_histogram(pl.read_parquet(problems, columns=["pass_rate"]))
    elif stage == "filter":
        out["filter"] = {"path": str(Path(path).resolve()), "chain": (manifest.get("config") or {}).get("chain"),
                         "funnel": manifest.get("funnel"), "command": manifest.get("command")}
        out["generate"] = generate_lineage(manifest, path)
    elif stage == "generate":
        cfg = manifest.get("config", {})
        out["generate"] = {"path": str(Path(path).resolve()), "model": cfg.get("model"), "backend": cfg.get("backend"),
                           "template": inputs.get("template"), "sampling": cfg.get("sampling"),
                           "problems": inputs.get("problems"), "command": manifest.get("command")}
    if out.get("filter"):
        out["decontam"] = decontam_results(out["filter"])
    return out


def _teacher(source: dict) -> dict:
    """An inner mixture source's name and teacher model (None when unknown, at any depth)."""
    lineage = source.get("lineage") or {}
    model = (lineage.get("generate") or {}).get("model")
    if model is None and lineage.get("mix"):
        models = {t.get("model") for t in lineage["mix"].get("teachers") or []} - {None}
        model = ", ".join(sorted(models)) or None
    return {"name": source.get("name"), "model": model}


def decontam_results(f: dict) -> dict | None:
    """Rows the decontam step removed, per benchmark, from the filter run's rejected files."""
    chain = f.get("chain") or []
    steps = [(k, s) for k, s in enumerate(chain) if s.get("filter") == "decontam"]
    if not steps:
        return None
    k, step = steps[-1]
    params = step.get("params") or {}
    hits: dict[str, int] = {}
    root = Path(f.get("path") or "")
    for file in sorted((root / "rejected").glob(f"{k:02d}-decontam-part-*.parquet")) if f.get("path") else []:
        df = pl.read_parquet(file)
        if "decontam_benchmark" in df.columns:
            for bench, n in df.group_by("decontam_benchmark").len().iter_rows():
                hits[str(bench)] = hits.get(str(bench), 0) + n
    funnel_steps = (f.get("funnel") or {}).get("steps") or []
    return {"benchmarks": [str(b) for b in params.get("benchmarks") or []], "n": params.get("n"),
            "method": params.get("method"), "hits": hits,
            "rows_in": funnel_steps[k]["rows_in"] if k < len(funnel_steps) else None}


def to_dataset(df: pl.DataFrame, split_name: str):
    """A datasets.Dataset over the frame's Arrow table, with a fingerprint from its
    content, so save_to_disk is reproducible too."""
    import datasets

    table = df.to_arrow(compat_level=pl.CompatLevel.oldest())
    features = datasets.Features({
        "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "source": datasets.Value("string"), "domain": datasets.Value("string"),
        "num_tokens": datasets.Value("int64"), "problem_id": datasets.Value("string"),
        "sample_id": datasets.Value("string"), "origin": datasets.Value("string"), "run": datasets.Value("string")})
    table = table.cast(features.arrow_schema)
    digest = hashlib.sha256()
    for col in ("sample_id", "source"):
        for chunk in table.column(col).chunks:
            for buf in chunk.buffers():
                if buf is not None:
                    digest.update(buf)
    digest.update(str(table.num_rows).encode())
    return datasets.Dataset(datasets.table.InMemoryTable(table), info=datasets.DatasetInfo(features=features),
                            split=split_name, fingerprint=digest.hexdigest()[:16])


def write(out: RunStore, train: pl.DataFrame, test: pl.DataFrame | None, o: MixOptions, timings: dict) -> None:
    """The splits as Hub Parquet shards and a DatasetDict, and the card, into the session's folder."""
    import datasets
    import pyarrow.parquet as pq

    from curate.card import render_card

    folder, manifest = out.dir, out.manifest
    if not o.progress:
        datasets.disable_progress_bars()
    with _timed(timings, "write_parquet"):
        (folder / "data").mkdir()
        splits = {"train": to_dataset(train, "train")}
        if test is not None:
            splits["test"] = to_dataset(test, "test")
        files = {}
        for name, ds in splits.items():
            table = ds.data.table
            n = max(1, math.ceil(table.nbytes / SHARD_BYTES))
            per = math.ceil(table.num_rows / n) if table.num_rows else 0
            files[name] = []
            for i in range(n):
                path = folder / "data" / f"{name}-{i:05d}-of-{n:05d}.parquet"
                pq.write_table(table.slice(i * per, per), path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
                files[name].append(f"data/{path.name}")
    with _timed(timings, "save_to_disk"):
        datasets.DatasetDict(splits).save_to_disk(str(folder / "dataset"))
    manifest["files"] = files
    with _timed(timings, "card"):
        out.write_manifest(manifest)  # the card reads it
        manifest["card"] = render_card(folder, license=o.license, language=list(o.language),
                                       pretty_name=o.pretty_name or out.root.name)
