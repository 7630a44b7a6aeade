"""`curate filter`: run a chain of filters over a run, keeping every dropped row.

The chain runs filter by filter, as datatrove runs pipeline stages: stage k reads the
rows that survived stage k-1 shard by shard, and writes

    OUT/.stages/<k>-<filter>/part-NNNNN.parquet   survivors (input of stage k+1)
    OUT/rejected/<k>-<filter>-part-NNNNN.parquet  dropped rows: all their columns, plus
                                                  `rejected_by` and `reason`

each shard atomically, so a killed run resumes at the shard it stopped in. A stateful
filter (dedup, decontamination) first sees every survivor of the stage before it
(`Filter.prepare`), then marks shard by shard. The last stage's survivors become
OUT/kept/part-NNNNN.parquet, with one score column per filter that gives scores.
Invariant, checked at the end: rows in = kept + rejected.

Cheap, vectorised filters go first so expensive ones see fewer rows; the order is the
order given.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import yaml

from curate.errors import CurateError
from curate.filters.base import Decision, Filter
from curate.options import opt
from curate.progress import Progress
from curate.store import RunStore, now, package_versions, read_table_file, table_files

FILTERS = {
    "format": ("curate.filters.format", "Format"),
    "length": ("curate.filters.length", "Length"),
    "math": ("curate.filters.math", "Math"),
    "code": ("curate.filters.code", "Code"),
    "language": ("curate.filters.language", "Language"),
    "readability": ("curate.filters.readability", "Readability"),
    "dedup": ("curate.filters.dedup", "Dedup"),
    "decontam": ("curate.filters.decontam", "Decontam"),
}


# -- the chain ------------------------------------------------------------------------


def default_chain_path():
    return resources.files("curate.filters") / "default_chain.yaml"


def read_chain(path: str | None, names: str | None) -> tuple[list[tuple[str, dict]], str]:
    """[(filter name, params)] from a YAML file, a comma list, or the default chain."""
    if path and names:
        raise CurateError("pass either --chain or --filters, not both")
    if names:
        chain = [(n.strip(), {}) for n in names.split(",") if n.strip()]
        if not chain:
            raise CurateError("--filters: no filter names given")
        return chain, f"--filters {names}"
    source = default_chain_path() if path is None else Path(path)
    shown = "the default chain" if path is None else str(path)
    if path is not None and not Path(path).is_file():
        raise CurateError(f"{path}: no such chain file")
    try:
        doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        raise CurateError(f"{where}: bad YAML: {getattr(e, 'problem', e)}") from None
    items = doc.get("filters") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise CurateError(f"{shown}: expected a `filters:` list, e.g. `filters: [format, {{length: {{max_tokens: 32768}}}}]`")
    chain = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            chain.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            if params is not None and not isinstance(params, dict):
                raise CurateError(f"{shown}: filter {i} ({name}): parameters must be a mapping")
            # YAML 1.1 reads a bare `on:` key as true (dedup's `on` parameter)
            params = {("on" if k is True else k): v for k, v in (params or {}).items()}
            chain.append((name, params))
        else:
            raise CurateError(f"{shown}: filter {i} must be a name or a one-key mapping name: {{params}}")
    return chain, shown


def build_filters(chain: list[tuple[str, dict]]) -> list:
    filters = []
    for name, params in chain:
        if name not in FILTERS:
            raise CurateError(f"unknown filter {name!r}; available: {', '.join(FILTERS)}")
        module, cls = FILTERS[name]
        try:
            filter_class = getattr(importlib.import_module(module), cls)
        except ModuleNotFoundError as e:
            raise CurateError(f"filter {name} is not available here ({e})") from None
        try:
            filters.append(filter_class(**params))
        except TypeError as e:
            raise CurateError(f"filter {name}: bad parameter ({_type_error(e)})") from None
    return filters


def _type_error(e: TypeError) -> str:
    text = str(e)
    return text.split(") ", 1)[-1] if ") " in text else text


# -- inputs ---------------------------------------------------------------------------


HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")


def input_shards(path: str, split: str = "train") -> list[Path]:
    p = Path(path)
    if not p.exists() and HUB_NAME.fullmatch(path) and p.suffix not in (".parquet", ".jsonl", ".json"):
        return [hub_shard(path, split)]
    return table_files(path)


def hub_shard(name: str, split: str) -> Path:
    """A Hub dataset's split as one Parquet file in the curate cache (keyed by the
    dataset's fingerprint); a failure to load it is one line."""
    from curate.embedded import cache_dir
    from curate.inputs import read_hub

    table, fingerprint = read_hub(name, split)
    path = cache_dir() / "hub" / name.replace("/", "--") / f"{split}-{fingerprint or 'latest'}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    return path


def read_shard(path: Path, column_map: dict[str, str]) -> pl.DataFrame:
    df = read_table_file(path)
    df = df.rename({src: dst for dst, src in column_map.items()}) if column_map else df
    if "sample_id" not in df.columns:  # a dataset file from elsewhere: ids from file and row
        df = df.with_columns((pl.lit(f"{path.stem}:") + pl.int_range(pl.len()).cast(pl.String)).alias("sample_id"))
    return df


