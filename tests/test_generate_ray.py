"""`curate generate --executor ray`: vLLM (CPU) replicas on a real 2-node Ray cluster on
127.0.0.1 give exactly the local executor's rows, also when a node dies mid-run; bad
executor options are one line."""

from __future__ import annotations

import subprocess
import sys
import time

import polars as pl
import pytest
from raycluster import LocalCluster

from helpers import curate, env

COLUMNS = ["sample_id", "completion", "finish_reason", "prompt_tokens", "completion_tokens"]
ARGS = ["-n", "2", "--max-tokens", "40", "--no-progress"]
PROBLEMS = 12


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    from conftest import GSM8K_TEST

    path = tmp_path_factory.mktemp("ray-problems") / "problems.jsonl"
    path.write_text("\n".join(GSM8K_TEST.read_text().splitlines()[:PROBLEMS]) + "\n")
    return path


@pytest.fixture(scope="module")
def local_rows(problems, tiny_model, tmp_path_factory):
    """The reference: the same command on the local executor."""
    out = tmp_path_factory.mktemp("ray-local") / "run"
    curate("generate", "--input", problems, "--out", out, "--model", tiny_model, *ARGS)
    return rows(out)


def rows(out) -> pl.DataFrame:
    return pl.read_parquet(sorted(out.rglob("*.parquet"))).select(COLUMNS).sort("sample_id")


@pytest.mark.slow
def test_two_replicas_on_two_nodes_give_the_local_rows(ray_cluster, problems, tiny_model, local_rows, tmp_path,
                                                       monkeypatch):
    out = tmp_path / "run"
    # the model folder named relative to a directory the nodes were not started in
    monkeypatch.chdir(tiny_model.parent)
    curate("generate", "--input", problems, "--out", out, "--model", tiny_model.name, *ARGS,
           "--executor", "ray", "--ray-address", ray_cluster.address, "--replicas", "2")
    assert rows(out).equals(local_rows)
    import json

    engine = json.loads((out / "manifest.json").read_text())["engine"]
    assert engine["executor"] == "ray" and engine["replicas"] == 2 and engine["replica_nodes"] == 2
    assert engine["backend"] == "vllm" and engine["replica_resources"] == {"num_cpus": 1}


@pytest.mark.slow
def test_a_node_lost_mid_run_loses_and_doubles_nothing(problems, tiny_model, local_rows, tmp_path):
    """Freeze the worker node once the first shard is written (the replicas were both
    ready before any request was dealt, so its replica holds some: the run cannot end),
    then kill it: its requests go back to the queue, the head's replica finishes them, and
    the rows equal the local executor's, each once. (Freezing first: on a quiet machine
    a kill that merely follows the first shard can land after the last request.)"""
    out = tmp_path / "run"
    with LocalCluster(nodes=2, cpus=1, log_dir=tmp_path) as cluster:
        # two requests in flight per replica, a shard every 2 rows: the kill lands mid-run
        code = ("import sys; from curate.api import generate; generate(input=sys.argv[1], out=sys.argv[2], "
                "model=sys.argv[3], num_samples=2, max_tokens=40, progress=False, executor='ray', "
                "ray_address=sys.argv[4], replicas=2, shard_rows=2, engine={'max_inflight': 2})")
        proc = subprocess.Popen([sys.executable, "-c", code, str(problems), str(out), str(tiny_model),
                                 cluster.address], env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        end = time.monotonic() + 240
        while not list(out.rglob("*.parquet")) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        cluster.freeze_node(1)
        time.sleep(3)  # the head's replica finishes what it holds; the frozen one holds the rest
        assert proc.poll() is None, "the run ended before the node was lost"
        cluster.kill_node(1)
        output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    log = (out / "generate.log").read_text()
    assert "died" in log and "back in the queue" in log
    got = rows(out)
    assert got["sample_id"].n_unique() == got.height == 2 * PROBLEMS
    assert got.equals(local_rows)


def test_bad_executor_options_are_one_line(tmp_path, problems_file):
    cases = [
        (["--replicas", "0"], "--replicas"),
        (["--replicas", "2"], "--replicas needs --executor ray"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address needs --executor ray"),
        (["--executor", "ray", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:1/v1"],
         "--executor ray runs vllm replicas, not --backend openai"),
        (["--executor", "ray", "--backend", "transformers"], "not --backend transformers"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: could not connect"),
    ]
    for extra, message in cases:
        out = tmp_path / "run"
        r = curate("generate", "--input", problems_file, "--out", out, *extra, "--no-progress", check=False)
        assert r.returncode == 2, (extra, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
        assert not out.exists(), extra  # nothing written


@pytest.mark.slow
def test_more_replicas_than_the_cluster_holds_is_one_line(ray_cluster, problems_file, tiny_model, tmp_path):
    r = curate("generate", "--input", problems_file, "--out", tmp_path / "run", "--model", tiny_model,
               "--executor", "ray", "--ray-address", ray_cluster.address, "--replicas", "3", "--no-progress",
               check=False)
    assert r.returncode == 2 and "--replicas 3 needs 3 CPUs" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr
