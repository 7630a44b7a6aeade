"""`curate publish`: everything up to the network for real (the layout, the card's YAML,
the data_files globs, the commit operations), every refusal as one line with exit 2,
and a whole push against a scripted Hub on 127.0.0.1 that answers 429 / 5xx first."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from helpers import CURATE, curate
from servers import free_port

publish = import_module("curate.publish")  # curate.publish is the API function

TOKEN = "hf_curateTestSecretToken0123456789abcdef"

CARD = """---
license: mit
language:
- en
task_categories:
- text-generation
size_categories:
- n<1K
tags:
- reasoning
- curate
pretty_name: Tiny reasoning mix
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---

# Tiny reasoning mix

![lengths](plots/lengths.png)

Built with curate.
"""


def make_mix_dir(root: Path, card: str = CARD) -> Path:
    """The layout `curate mix` writes: data/ shards, dataset/ (not uploaded), the card,
    plots, manifest; real Parquet and a real PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (root / "data").mkdir(parents=True)
    for split, n, shards in (("train", 6, 2), ("test", 2, 1)):
        for i in range(shards):
            rows = [{"messages": [{"role": "user", "content": f"{split} problem {i}-{j}"},
                                  {"role": "assistant", "content": f"<think>\nstep\n</think>\n\n{j}"}],
                     "source": "gsm8k", "domain": "math", "num_tokens": 10 + j, "problem_id": f"{split}-{i}-{j}"}
                    for j in range(n // shards)]
            pl.DataFrame(rows).write_parquet(root / "data" / f"{split}-{i:05d}-of-{shards:05d}.parquet")
    (root / "dataset").mkdir()
    (root / "dataset" / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    (root / "plots").mkdir()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.hist([10, 11, 12])
    fig.savefig(root / "plots" / "lengths.png")
    plt.close(fig)
    (root / "README.md").write_text(card)
    (root / "manifest.json").write_text(json.dumps({"stage": "mix", "status": "complete",
                                                    "counts": {"train": 6, "test": 2}}))
    return root


@pytest.fixture
def mix_dir(tmp_path) -> Path:
    return make_mix_dir(tmp_path / "mix")


def no_token_env(tmp_path, **extra) -> dict:
    """No token anywhere: HF_TOKEN empty, HF_HOME (the saved login) an empty folder."""
    home = tmp_path / "hf-home"
    home.mkdir(exist_ok=True)
    return {"HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "", "HF_OIDC_RESOURCE": "", "HF_HOME": str(home),
            "HF_TOKEN_PATH": str(home / "token"), "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def test_plan_lists_the_commit_operations_and_leaves_dataset_out(mix_dir):
    p = publish.plan(mix_dir, "someone/tiny-mix", revision="v1", private=True)
    paths = [f.path_in_repo for f in p.files]
    assert paths == ["README.md", "manifest.json", "data/test-00000-of-00001.parquet",
                     "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", "plots/lengths.png"]
    assert p.rows == 8 and p.metadata["license"] == "mit" and p.revision == "v1" and p.private
    assert all(f.size == f.local.stat().st_size > 0 for f in p.files)
    # a writer's leftover temp file is never uploaded
    (mix_dir / "data" / ".tmp-123-train.parquet").write_bytes(b"x")
    assert len(publish.plan(mix_dir, "someone/tiny-mix").files) == 6


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.replace("license: mit\n", "license: [mit\n"), "README.md:3:9: invalid YAML in the card"),
    (lambda c: c.replace("---\n", "", 1), "has no YAML metadata block"),
    (lambda c: c.replace("license: mit\n", ""), "the card's YAML has no `license`"),
    (lambda c: c.replace("- n<1K", "- tiny"), "size_categories 'tiny' is not one of the Hub's"),
    (lambda c: c.replace("data/test-*", "data/validation-*"),
     "split 'test' data_files 'data/validation-*' matches no Parquet file"),
    (lambda c: c.replace("plots/lengths.png", "plots/missing.png"), "the card shows plots/missing.png"),
    (lambda c: c.replace("- config_name: default\n", "- name: default\n"), "configs[1] needs a `config_name`"),
])
def test_bad_cards_are_refused_offline(tmp_path, edit, message):
    root = make_mix_dir(tmp_path / "mix", card=edit(CARD))
    with pytest.raises(CurateError, match=message.replace("[", r"\[").replace("*", r"\*").replace("(", r"\(")):
        publish.plan(root, "someone/tiny-mix")


def test_refusals_are_one_line_exit_2(tmp_path, mix_dir):
    filter_dir = tmp_path / "filter"
    (filter_dir / "kept").mkdir(parents=True)
    (filter_dir / "manifest.json").write_text(json.dumps({"stage": "filter"}))
    cases = [
        ((filter_dir, "--repo", "a/b"), "holds a `filter` run, not a `mix` run"),
        ((tmp_path / "nothing", "--repo", "a/b"), "no such folder"),
        ((mix_dir, "--repo", "no-slash"), "expected USER/NAME"),
        ((mix_dir, "--repo", "a/b"), "no Hugging Face token: set HF_TOKEN or run `hf auth login`"),
        ((mix_dir, "--repo", "a/b"), "the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1)"),
    ]
    for i, (args, message) in enumerate(cases):
        token = {"HF_TOKEN": TOKEN} if i == len(cases) - 1 else {}
        r = curate("publish", *args, check=False, extra_env={**no_token_env(tmp_path), **token})
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip() == r.stderr.strip().splitlines()[0] and message in r.stderr, (message, r.stderr)
        assert TOKEN not in r.stdout + r.stderr
    assert not (mix_dir / "publish.json").exists()


def test_dry_run_prints_the_files_and_the_card_without_a_token(tmp_path, mix_dir):
    r = curate("publish", mix_dir, "--repo", "someone/tiny-mix", "--dry-run", extra_env=no_token_env(tmp_path))
    assert "would publish 6 files" in r.stdout and "8 rows" in r.stdout
    assert "data/train-00001-of-00002.parquet" in r.stdout and "plots/lengths.png" in r.stdout
    assert "dataset_dict.json" not in r.stdout
    assert "pretty_name: Tiny reasoning mix" in r.stdout and "# Tiny reasoning mix" in r.stdout
    assert not (mix_dir / "publish.json").exists()


def online(*args, env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    """The CLI with HF_HUB_OFFLINE=0: only for a Hub on 127.0.0.1 (HF_ENDPOINT), never the real one."""
    assert env["HF_ENDPOINT"].startswith("http://127.0.0.1:")
    full = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **env, "HF_HUB_OFFLINE": "0"}
    return subprocess.run([*CURATE, *map(str, args)], capture_output=True, text=True, env=full, timeout=timeout)


def test_an_unreachable_hub_is_one_line(tmp_path, mix_dir):
    port = free_port()  # nothing listens there
    r = online("publish", mix_dir, "--repo", "someone/tiny-mix",
               env=no_token_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=f"http://127.0.0.1:{port}"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: cannot reach the Hugging Face Hub at http://127.0.0.1:{port}")
    assert len(r.stderr.strip().splitlines()) == 1
    assert TOKEN not in r.stdout + r.stderr and not (mix_dir / "publish.json").exists()


# -- a scripted Hub ------------------------------------------------------------------------


class FakeHub:
    """Answers the five calls a publish makes, failing the first ones as scripted:
    create repo, create branch, validate-yaml, preupload, commit."""

    def __init__(self, failures: dict[str, list[int]]):
        self.failures = {k: list(v) for k, v in failures.items()}
        self.calls: list[tuple[str, str, int]] = []  # (kind, path, status answered)
        self.auth: set[str] = set()
        self.commits: list[list[dict]] = []
        self.branches: list[str] = []

    def kind(self, method: str, path: str) -> str | None:
        if method == "POST" and path == "/api/repos/create":
            return "create"
        if method == "POST" and "/branch/" in path:
            return "branch"
        if method == "POST" and path == "/api/validate-yaml":
            return "validate"
        if method == "POST" and "/preupload/" in path:
            return "preupload"
        if method == "POST" and "/commit/" in path:
            return "commit"
        return None

    def answer(self, method: str, path: str, body: bytes, headers) -> tuple[int, dict, dict]:
        path = path.split("?")[0]
        self.auth.add(headers.get("authorization", ""))
        kind = self.kind(method, path)
        if kind is None:
            return 404, {}, {"error": f"not scripted: {method} {path}"}
        pending = self.failures.get(kind) or []
        if pending:
            status = pending.pop(0)
            self.calls.append((kind, path, status))
            return status, ({"Retry-After": "1"} if status == 429 else {}), {"error": "try again later"}
        self.calls.append((kind, path, 200))
        if kind == "create":
            payload = json.loads(body)
            return 200, {}, {"url": f"{self.endpoint}/datasets/{payload['organization']}/{payload['name']}"}
        if kind == "branch":
            self.branches.append(path.rsplit("/branch/", 1)[1])
            return 200, {}, {}
        if kind == "validate":
            return 200, {}, {"errors": [], "warnings": []}
        if kind == "preupload":
            files = json.loads(body)["files"]
            return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in files]}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        self.commits.append(lines)
        return 200, {}, {"commitUrl": f"{self.endpoint}{path.replace('/api', '')}/abc123", "commitOid": "abc123"}