def input_columns(shards: list[Path], column_map: dict[str, str]) -> list[str]:
    shard = shards[0]
    names = pl.read_ndjson(shard, n_rows=1).columns if shard.suffix == ".jsonl" else pq.read_schema(shard).names
    for dst, src in column_map.items():
        if src not in names:
            raise CurateError(f"--map {dst}={src}: the input has no column {src!r} (columns: {', '.join(names)})")
    return [next((dst for dst, src in column_map.items() if src == n), n) for n in names]


# -- the run --------------------------------------------------------------------------


@dataclass
class FilterOptions:
    input: str = opt(help="A generate run folder, a folder of Parquet files, a .parquet/.jsonl file, or a Hub dataset "
                          "name.")
    out: str = opt(help="Output folder: kept/, rejected/, manifest.json.", path="dir")
    chain: str | None = opt(None, "Chain YAML (filters in order, with parameters). Default: the shipped chain.",
                            path="file")
    filters: str | None = opt(None, "Comma list of filters with default parameters, e.g. format,length,math.")
    split: str = opt("train", "Split of a Hub dataset.")
    column_map: dict = opt({}, "COLUMN=INPUT_COLUMN: read a column under another name (repeatable).", cli="--map",
                           pairs="COLUMN=INPUT_COLUMN")
    workers: int = opt(help="Processes for per-row filters (default: all cores).", factory=lambda: os.cpu_count() or 1,
                       min=1)
    overwrite: bool = opt(False, "Replace an existing filter run with a different config.")
    progress: bool = opt(True, "Show progress bars (--no-progress: none).", cli="--no-progress")
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


@dataclass
class FilterPlan:
    opts: FilterOptions
    shards: list[Path]
    chain: list[tuple[str, dict]]
    chain_source: str
    filters: list
    config: dict
    store: RunStore
    resuming: bool


def plan(opts: FilterOptions) -> FilterPlan:
    """Validate everything before anything is written."""
    shards = input_shards(opts.input, opts.split)
    chain, source = read_chain(opts.chain, opts.filters)
    filters = build_filters(chain)
    columns = set(input_columns(shards, opts.column_map)) | {"sample_id"}  # made from file and row when absent
    for f in filters:
        missing = [c for c in f.needs if c not in columns]
        if missing:
            raise CurateError(f"filter {f.name} needs column {missing[0]!r}, which the input lacks "
                              f"(columns: {', '.join(sorted(columns))}); map one with --map {missing[0]}=COL")
    config = {
        "input": [{"name": s.name, "bytes": s.stat().st_size, "mtime_ns": s.stat().st_mtime_ns} for s in shards],
        "chain": [{"filter": f.name, "params": _jsonable(f.params())} for f in filters],
        "column_map": opts.column_map,
    }
    store = RunStore(opts.out, stage="filter")
    resuming = store.check(config, opts.overwrite)
    return FilterPlan(opts, shards, chain, source, filters, config, store, resuming)


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


def run(p: FilterPlan) -> dict:
    out, store = Path(p.opts.out), p.store
    store.open(p.opts.overwrite)
    if p.opts.overwrite:
        for sub in ("kept", "rejected", ".stages"):
            shutil.rmtree(out / sub, ignore_errors=True)
    manifest = {**(store.read_manifest() or {}), "status": "running", "config": p.config,
                "command": p.opts.command, "chain_source": p.chain_source,
                "inputs": {"path": p.opts.input, "shards": [str(s) for s in p.shards]},
                "versions": package_versions()}
    manifest.setdefault("created", now())
    store.write_manifest(manifest)
    (out / "rejected").mkdir(exist_ok=True)
    t0 = time.time()
    timings = {}
    pool = Workers(p.opts.workers)
    try:
        current = p.shards
        for k, f in enumerate(p.filters):
            start = time.time()
            current = _run_stage(p, k, f, current, pool)
            timings[f"{k}-{f.name}"] = round(time.time() - start, 2)
        _publish_kept(out, current)
        funnel = compute_funnel(out, p)
        manifest.update(status="complete", funnel=funnel, filters_info=_filters_info(p.filters),
                        timings={"seconds": round(time.time() - t0, 2), "per_filter": timings, "finished": now()})
        store.write_manifest(manifest)
        shutil.rmtree(out / ".stages", ignore_errors=True)
        return manifest
    except BaseException as e:
        manifest.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed", error=str(e)[:500])
        store.write_manifest(manifest)
        raise
    finally:
        pool.close()
        for f in p.filters:
            close = getattr(f, "close", None)
            if close:
                close()
        store.close()


