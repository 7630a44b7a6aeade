"""`curate filter`: run a chain of filters over a run, keeping every dropped row.

The chain runs filter by filter, as datatrove runs pipeline stages, over the input's
shards: its files, a file of more than SHARD_ROWS rows in pieces. Every per-shard step
is a task of an Executor (curate/executor.py: local worker processes, or Ray tasks on a
cluster): a task is given a shard's source file and row positions, reads those rows
(only the columns its filter reads), applies the filter and returns the Decision; no
text passes through the driver on the way. (With the local executor, a filter that
starts its own processes, math's pool, runs its tasks in the driver: `Filter.parallel`.)
The driver writes each stage's small per-shard file; the rows themselves are read and
written by tasks, once per shard, at the end. Every file is written atomically:

    OUT/.stages/source/part-NNNNN.parquet     the input as curate rows, written once, when
                                              it is not Parquet in the row layout already
    OUT/.stages/<k>-<filter>/part-NNNNN.parquet   stage k's verdicts on the shard's rows
                                              that entered it: their positions (`_pos`),
                                              every score column so far, `_keep`, `_reason`
                                              (not the rows)
    OUT/rejected/<k>-<filter>-part-NNNNN.parquet  dropped rows: all their columns, the
                                              scores so far, `rejected_by` and `reason`
    OUT/kept/part-NNNNN.parquet               the last stage's survivors with their scores

so a killed run resumes at the shard it stopped in, with either executor. A stateful
filter (dedup) takes three steps: `index` tasks over every shard, `resolve` on the
driver, then the marking tasks (filters/base.py). The last step (`Publish`) is a task
per shard: it reads the shard's rows once and writes its rejected/ files, then its
kept/ file. The texts stream shard by shard, a bounded number of tasks at once: no
process holds all of them. Invariant, checked at the end: rows in = kept + rejected.

Cheap, vectorised filters go first so expensive ones see fewer rows; the order is the
order given.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import pickle
import shutil
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import yaml

from curate.errors import CurateError, load_yaml
from curate.executor import EXECUTORS, Executor, LocalExecutor, make_executor
from curate.filters import get_filter
from curate.filters.base import Decision, Filter, ParamError
from curate.formats import PRESETS, Layout, resolve
from curate.options import opt
from curate.progress import Progress
from curate.store import RunStore, Table, check_storable, collect, open_run, open_table, scan_file, write_parquet_atomic

SHARD_ROWS = 5000  # a larger input file is cut into shards of this many rows
MIN_TASK_ROWS = 256  # a shard is split into tasks this big or bigger when there are fewer shards than workers
INLINE = LocalExecutor(1)  # a stage of few rows runs its tasks in this process (no worker processes to start)

# -- the chain ------------------------------------------------------------------------


def default_chain_path():
    return resources.files("curate.filters") / "default_chain.yaml"


class Chain(list):
    """[(filter name, params)], and where each filter and parameter is written when the chain
    was read from a file: `where[(i, None)]` is filter i's FILE:LINE:COL, `where[(i, key)]` its
    parameter's."""

    def __init__(self, items=(), where: dict | None = None):
        super().__init__(items)
        self.where = where or {}