@contextmanager
def fake_hub(failures: dict[str, list[int]]):
    hub = FakeHub(failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            status, headers, payload = hub.answer("POST", self.path, body, self.headers)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()


def test_publish_retries_429_and_5xx_and_uploads_one_commit_without_leaking_the_token(tmp_path, mix_dir):
    failures = {"create": [429], "branch": [503], "preupload": [503, 502], "commit": [500]}
    with fake_hub(failures) as hub:
        r = online("publish", mix_dir, "--repo", "someone/tiny-mix", "--revision", "v1", "--private",
                   env=no_token_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=hub.endpoint))
    assert r.returncode == 0, r.stderr
    statuses = [(kind, status) for kind, _, status in hub.calls]
    # each scripted failure was answered, then retried until it succeeded (a retried commit
    # runs create_commit again, pre-upload included: the second pre-upload is a 200)
    for kind, codes in failures.items():
        seen = [s for k, s in statuses if k == kind]
        assert seen[:len(codes) + 1] == [*codes, 200] and set(seen[len(codes):]) == {200}, (kind, statuses)
    assert [s for k, s in statuses if k == "commit"] == [500, 200]
    # create_repo, create_branch and the commit POST are retried by curate; preupload by huggingface_hub's http_backoff
    assert "the Hub answered 429; retrying in 1 s" in r.stderr and "the Hub answered 500; retrying" in r.stderr
    assert hub.branches == ["v1"] and hub.auth == {f"Bearer {TOKEN}"}
    assert len(hub.commits) == 1
    header, *files = hub.commits[0]
    assert header["key"] == "header" and "8 rows" in header["value"]["summary"]
    uploaded = {f["value"]["path"]: base64.b64decode(f["value"]["content"]) for f in files}
    expected = {f.path_in_repo: f.local.read_bytes() for f in publish.plan(mix_dir, "someone/tiny-mix").files}
    assert uploaded == expected and "README.md" in uploaded and not any("dataset" in p.split("/")[0] for p in uploaded)
    assert any("/commit/v1" in path for kind, path, _ in hub.calls if kind == "commit")
    assert "published 6 files (8 rows)" in r.stdout and "abc123" in r.stdout
    record = json.loads((mix_dir / "publish.json").read_text())
    assert record["revision"] == "v1" and record["commit"] == "abc123" and len(record["files"]) == 6
    assert record["status"] == "complete" and record["counts"]["files"] == 6
    # the token: sent to the Hub, never printed, never written
    assert TOKEN not in r.stdout + r.stderr
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f