def _run_stage(p: FilterPlan, k: int, f, shards: list[Path], pool: "Workers") -> list[Path]:
    out = Path(p.opts.out)
    stage = out / ".stages" / f"{k:02d}-{f.name}"
    done = stage / "DONE"
    names = [f"part-{i:05d}.parquet" for i in range(len(shards))]
    if done.exists():
        return [stage / n for n in names]
    stage.mkdir(parents=True, exist_ok=True)
    column_map = p.opts.column_map if k == 0 else {}
    if type(f).prepare is not Filter.prepare:  # stateful: sees every survivor first
        cols = sorted({*f.needs, "sample_id"})
        frames = [read_shard(s, column_map).select(cols) for s in shards]
        f.prepare(pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame())
    total = sum(_rows(s) for s in shards)
    with Progress(f.name, total, "rows", enabled=p.opts.progress) as bar:
        for shard, name in zip(shards, names):
            target = stage / name
            if target.exists():
                bar.advance(_rows(target))
                continue
            batch = read_shard(shard, column_map)
            decision = pool.apply(f, batch) if batch.height else None
            if decision is None:  # nothing left to filter
                kept = batch
                rejected = batch.with_columns(pl.lit(f.name).alias("rejected_by"), pl.lit(None, pl.String).alias("reason"))
            else:
                scored = batch.with_columns(list(decision.scores.values()))
                keep = decision.keep
                kept = scored.filter(keep)
                rejected = scored.filter(~keep).with_columns(
                    pl.lit(f.name).alias("rejected_by"), decision.reason.filter(~keep).alias("reason"))
            _write(rejected, out / "rejected" / f"{k:02d}-{f.name}-{name}")
            _write(kept, target, "lz4")  # last: a stage shard exists only when its rejected rows do
            # (lz4: stage files are read once by the next stage; kept/ is rewritten as zstd)
            bar.advance(batch.height)
    done.touch()
    return [stage / n for n in names]


class Workers:
    """Runs a `parallel` filter (pure per-row work in Python: language, readability) on
    slices of a batch in worker processes, one slice per worker, and joins the
    decisions in order. Small batches, and filters that parallelise themselves (math's
    pool, code's sandboxes) or keep state (dedup, decontam), run in this process."""

    MIN_ROWS_PER_WORKER = 256

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._pool = None

    def apply(self, f, batch: pl.DataFrame):
        if not getattr(f, "parallel", False) or self.workers < 2 or batch.height < 2 * self.MIN_ROWS_PER_WORKER:
            return f(batch)
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: polars runs threads, which a fork would copy mid-flight
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        size = -(-batch.height // self.workers)
        slices = [batch.slice(i, size) for i in range(0, batch.height, size)]
        return join_decisions(list(self._pool.map(_apply_filter, [f] * len(slices), slices)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _apply_filter(f, batch: pl.DataFrame):
    return f(batch)


def join_decisions(decisions: list) -> Decision:
    return Decision(pl.concat([d.keep for d in decisions]), pl.concat([d.reason for d in decisions]),
                    {name: pl.concat([d.scores[name] for d in decisions]) for name in decisions[0].scores})


def _rows(path: Path) -> int:
    return pl.read_ndjson(path).height if path.suffix == ".jsonl" else pq.read_metadata(path).num_rows


def _write(df: pl.DataFrame, path: Path, compression: str = "zstd") -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    df.write_parquet(tmp, compression=compression)
    os.replace(tmp, path)


def _publish_kept(out: Path, current: list[Path]) -> None:
    kept = out / "kept"
    kept.mkdir(exist_ok=True)
    for i, shard in enumerate(current):
        target = kept / f"part-{i:05d}.parquet"
        _write(read_shard(shard, {}), target)  # zstd, like every other output


def compute_funnel(out: Path, p: FilterPlan) -> dict:
    """Rows in, dropped per filter and reason, kept: counted from the files themselves."""
    rows_in = sum(_rows(s) for s in p.shards)
    kept = sum(pq.read_metadata(s).num_rows for s in (out / "kept").glob("part-*.parquet"))
    steps, remaining = [], rows_in
    for k, f in enumerate(p.filters):
        files = sorted((out / "rejected").glob(f"{k:02d}-{f.name}-part-*.parquet"))
        reasons = (pl.concat([pl.read_parquet(x, columns=["reason"]) for x in files]) if files
                   else pl.DataFrame({"reason": []}, schema={"reason": pl.String}))
        by_reason = {r: n for r, n in reasons.group_by("reason").len().sort("len", descending=True).iter_rows()}
        dropped = reasons.height
        steps.append({"filter": f.name, "rows_in": remaining, "dropped": dropped, "kept": remaining - dropped,
                      "by_reason": by_reason})
        remaining -= dropped
    rejected = rows_in - remaining
    if kept + rejected != rows_in:
        raise RuntimeError(f"funnel does not add up: {rows_in} in, {kept} kept, {rejected} rejected")
    return {"rows_in": rows_in, "kept": kept, "rejected": rejected, "steps": steps}


def _filters_info(filters) -> dict:
    return {f.name: info for f in filters if (info := getattr(f, "manifest_info", lambda: None)())}