def read_chain(path: str | None, names: str | None) -> tuple[Chain, str]:
    """[(filter name, params)] from a YAML file, a comma list, or the default chain."""
    if path and names:
        raise CurateError("pass either --chain or --filters, not both")
    if names:
        chain = Chain((n.strip(), {}) for n in names.split(",") if n.strip())
        if not chain:
            raise CurateError("--filters: no filter names given")
        return chain, f"--filters {names}"
    source = default_chain_path() if path is None else Path(path)
    shown = "the default chain" if path is None else str(path)
    if path is not None and not Path(path).is_file():
        raise CurateError(f"{path}: no such chain file")
    doc, root = load_yaml(source.read_text(encoding="utf-8"), shown, node=True)

    def at(node) -> str:
        return f"{shown}:{node.start_mark.line + 1}:{node.start_mark.column + 1}" if node is not None else shown

    items = doc.get("filters") if isinstance(doc, dict) else None
    items_node = _value_node(root, "filters")
    if not isinstance(items, list) or not items:
        raise CurateError(f"{at(items_node or root)}: expected a `filters:` list, "
                          f"e.g. `filters: [format, {{length: {{max_tokens: 32768}}}}]`")
    nodes = items_node.value if isinstance(items_node, yaml.SequenceNode) else []
    chain = Chain()
    for i, item in enumerate(items):
        node = nodes[i] if i < len(nodes) else items_node
        if isinstance(item, str):
            chain.where[(i, None)] = at(node)
            chain.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            name_node, params_node = node.value[0] if isinstance(node, yaml.MappingNode) and node.value else \
                (node, node)
            chain.where[(i, None)] = at(name_node)
            if params is not None and not isinstance(params, dict):
                raise CurateError(f"{at(params_node)}: filter {i + 1} ({name}): parameters must be a mapping")
            for key_node, _ in params_node.value if isinstance(params_node, yaml.MappingNode) else ():
                chain.where[(i, key_node.value)] = at(key_node)
            # YAML 1.1 reads a bare `on:` key as true (dedup's `on` parameter)
            params = {("on" if k is True else k): v for k, v in (params or {}).items()}
            chain.append((name, params))
        else:
            raise CurateError(f"{at(node)}: filter {i + 1} must be a name or a one-key mapping name: {{params}}")
    return chain, shown


def _value_node(node, key: str):
    """The node of `key`'s value in a mapping node (None when it has none)."""
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
    return None


def check_chain(chain: list[tuple[str, dict]]) -> list[type]:
    """The class of each filter of the chain, checked to exist and to take the parameters
    given; nothing is built (no model or benchmark is loaded). Faults as in `build_filters`."""
    classes = []
    for i, (name, params) in enumerate(chain):
        with _placed(chain, i, name):
            filter_class = get_filter(name)
            unknown = _unknown_params(filter_class, params)
            if unknown:
                raise ParamError(f"filter {name}: unknown parameter {unknown[0]!r} (it has "
                                 f"{', '.join(_param_names(filter_class))})", unknown[0])
        classes.append(filter_class)
    return classes


def build_filters(chain: list[tuple[str, dict]]) -> list:
    """The chain's filters, their parameters checked. A bad name or parameter is one line
    naming the filter and the parameter, and FILE:LINE:COL when the chain came from a file."""
    filters = []
    for i, filter_class in enumerate(check_chain(chain)):
        name, params = chain[i]
        with _placed(chain, i, name):
            filters.append(filter_class(**params))
    return filters


@contextlib.contextmanager
def _placed(chain: list[tuple[str, dict]], i: int, name: str):
    """A fault of filter i, prefixed with where the chain file writes it: the parameter at
    fault (a ParamError's `key`), else the filter."""
    where = getattr(chain, "where", {})
    try:
        yield
    except CurateError as e:
        spot = where.get((i, getattr(e, "key", None))) or where.get((i, None))
        if spot is None:
            raise
        raise CurateError(f"{spot}: {e}") from None
    except TypeError as e:  # a parameter the filter requires is missing
        spot = where.get((i, None))
        raise CurateError(f"{spot + ': ' if spot else ''}filter {name}: bad parameter ({_type_error(e)})") from None


