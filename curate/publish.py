"""`curate publish`: push a mix output to the Hugging Face Hub as a dataset repo, in one commit.

A mix output DIR (`curate mix`) holds

    DIR/data/<split>-0000i-of-0000n.parquet   the shards       → uploaded
    DIR/README.md                             the card (YAML)  → uploaded
    DIR/plots/*.png                           the card's plots → uploaded
    DIR/manifest.json                         provenance       → uploaded
    DIR/dataset/                              save_to_disk     → not uploaded (the shards are the data)

Everything that can be checked offline is checked before the token is read or the
network is touched (`plan`): the layout, the card's YAML (parsed with huggingface_hub's
DatasetCard, the fields the Hub reads typed as it expects, every `configs` data_files
glob matching shards, every plot the card shows present). `--dry-run` stops there and
prints the files and the card.

`push` then runs create_repo(exist_ok) → create_branch(exist_ok, for a --revision other
than main) → create_commit(CommitOperationAdd for every file). Retries: huggingface_hub's
own `http_backoff` retries the pre-upload call inside create_commit (and the LFS / Xet
transfers of large files) on 429 and 5xx; create_repo, create_branch and the final
commit POST are plain requests in huggingface_hub, so each of the three steps is
wrapped here in the same policy (429 / 500 / 502 / 503 / 504, exponential back-off from
1 s to 8 s, `Retry-After` honoured, 5 attempts). Re-running after a failure is safe:
the Hub skips files whose content it already has.

The token comes from HF_TOKEN or the saved login (`hf auth login`) through
huggingface_hub.get_token(); it is never printed, and never written: error messages
are scrubbed of it, and publish.json (the record of the push, written into DIR) holds
the repo, revision, commit and file hashes only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from curate.errors import CurateError, load_yaml, one_line
from curate.options import opt
from curate.store import locked, now, package_versions, read_manifest, sha256_files, write_text_atomic

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                   "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T")
RETRY_STATUS = (429, 500, 502, 503, 504)
NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
_PLACEHOLDER_REPO = re.compile(r'load_dataset\("<user>/[^"]*"\)')  # the card's "how to load" line


@dataclass
class PublishOptions:
    directory: str = opt(help="A `curate mix` output folder.", argument=True, metavar="DIR", path="any")
    repo: str = opt(help="Hub dataset repo, USER/NAME (created if missing).")
    private: bool = opt(False, "Create the repo private (an existing repo keeps its visibility).")
    revision: str | None = opt(None, "Branch to commit to (created if missing). Default: main.")
    dry_run: bool = opt(False, "Check everything, print the files and the card; upload nothing.")


@dataclass
class Upload:
    path_in_repo: str
    local: Path
    size: int


@dataclass
class PublishPlan:
    dir: Path
    repo: str
    revision: str | None
    private: bool
    files: list[Upload]
    card: str  # README.md as it will be uploaded
    metadata: dict  # its YAML block
    rows: int  # rows in the shards


# -- offline: what would be uploaded, and is it valid ------------------------------------


def plan(directory: str | os.PathLike, repo: str, revision: str | None = None, private: bool = False) -> PublishPlan:
    """Check DIR, the card and the repo name; nothing touches the network."""
    root = Path(directory)
    if not REPO_ID.match(repo) or ".." in repo or repo.endswith((".git", ".")):
        raise CurateError(f"--repo {repo!r}: expected USER/NAME (letters, digits, - _ .)")
    if revision is not None and (not revision.strip() or revision != revision.strip() or ".." in revision
                                 or revision.startswith(("/", "-")) or revision.endswith("/")):
        raise CurateError(f"--revision {revision!r}: not a valid branch name")
    _check_layout(root)
    card_path = root / "README.md"
    # the card shows how to load the dataset from `<user>/NAME`: now the repo is known
    card = _PLACEHOLDER_REPO.sub(f'load_dataset("{repo}")', card_path.read_text(encoding="utf-8"))
    metadata = validate_card(card, root)
    files = upload_files(root)
    rows = _count_rows([f.local for f in files if f.path_in_repo.startswith("data/")])
    return PublishPlan(root, repo, revision, private, files, card, metadata, rows)


def _check_layout(root: Path) -> None:
    read_manifest(root, ("mix", None), "build one with `curate mix`")
    if not sorted((root / "data").glob("*.parquet")):
        raise CurateError(f"{root}: not a mix output (no data/*.parquet shards); build one with `curate mix`")
    if not (root / "README.md").is_file():
        raise CurateError(f"{root}: no README.md (the dataset card); write one with `curate card`")


def upload_files(root: Path) -> list[Upload]:
    """README.md, manifest.json, data/** and plots/**, in that order; never dataset/ or
    anything hidden."""
    paths = [root / "README.md", root / "manifest.json"]
    for sub in ("data", "plots"):
        if (root / sub).is_dir():
            paths += sorted(p for p in (root / sub).rglob("*") if p.is_file())
    files = []
    for p in paths:
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):  # .tmp-* of an interrupted writer, .lock
            continue
        files.append(Upload(rel, p, p.stat().st_size))
    return files


def validate_card(card: str, root: Path) -> dict:
    """The card's YAML metadata, checked offline as far as it can be: it parses, it is a
    mapping huggingface_hub's DatasetCard accepts, the fields the Hub reads have the
    types it expects, every `configs` data_files pattern matches shards under DIR, and
    every image the card shows from DIR exists. One line per problem found first."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    where = root / "README.md"
    match = REGEX_YAML_BLOCK.search(card)
    if not match or match.start() != 0:
        raise CurateError(f"{where}: the card has no YAML metadata block (--- … --- at the top)")
    metadata = load_yaml(match.group(2), str(where), what="invalid YAML in the card", first_line=2)  # after ---
    try:
        DatasetCard(card, ignore_metadata_errors=False)
    except ValueError as e:
        raise CurateError(f"{where}: invalid card metadata: {one_line(e)}") from None
    if not isinstance(metadata, dict) or not metadata:
        raise CurateError(f"{where}: the card's YAML block is empty or not a mapping")

    def strings(key: str, required: bool = True):
        value = metadata.get(key)
        if value is None:
            if required:
                raise CurateError(f"{where}: the card's YAML has no `{key}`")
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
            raise CurateError(f"{where}: card YAML `{key}` must be a string or a list of strings, got {value!r}")
        return items

    strings("license")
    strings("language")
    strings("task_categories")
    strings("tags", required=False)
    for size in strings("size_categories"):
        if size not in SIZE_CATEGORIES:
            raise CurateError(f"{where}: card YAML size_categories {size!r} is not one of the Hub's: "
                              f"{', '.join(SIZE_CATEGORIES)}")
    if "pretty_name" in metadata and not isinstance(metadata["pretty_name"], str):
        raise CurateError(f"{where}: card YAML `pretty_name` must be a string")
    _check_configs(metadata.get("configs"), root, where)
    for image in re.findall(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?[^)]*\)", card[match.end():]):
        if "://" not in image and not image.startswith(("data:", "#")) and not (root / image).is_file():
            raise CurateError(f"{where}: the card shows {image}, which is not in {root}")
    return metadata


def _check_configs(configs, root: Path, where: Path) -> None:
    if configs is None:
        return  # the Hub then reads data/ by its default layout, which a mix output follows
    if not isinstance(configs, list) or not configs:
        raise CurateError(f"{where}: card YAML `configs` must be a list of configs")
    shards = [p.relative_to(root).as_posix() for p in root.rglob("*.parquet")
              if "dataset" not in p.relative_to(root).parts[:1]]
    for i, config in enumerate(configs, 1):
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            raise CurateError(f"{where}: card YAML configs[{i}] needs a `config_name`")
        name = config["config_name"]
        data_files = config.get("data_files")
        if data_files is None:
            raise CurateError(f"{where}: card YAML config {name!r} has no `data_files`")
        entries = data_files if isinstance(data_files, list) else [data_files]
        for entry in entries:
            if isinstance(entry, dict):
                split, patterns = entry.get("split"), entry.get("path")
                if not isinstance(split, str) or patterns is None:
                    raise CurateError(f"{where}: card YAML config {name!r}: "
                                      "each data_files entry needs `split` and `path`")
            else:
                split, patterns = None, entry
            for pattern in patterns if isinstance(patterns, list) else [patterns]:
                if not isinstance(pattern, str):
                    raise CurateError(f"{where}: card YAML config {name!r}: "
                                      f"data_files path {pattern!r} is not a string")
                if not any(fnmatch.fnmatchcase(s, pattern) or fnmatch.fnmatchcase(s, pattern.rstrip("/") + "/*")
                           for s in shards):
                    label = f"split {split!r} " if split else ""
                    raise CurateError(f"{where}: card YAML config {name!r} {label}data_files {pattern!r} "
                                      f"matches no Parquet file in {root}")


def _count_rows(paths: list[Path]) -> int:
    import pyarrow.parquet as pq

    total = 0
    for p in paths:
        if p.suffix == ".parquet":
            try:
                total += pq.read_metadata(p).num_rows
            except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds
                raise CurateError(f"{p}: not a readable Parquet file "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return total


def describe(p: PublishPlan) -> str:
    """What --dry-run prints: the target, the files, and the card."""
    lines = [f"would publish {len(p.files)} files ({_size(sum(f.size for f in p.files))}, {p.rows:,} rows) "
             f"to https://huggingface.co/datasets/{p.repo} at {p.revision or 'main'}"
             f" ({'private' if p.private else 'public'} if created), in one commit:"]
    lines += [f"  {f.path_in_repo:60s} {_size(f.size):>10s}" for f in p.files]
    lines += ["", "── README.md (the card) ──", p.card.rstrip(), "", "dry run: nothing uploaded, no token read"]
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


# -- online: the push ---------------------------------------------------------------------


def get_token() -> str:
    from huggingface_hub import get_token as hub_token

    token = hub_token()
    if not token:
        raise CurateError(NO_TOKEN)
    return token


def push(p: PublishPlan, token: str, attempts: int = 5, log=print) -> dict:
    """Create the repo (and branch), upload every file in one commit, and record it in
    DIR/publish.json. Returns that record. DIR's lock is held throughout, so no curate
    process rewrites the files while they are read and uploaded."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise CurateError("the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1); unset it to publish")
    with locked(p.dir):
        return _push(p, token, attempts, log)


def _push(p: PublishPlan, token: str, attempts: int, log) -> dict:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    endpoint = api.endpoint
    revision = p.revision if p.revision and p.revision != "main" else None
    total = sum(f.size for f in p.files)

    def step(what: str, call):
        return _with_backoff(call, what, token, endpoint, attempts, log)

    url = step("create the repo",
               lambda: api.create_repo(p.repo, repo_type="dataset", private=p.private, exist_ok=True))
    if revision:
        step(f"create branch {revision}",
             lambda: api.create_branch(p.repo, branch=revision, repo_type="dataset", exist_ok=True))
    log(f"uploading {len(p.files)} files ({_size(total)}) to {p.repo} at {revision or 'main'} …")
    commit = step("commit the files", lambda: api.create_commit(
        p.repo, repo_type="dataset", revision=revision,
        operations=[CommitOperationAdd(
                        path_in_repo=f.path_in_repo,
                        path_or_fileobj=p.card.encode() if f.path_in_repo == "README.md" else str(f.local))
                    for f in p.files],
        commit_message=f"curate publish: {p.rows:,} rows in "
                       f"{sum(f.path_in_repo.startswith('data/') for f in p.files)} shards",
        commit_description=f"Uploaded by curate {package_versions()['curate']} from {p.dir.name}: "
                           + ", ".join(f.path_in_repo for f in p.files)))
    digests = {f.path_in_repo: sha256_files([f.local]) for f in p.files}
    digests["README.md"] = hashlib.sha256(p.card.encode()).hexdigest()  # the card as uploaded
    record = {
        "stage": "publish", "repo": p.repo, "repo_url": str(url), "revision": revision or "main",
        "private": p.private, "endpoint": endpoint, "commit_url": commit.commit_url, "commit": commit.oid,
        "files": [{"path": f.path_in_repo, "bytes": f.size, "sha256": digests[f.path_in_repo]} for f in p.files],
        "rows": p.rows, "versions": package_versions(), "published": now(), "status": "complete",
        "counts": {"files": len(p.files), "rows": p.rows, "bytes": total},
    }
    _write_record(p.dir / "publish.json", record, token)
    return record


def _with_backoff(call, what: str, token: str, endpoint: str, attempts: int, log):
    """Run one Hub call; on 429/5xx wait (Retry-After, else 1, 2, 4, 8, 8 s) and try again.
    Anything else, or the last failure, is one line without the token."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    wait = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except OfflineModeIsEnabled:
            raise CurateError("the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1); unset it to publish") from None
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in RETRY_STATUS and attempt < attempts:
                delay = _retry_after(e.response) or wait
                log(f"{what}: the Hub answered {status}; retrying in {delay:g} s ({attempt}/{attempts - 1})")
                time.sleep(delay)
                wait = min(wait * 2, 8.0)
                continue
            hint = {401: " (is the token valid?)",
                    403: " (does the token have write access to this namespace?)"}.get(status, "")
            raise CurateError(_scrub(f"could not {what} on {endpoint}: the Hub answered {status}{hint}: "
                                     f"{_first_line(e)}", token)) from None
        except _transport_errors() as e:
            raise CurateError(_scrub(f"cannot reach the Hugging Face Hub at {endpoint} to {what} "
                                     f"({type(e).__name__}: {_first_line(e)})", token)) from None
        except ValueError as e:  # huggingface_hub's own checks (e.g. the card's YAML, server-side)
            raise CurateError(_scrub(f"could not {what}: {_first_line(e)}", token)) from None


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        errors.append(getattr(mod, "TransportError", None) or mod.ConnectionError)
    return tuple(errors)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _write_record(path: Path, record: dict, token: str) -> None:
    text = json.dumps(record, indent=2) + "\n"
    if token in text:  # cannot happen by construction; refuse rather than write a secret
        raise RuntimeError("refusing to write the token into publish.json")
    write_text_atomic(path, text)