def test_a_refused_token_is_one_line_without_the_token(tmp_path, mix_dir):
    with fake_hub({"create": [401]}) as hub:
        r = online("publish", mix_dir, "--repo", "someone/tiny-mix",
                   env=no_token_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=hub.endpoint))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "could not create the repo" in r.stderr and "401 (is the token valid?)" in r.stderr
    assert TOKEN not in r.stdout + r.stderr and [k for k, _, _ in hub.calls] == ["create"]


def test_a_real_mix_output_publishes(tmp_path, mixture_dir):
    """`curate mix`'s own output (the shared session fixture): its card passes the offline
    checks, and all of it but dataset/ reaches the (scripted) Hub in one commit."""
    root = tmp_path / "mix"
    shutil.copytree(mixture_dir, root)
    p = publish.plan(root, "someone/mix")
    # the card's "how to load" line names the repo it is published to
    assert 'load_dataset("<user>/' in (root / "README.md").read_text()
    assert 'load_dataset("someone/mix")' in p.card and "<user>/" not in p.card
    paths = [f.path_in_repo for f in p.files]
    assert paths[:2] == ["README.md", "manifest.json"] and any(x.startswith("data/train-") for x in paths)
    assert any(x.startswith("plots/") for x in paths) and not any(x.startswith("dataset/") for x in paths)
    dry = curate("publish", root, "--repo", "someone/mix", "--dry-run", extra_env=no_token_env(tmp_path))
    assert f"would publish {len(paths)} files" in dry.stdout and p.card.splitlines()[1] in dry.stdout
    # the token of a saved login (`hf auth login` writes HF_HOME/token), no HF_TOKEN
    env = no_token_env(tmp_path)
    Path(env["HF_TOKEN_PATH"]).write_text(TOKEN + "\n")
    with fake_hub({}) as hub:
        r = online("publish", root, "--repo", "someone/mix", env={**env, "HF_ENDPOINT": hub.endpoint})
    assert r.returncode == 0, r.stderr
    (commit,) = hub.commits
    assert [f["value"]["path"] for f in commit[1:]] == paths and hub.auth == {f"Bearer {TOKEN}"}
    assert TOKEN not in r.stdout + r.stderr
    assert not [f for f in root.rglob("*") if f.is_file() and TOKEN.encode() in f.read_bytes()]
