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

import json
import os
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from curate.errors import CurateError, load_yaml
from curate.filters import get_filter
from curate.filters.base import Decision, Filter
from curate.formats import PRESETS, Layout, resolve
from curate.options import opt
from curate.progress import Progress
from curate.store import RunStore, Table, collect, open_run, open_table, scan_file, write_parquet_atomic

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
    doc = load_yaml(source.read_text(encoding="utf-8"), shown)
    items = doc.get("filters") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise CurateError(f"{shown}: expected a `filters:` list, "
                          f"e.g. `filters: [format, {{length: {{max_tokens: 32768}}}}]`")
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
        filter_class = get_filter(name)
        try:
            filters.append(filter_class(**params))
        except TypeError as e:
            raise CurateError(f"filter {name}: bad parameter ({_type_error(e)})") from None
    return filters


def _type_error(e: TypeError) -> str:
    text = str(e)
    return text.split(") ", 1)[-1] if ") " in text else text


# -- inputs ---------------------------------------------------------------------------


Part = tuple  # (file, pl.LazyFrame): one shard of a stage's input (Table.parts)


def read_shard(part: Part, column_map: dict[str, str], layout: Layout | None = None) -> pl.DataFrame:
    """One shard of a stage's input; the first stage's as curate rows (--map, then the layout)."""
    where, frame = part
    frame = frame.rename({src: dst for dst, src in column_map.items()}) if column_map else frame
    df = collect(frame, where)
    if layout is not None:
        df = layout.apply(df)
    if "sample_id" not in df.columns:  # a dataset file from elsewhere: ids from file and row
        ids = pl.lit(f"{Path(where).stem}:") + pl.int_range(pl.len()).cast(pl.String)
        df = df.with_columns(ids.alias("sample_id"))
    return df


def _stage_parts(files: list[Path]) -> list[Part]:
    return [(str(f), scan_file(f)) for f in files]


def _rows(part: Part) -> int:
    return collect(part[1].select(pl.len()), part[0]).item()


def input_columns(table: Table, column_map: dict[str, str]) -> list[str]:
    names = table.columns()
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
    preset: str | None = opt(None, "The column names of a public set (default: found by inspection; --map overrides).",
                             choices=tuple(sorted(PRESETS)))
    workers: int = opt(help="Processes for per-row filters (default: all cores).", factory=lambda: os.cpu_count() or 1,
                       min=1)
    overwrite: bool = opt(False, "Replace an existing filter run with a different config.")
    progress: bool = opt(True, "Show progress bars (--no-progress: none).", cli="--no-progress")
    command: list[str] = opt([], "The command line recorded in the manifest.", cli=False)


@dataclass
class FilterPlan:
    opts: FilterOptions
    table: Table
    chain: list[tuple[str, dict]]
    chain_source: str
    filters: list
    config: dict
    run: RunStore
    layout: Layout


def plan(opts: FilterOptions) -> FilterPlan:
    """Validate everything before anything is written."""
    table = open_table(opts.input, split=opts.split)
    chain, source = read_chain(opts.chain, opts.filters)
    filters = build_filters(chain)
    names = input_columns(table, opts.column_map)
    layout = resolve(names, opts.preset, opts.column_map, shown=opts.input)
    columns = set(layout.output_columns(names)) | {"sample_id"}  # made from file and row when absent
    for f in filters:
        missing = [c for c in f.needs if c not in columns]
        if missing:
            raise CurateError(f"filter {f.name} needs column {missing[0]!r}, which the input lacks "
                              f"(columns: {', '.join(sorted(columns))}); map one with --map {missing[0]}=COL")
    config = {
        "input": [{"name": s.name, "bytes": s.stat().st_size, "mtime_ns": s.stat().st_mtime_ns} for s in table.files],
        "chain": [{"filter": f.name, "params": _jsonable(f.params())} for f in filters],
        "column_map": opts.column_map,
        **({"preset": opts.preset} if opts.preset else {}),
    }
    run = open_run(opts.out, "filter", config, overwrite=opts.overwrite, command=opts.command,
                   inputs={"path": opts.input, "kind": table.kind, "shards": [str(s) for s in table.files]})
    return FilterPlan(opts, table, chain, source, filters, config, run, layout)


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