def _param_names(filter_class) -> list[str] | None:
    """The keyword parameters a filter takes (None: any)."""
    parameters = list(inspect.signature(filter_class).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _unknown_params(filter_class, params: dict) -> list:
    names = _param_names(filter_class)
    return [] if names is None else [k for k in params if k not in names]


def _type_error(e: TypeError) -> str:
    text = str(e)
    return text.split(") ", 1)[-1] if ") " in text else text


# -- inputs ---------------------------------------------------------------------------


Part = tuple  # (file, pl.LazyFrame): one file of the input (Table.parts)


def read_shard(part: Part, column_map: dict[str, str], layout: Layout | None = None, offset: int = 0) -> pl.DataFrame:
    """Rows of an input file as curate rows (--map, then the layout); `offset`: the first row's number in the file."""
    where, frame = part
    frame = frame.rename({src: dst for dst, src in column_map.items()}) if column_map else frame
    df = collect(frame, where)
    if layout is not None:
        try:
            df = layout.apply(df)
        except CurateError as e:  # a value the layout cannot read
            raise CurateError(f"{where}: {e}") from None
    if "sample_id" not in df.columns:  # a dataset file from elsewhere: ids from file and row
        df = df.with_columns(_ids(Path(where).stem, offset))
    return df


def _ids(stem: str, offset: int) -> pl.Expr:
    return (pl.lit(f"{stem}:") + (pl.int_range(pl.len()) + offset).cast(pl.String)).alias("sample_id")


@dataclass
class Shard:
    """Rows [lo, hi) of a source file, read as curate rows: columns renamed by `column_map`
    and, when the file has no sample_id, ids "<ids>:<row in the file>". Every stage
    writes one output file per shard."""

    path: str
    lo: int
    hi: int
    column_map: dict = field(default_factory=dict)
    ids: str | None = None
    nbytes: int = 0  # the rows' size, uncompressed (from the file's row groups): what a task on them costs

    @property
    def rows(self) -> int:
        return self.hi - self.lo


def read_rows(shard: Shard, columns: list[str] | None = None, positions: np.ndarray | None = None) -> pl.DataFrame:
    """The shard's rows (those at `positions`, counted from 0 in the shard, when given) with
    the `columns` the file has (all when None); only the rows that span the positions are read."""
    lo, hi = shard.lo, shard.hi
    if positions is not None and len(positions):
        lo, hi = shard.lo + int(positions[0]), shard.lo + int(positions[-1]) + 1  # positions ascend
        positions = positions - int(positions[0])
    elif positions is not None:
        hi = lo
    frame = scan_file(Path(shard.path))
    if shard.column_map:
        frame = frame.rename({src: dst for dst, src in shard.column_map.items()}, strict=False)
    if columns is not None:
        names = frame.collect_schema().names()
        frame = frame.select([c for c in columns if c in names])
    df = collect(frame.slice(lo, hi - lo), shard.path)
    if shard.ids is not None and (columns is None or "sample_id" in columns):
        df = df.with_columns(_ids(shard.ids, lo))
    return df if positions is None else df[positions]


def input_columns(table: Table, column_map: dict[str, str]) -> list[str]:
    names = table.columns()
    for dst, src in column_map.items():
        if src not in names:
            raise CurateError(f"--map {dst}={src}: the input has no column {src!r} (columns: {', '.join(names)})")
        if list(column_map.values()).count(src) > 1:
            raise CurateError(f"--map {dst}={src}: the column {src!r} is mapped twice; a column takes one name")
        if dst != src and dst in names and dst not in column_map.values():
            raise CurateError(f"--map {dst}={src}: the input has a column {dst!r} already; rename it too "
                              f"(--map OTHER={dst})")
    return [next((dst for dst, src in column_map.items() if src == n), n) for n in names]


def input_shards(p: FilterPlan) -> list[Shard]:
    """The input as shards. Parquet files of curate rows are read where they are; any other
    input (JSONL, JSON, a datasets folder, a layout to apply) is written once, as curate
    rows, to .stages/source/ (lz4: read again by every stage)."""
    table, column_map = p.table, p.opts.column_map
    if table.memory is None and p.layout.passthrough and all(f.suffix.lower() == ".parquet" for f in table.files):
        shards = []
        for f in table.files:
            try:
                meta = pq.read_metadata(f)
                rows = meta.num_rows
                names = scan_file(f).rename({s: d for d, s in column_map.items()}, strict=False).collect_schema()
            except Exception as e:  # noqa: BLE001 - pyarrow and polars raise many kinds
                raise CurateError(f"{f}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
                    from None
            ids = None if "sample_id" in names else f.stem
            # absolute: a task on another node (or a Ray worker in another directory) finds it
            shards += [Shard(str(Path(f).absolute()), lo, min(lo + SHARD_ROWS, rows), column_map, ids,
                             _row_bytes(meta, lo, min(lo + SHARD_ROWS, rows)))
                       for lo in range(0, max(rows, 1), SHARD_ROWS)]
        return shards
    folder = Path(p.opts.out).absolute() / ".stages" / "source"
    if not (folder / "DONE").exists():
        folder.mkdir(parents=True, exist_ok=True)
        i = 0
        for where, frame in table.parts():
            rows = collect(frame.select(pl.len()), where).item()
            for lo in range(0, max(rows, 1), SHARD_ROWS):
                target = folder / f"part-{i:05d}.parquet"
                if not target.exists():
                    piece = read_shard((where, frame.slice(lo, SHARD_ROWS)), column_map, p.layout, offset=lo)
                    write_parquet_atomic(piece, target, "lz4")
                i += 1
        (folder / "DONE").touch()
    shards = []
    for f in sorted(folder.glob("part-*.parquet")):
        meta = pq.read_metadata(f)
        shards.append(Shard(str(f), 0, meta.num_rows, nbytes=_row_bytes(meta, 0, meta.num_rows)))
    return shards


def _row_bytes(meta: pq.FileMetaData, lo: int, hi: int) -> int:
    """Uncompressed bytes of rows [lo, hi) of a Parquet file, from its row groups (a row
    group's bytes shared evenly among its rows)."""
    total, start = 0.0, 0
    for k in range(meta.num_row_groups):
        group = meta.row_group(k)
        end = start + group.num_rows
        if group.num_rows and end > lo and start < hi:
            total += group.total_byte_size * (min(end, hi) - max(start, lo)) / group.num_rows
        start = end
    return int(total)


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
    executor: str = opt("local", "Where the per-shard work runs: worker processes here, or Ray tasks on a cluster.",
                        choices=EXECUTORS)
    ray_address: str | None = opt(None, "--executor ray: the cluster (HOST:PORT, ray://..., auto); default "
                                        "$RAY_ADDRESS, else a Ray started here.")
    workers: int | None = opt(None, "Tasks at once (default: all cores here; with Ray, the cluster's CPUs).", min=1)
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
    for where, frame in table.parts():  # the rows are copied to Parquet: refused now, not half-way
        check_storable(frame.collect_schema(), where)
    layout = resolve(names, opts.preset, opts.column_map, shown=opts.input)
    if layout.passthrough:
        _check_text_columns(table, opts.column_map, opts.input)
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


def _check_text_columns(table: Table, column_map: dict[str, str], shown: str) -> None:
    """Curate rows, read as they are, hold text where curate writes text (the filters read it so)."""
    from curate.schema import GENERATION_SCHEMA

    schema = table.scan().rename({src: dst for dst, src in column_map.items()}, strict=False).collect_schema()
    for name in GENERATION_SCHEMA.names:
        dtype = schema.get(name)
        if dtype not in (None, pl.String, pl.Null) and str(GENERATION_SCHEMA.field(name).type) == "string":
            raise CurateError(f"{shown}: column {name!r} holds {dtype} values; curate rows hold text there")


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


def run(p: FilterPlan) -> dict:
    """Run the chain stage by stage, publish the survivors as kept/, and count the funnel."""
    out = Path(p.opts.out)
    workers = p.opts.workers or ((os.cpu_count() or 1) if p.opts.executor == "local" else None)
    # joined before the session: an unreachable cluster leaves nothing written
    with make_executor(p.opts.executor, workers=workers, address=p.opts.ray_address) as executor, \
            p.run.session(clear=("kept", "rejected", ".stages")) as manifest:
        manifest["chain_source"] = p.chain_source
        (out / "rejected").mkdir(exist_ok=True)
        shards = input_shards(p)
        per_filter = _run_chain(p, shards, executor)
        start = time.time()
        publish(p, shards, executor)
        published = round(time.time() - start, 2)
        funnel = compute_funnel(out, p, sum(s.rows for s in shards))
        manifest.update(funnel=funnel, counts={k: funnel[k] for k in ("rows_in", "kept", "rejected")},
                        filters_info=_filters_info(p.filters), executor=executor.describe(),
                        timings={"per_filter": per_filter, "publish": published})
    shutil.rmtree(out / ".stages", ignore_errors=True)
    return manifest


def _run_chain(p: FilterPlan, shards: list[Shard], executor: Executor) -> dict:
    """Each filter over the survivors of the one before; the seconds each filter took."""
    per_filter = {}
    token = uuid.uuid4().hex  # names this run's filters in the worker processes
    try:
        for k, f in enumerate(p.filters):
            start = time.time()
            Stage(p, k, shards, executor, token).run()
            per_filter[f"{k}-{f.name}"] = round(time.time() - start, 2)
        return per_filter
    finally:
        release_filters()  # those that ran in this process (one worker: no worker processes)
        for f in p.filters:
            f.close()


def _stage_dir(out: Path, k: int, f: Filter) -> Path:
    return out / ".stages" / f"{k:02d}-{f.name}"


class Stage:
    """One filter over every shard: the kept-mask of each to .stages/<k>-<filter>/, the
    dropped rows to rejected/. The tasks go through `executor.map` (in order, a bounded
    window of them at once); the driver reads the previous stage's masks and writes."""

    def __init__(self, p: FilterPlan, k: int, shards: list[Shard], executor: Executor, token: str):
        self.p, self.k, self.f, self.shards, self.executor = p, k, p.filters[k], shards, executor
        self.token = f"{token}:{k}"
        out = Path(p.opts.out)
        self.out, self.dir = out, _stage_dir(out, k, self.f)
        self.prev = _stage_dir(out, k - 1, p.filters[k - 1]) if k else None

    def name(self, i: int) -> str:
        return f"part-{i:05d}.parquet"

    def mask(self, i: int) -> pl.DataFrame:
        """The rows of shard i that enter this stage: `_pos` and the scores so far."""
        if self.prev is None:
            return pl.DataFrame({"_pos": np.arange(self.shards[i].rows, dtype=np.uint32)})
        return kept_mask(pl.read_parquet(self.prev / self.name(i)))

    def entering(self, i: int) -> int:
        if self.prev is None:
            return self.shards[i].rows
        return int(pl.read_parquet(self.prev / self.name(i), columns=["_keep"])["_keep"].sum())

    def run(self) -> None:
        if (self.dir / "DONE").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        counts = [self.entering(i) for i in range(len(self.shards))]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int).tolist()  # `_row` of each shard's first row
        self.task_rows = max(MIN_TASK_ROWS, -(-sum(counts) // (2 * self.executor.workers)))
        self.executor = _executor_for(self.executor, sum(counts), self.f.parallel)
        if self.f.stateful:
            indexes = self.index(list(range(len(self.shards))))
            self.f.resolve(indexes, self.executor)
        todo = heaviest_first([i for i in range(len(self.shards)) if not (self.dir / self.name(i)).exists()],
                              self.shards, counts)
        with Progress(self.f.name, sum(counts), "rows", completed=sum(counts) - sum(counts[i] for i in todo),
                      enabled=self.p.opts.progress) as bar:
            task = FilterTask(self.f, self.token, "call", self.executor.task_cpus)
            for i, mask, results in self.map(task, todo):
                self.write(i, mask, results)
                bar.advance(mask.height)
        (self.dir / "DONE").touch()

    def index(self, shards: list[int]) -> list[pl.DataFrame | None]:
        """A stateful filter's `index` of every shard (its pieces' indexes joined)."""
        task = FilterTask(self.f, self.token, "index", self.executor.task_cpus)
        indexes = []
        for _, _, results in self.map(task, shards):
            found = [r for r in results if r is not None]
            indexes.append(pl.concat(found, how="vertical_relaxed") if len(found) > 1 else
                           found[0] if found else None)
        return indexes

    def map(self, task: FilterTask, shards: list[int]):
        """(shard, its mask, the results of its pieces), shard by shard, in order."""
        order: deque = deque()  # (shard, mask, pieces) of the pieces handed out, in order

        def pieces():
            for i in shards:
                mask = self.mask(i)
                positions = mask["_pos"].to_numpy()
                starts = range(0, len(positions), self.task_rows) if len(positions) else [0]
                order.append((i, mask, len(starts)))
                for a in starts:
                    yield Piece(self.shards[i], positions[a:a + self.task_rows], self.offsets[i] + a)

        results: list = []
        for result in self.executor.map(task, pieces()):
            results.append(result)
            i, mask, n = order[0]
            if len(results) == n:
                order.popleft()
                yield i, mask, results
                results = []

    def write(self, i: int, mask: pl.DataFrame, results: list) -> None:
        """Shard i's verdicts: the entering rows' positions and scores so far, `_keep`, `_reason`;
        the stage's `work` rides in the file's metadata. The rows are written by `publish`."""
        f = self.f
        decisions = [d for d in results if d is not None]
        if decisions:
            decision = join_decisions(decisions)
        else:  # no rows entered: typed empty columns
            decision = Decision(pl.Series("keep", [], pl.Boolean), pl.Series("reason", [], pl.String),
                                {name: pl.Series(name, [], dtype) for name, dtype in f.scores.items()})
        marked = mask.with_columns(list(decision.scores.values())).with_columns(  # every score so far, this
            decision.keep.alias("_keep"), decision.reason.alias("_reason")).to_arrow()  # filter's last
        write_parquet_atomic(marked.replace_schema_metadata({**(marked.schema.metadata or {}),
                                                            b"curate_work": json.dumps(decision.work).encode()}),
                             self.dir / self.name(i))


def heaviest_first(todo, shards: list[Shard], counts: list[int] | None = None) -> list[int]:
    """The shards `todo`, the costliest first (their rows' bytes; `counts`: the rows that
    enter, of each shard's): so the last tasks of a stage are small ones and no worker
    waits alone for a big shard at the end. The outputs do not depend on the order."""
    def cost(i: int) -> float:
        shard = shards[i]
        return shard.nbytes * (counts[i] / shard.rows if counts is not None and shard.rows else 1.0)
    return sorted(todo, key=lambda i: (-cost(i), i))


def kept_mask(verdicts: pl.DataFrame) -> pl.DataFrame:
    """A stage file's survivors: `_pos` and their scores."""
    return verdicts.filter(pl.col("_keep")).drop("_keep", "_reason")


def _executor_for(executor: Executor, rows: int, parallel: bool = True) -> Executor:
    """The executor for `rows` rows of work: with the local executor, a few rows run in this
    process (starting worker processes would cost more than the work), and so does a filter
    that starts its own processes (`parallel` False: a pool inside a pool worker can hang)."""
    local = executor.name == "local"
    return INLINE if local and (not parallel or rows < 2 * MIN_TASK_ROWS) else executor


def join_decisions(decisions: list) -> Decision:
    if len(decisions) == 1:
        return decisions[0]
    return Decision(pl.concat([d.keep for d in decisions]), pl.concat([d.reason for d in decisions]),
                    {name: pl.concat([d.scores[name] for d in decisions]) for name in decisions[0].scores},
                    _add_work(d.work for d in decisions))


def _add_work(works) -> dict[str, int]:
    total: dict[str, int] = {}
    for work in works:
        for k, n in work.items():
            total[k] = total.get(k, 0) + n
    return total


# -- the tasks ------------------------------------------------------------------------


@dataclass
class Piece:
    """A task's rows: `positions` (ascending, counted from 0 in the shard) of `shard`;
    `row0` is the `_row` of the first of them."""

    shard: Shard
    positions: np.ndarray
    row0: int


_LIVE: dict[str, Filter] = {}  # this process's filter for the stage whose tasks it runs now


class FilterTask:
    """What a worker does with a Piece: read its rows (the columns the filter reads, plus
    `sample_id`, and `_row` for a stateful filter), then return the filter's Decision
    (`step="call"`, None for no rows) or its index (`step="index"`). The filter travels
    pickled and is unpickled once per process and stage, so its models and process pools
    (math's, code's sandboxes) start once there and live until the next stage's first task."""

    def __init__(self, f: Filter, token: str, step: str, cpus: int | None = None):
        self.blob = pickle.dumps(f)
        self.token, self.step, self.cpus = f"{token}:{step}", step, cpus
        self.columns = list(dict.fromkeys((*f.needs, *getattr(f, "uses", ()), "sample_id")))
        self.stateful = f.stateful

    def __call__(self, piece: Piece):
        f = live_filter(self.token, self.blob, self.cpus)
        batch = read_rows(piece.shard, self.columns, piece.positions)
        if self.stateful:
            batch = batch.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + piece.row0).alias("_row"))
        if self.step == "index":
            return f.index(batch)
        if not batch.height:
            return None
        before = f.work_counts()
        decision = f(batch)
        decision.work = {k: n - before.get(k, 0) for k, n in f.work_counts().items() if n != before.get(k, 0)}
        return decision


def live_filter(token: str, blob: bytes, cpus: int | None = None) -> Filter:
    """The filter of the stage `token`, unpickled on its first task here (fitted to the
    task's `cpus` when the executor gives tasks a share); the previous stage's is closed."""
    f = _LIVE.get(token)
    if f is None:
        release_filters()
        f = _LIVE[token] = pickle.loads(blob)
        if cpus:
            f.fit(cpus)
    return f


def release_filters() -> None:
    """Close the filters this process holds (their worker processes end)."""
    while _LIVE:
        _LIVE.popitem()[1].close()


# -- the outputs ----------------------------------------------------------------------


@dataclass
class Publish:
    """The task that writes shard `i`'s rows (`publish`): its source rows are read once; for
    each stage, the rows it dropped go to rejected/<k>-<filter>-part-i (the scores so far,
    `rejected_by`, `reason`); then the last stage's survivors go to kept/part-i — last, so
    a shard with a kept/ file is complete and a resumed run skips it."""

    out: Path
    stages: list[tuple[str, Path]]  # (filter name, stage dir), in chain order

    def __call__(self, item: tuple[int, Shard]) -> int:
        i, shard = item
        name = f"part-{i:05d}.parquet"
        rows = read_rows(shard)
        for k, (filter_name, folder) in enumerate(self.stages):
            verdicts = pl.read_parquet(folder / name)
            dropped = verdicts.filter(~pl.col("_keep"))
            rejected = rows[dropped["_pos"].to_numpy()].with_columns(
                dropped.drop("_pos", "_keep", "_reason").get_columns()).with_columns(
                pl.lit(filter_name).alias("rejected_by"), dropped["_reason"].alias("reason"))
            write_parquet_atomic(rejected, self.out / "rejected" / f"{k:02d}-{filter_name}-{name}")
        survivors = kept_mask(verdicts)
        kept = rows[survivors["_pos"].to_numpy()].with_columns(survivors.drop("_pos").get_columns())
        write_parquet_atomic(kept, self.out / "kept" / name)  # zstd, like every other output
        return kept.height


def publish(p: FilterPlan, shards: list[Shard], executor: Executor) -> None:
    """rejected/ and kept/ from the stages' verdicts: a `Publish` task per shard not yet written."""
    out = Path(p.opts.out).absolute()  # the tasks write there, in whatever directory they run
    (out / "kept").mkdir(exist_ok=True)
    todo = [(i, shards[i]) for i in heaviest_first(range(len(shards)), shards)
            if not (out / "kept" / f"part-{i:05d}.parquet").exists()]
    task = Publish(out, [(f.name, _stage_dir(out, k, f)) for k, f in enumerate(p.filters)])
    with Progress("publish", sum(s.rows for s in shards), "rows", enabled=p.opts.progress,
                  completed=sum(s.rows for s in shards) - sum(s.rows for _, s in todo)) as bar:
        for (_, shard), _ in zip(todo, _executor_for(executor, sum(s.rows for _, s in todo)).map(task, todo)):
            bar.advance(shard.rows)


def compute_funnel(out: Path, p: FilterPlan, rows_in: int) -> dict:
    """Rows in, dropped per filter and reason, kept: counted from the files themselves."""
    kept = sum(pq.read_metadata(s).num_rows for s in (out / "kept").glob("part-*.parquet"))
    steps, remaining = [], rows_in
    for k, f in enumerate(p.filters):
        files = sorted((out / "rejected").glob(f"{k:02d}-{f.name}-part-*.parquet"))
        reasons = (pl.concat([pl.read_parquet(x, columns=["reason"]) for x in files]) if files
                   else pl.DataFrame({"reason": []}, schema={"reason": pl.String}))
        by_reason = {r: n for r, n in reasons.group_by("reason").len().sort("len", descending=True).iter_rows()}
        dropped = reasons.height
        work = _add_work(json.loads((pq.read_schema(m).metadata or {}).get(b"curate_work", b"{}"))
                         for m in sorted(_stage_dir(out, k, f).glob("part-*.parquet")))
        steps.append({"filter": f.name, "rows_in": remaining, "dropped": dropped, "kept": remaining - dropped,
                      "by_reason": by_reason, **({"work": work} if work else {})})
        remaining -= dropped
    rejected = rows_in - remaining
    if kept + rejected != rows_in:
        raise RuntimeError(f"funnel does not add up: {rows_in} in, {kept} kept, {rejected} rejected")
    return {"rows_in": rows_in, "kept": kept, "rejected": rejected, "steps": steps}


def _filters_info(filters) -> dict:
    """What each filter states for the manifest (Filter.manifest_info), by name."""
    return {f.name: info for f in filters if (info := f.manifest_info())}