def run(p: FilterPlan) -> dict:
    """Run the chain stage by stage, publish the survivors as kept/, and count the funnel."""
    out = Path(p.opts.out)
    with p.run.session(clear=("kept", "rejected", ".stages")) as manifest:
        manifest["chain_source"] = p.chain_source
        (out / "rejected").mkdir(exist_ok=True)
        survivors, per_filter = _run_chain(p)
        _publish_kept(out, survivors)
        funnel = compute_funnel(out, p)
        manifest.update(funnel=funnel, counts={k: funnel[k] for k in ("rows_in", "kept", "rejected")},
                        filters_info=_filters_info(p.filters), timings={"per_filter": per_filter})
    shutil.rmtree(out / ".stages", ignore_errors=True)
    return manifest


def _run_chain(p: FilterPlan) -> tuple[list[Part], dict]:
    """Each filter over the survivors of the one before; (the last survivors, seconds per filter)."""
    per_filter = {}
    pool = Workers(p.opts.workers)
    try:
        current = p.table.parts()
        for k, f in enumerate(p.filters):
            start = time.time()
            current = _run_stage(p, k, f, current, pool)
            per_filter[f"{k}-{f.name}"] = round(time.time() - start, 2)
        return current, per_filter
    finally:
        pool.close()
        for f in p.filters:
            close = getattr(f, "close", None)
            if close:
                close()


def _run_stage(p: FilterPlan, k: int, f, shards: list[Part], pool: Workers) -> list[Part]:
    """One filter over every shard: survivors to .stages/<k>-<filter>/, dropped rows to rejected/."""
    out = Path(p.opts.out)
    stage = out / ".stages" / f"{k:02d}-{f.name}"
    done = stage / "DONE"
    names = [f"part-{i:05d}.parquet" for i in range(len(shards))]
    if done.exists():
        return _stage_parts([stage / n for n in names])
    stage.mkdir(parents=True, exist_ok=True)
    column_map, layout = (p.opts.column_map, p.layout) if k == 0 else ({}, None)
    if type(f).prepare is not Filter.prepare:  # stateful: sees every survivor first
        cols = sorted({*f.needs, "sample_id"})
        frames = [read_shard(s, column_map, layout).select(cols) for s in shards]
        f.prepare(pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame())
    total = sum(_rows(s) for s in shards)
    with Progress(f.name, total, "rows", enabled=p.opts.progress) as bar:
        for shard, name in zip(shards, names):
            target = stage / name
            if target.exists():
                bar.advance(pq.read_metadata(target).num_rows)
                continue
            batch = read_shard(shard, column_map, layout)
            kept, rejected = _split(f, batch, pool)
            write_parquet_atomic(rejected, out / "rejected" / f"{k:02d}-{f.name}-{name}")
            write_parquet_atomic(kept, target, "lz4")  # last: a stage shard exists only when its rejected rows do
            # (lz4: stage files are read once by the next stage; kept/ is rewritten as zstd)
            bar.advance(batch.height)
    done.touch()
    return _stage_parts([stage / n for n in names])


def _split(f, batch: pl.DataFrame, pool: Workers) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A batch's (kept rows with the filter's scores, rejected rows with `rejected_by` and `reason`)."""
    decision = pool.apply(f, batch) if batch.height else None
    if decision is None:  # nothing left to filter
        return batch, batch.with_columns(pl.lit(f.name).alias("rejected_by"), pl.lit(None, pl.String).alias("reason"))
    scored = batch.with_columns(list(decision.scores.values()))
    keep = decision.keep
    rejected = scored.filter(~keep).with_columns(pl.lit(f.name).alias("rejected_by"),
                                                 decision.reason.filter(~keep).alias("reason"))
    return scored.filter(keep), rejected


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


def _publish_kept(out: Path, current: list[Part]) -> None:
    kept = out / "kept"
    kept.mkdir(exist_ok=True)
    for i, shard in enumerate(current):
        write_parquet_atomic(read_shard(shard, {}), kept / f"part-{i:05d}.parquet")  # zstd, like every other output


def compute_funnel(out: Path, p: FilterPlan) -> dict:
    """Rows in, dropped per filter and reason, kept: counted from the files themselves."""
    rows_in = sum(_rows(s) for s in p.table.parts())
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
    """What each filter states for the manifest (Filter.manifest_info), by name."""
    return {f.name: info for f in filters if (info := f.manifest_info())}
