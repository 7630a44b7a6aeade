"""`curate filter --executor ray` on a real local cluster: the default chain (math-verify in
its worker processes, fastText, dedup, decontam) gives the local executor's kept/ and
rejected/ rows, row for row, and its funnel; and so it does when a worker node is killed
mid-run (its tasks run again on the other node)."""

from __future__ import annotations

import json
import os
import time

import polars as pl
import pyarrow as pa
import pytest
from raycluster import LocalCluster

from curate import chain
from curate.cluster import alive_nodes
from curate.executor import make_executor
from curate.schema import GENERATION_SCHEMA
from curate.store import RunStore
from traces import planted_rows

pytestmark = pytest.mark.slow

COPIES = 4  # shards: one copy of the 14 planted traces each (copies 1.. are duplicates of copy 0)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generate-shaped run of realistic long traces, each with one planted defect, in
    COPIES shards; and its filtering by the local executor (the reference)."""
    root = tmp_path_factory.mktemp("chain-ray")
    rows, _ = planted_rows()
    store = RunStore(root / "generate", "generate")
    store.open(overwrite=False)
    for c in range(COPIES):
        copy = [dict(r, sample_id=f"{r['sample_id']}#{c}", sample_index=c) for r in rows]
        store.write_shard(pa.Table.from_pylist(copy, schema=GENERATION_SCHEMA))
    store.write_manifest({"config": {}, "status": "complete"})
    store.close()
    local = root / "local"
    manifest = filter_run(root / "generate", local, executor="local", workers=2)
    return root / "generate", local, manifest


def filter_run(run, out, **options) -> dict:
    return chain.run(chain.plan(chain.FilterOptions(input=str(run), out=str(out), progress=False, **options)))


def assert_same_outputs(a, b) -> None:
    for sub in ("kept", "rejected"):
        names = sorted(p.name for p in (a / sub).glob("*.parquet"))
        assert names and names == sorted(p.name for p in (b / sub).glob("*.parquet"))
        for name in names:
            assert pl.read_parquet(a / sub / name).equals(pl.read_parquet(b / sub / name)), f"{sub}/{name}"
    funnel_a = json.loads((a / "manifest.json").read_text())["funnel"]
    assert funnel_a == json.loads((b / "manifest.json").read_text())["funnel"]


def test_the_default_chain_on_ray_equals_the_local_executor(generated, ray_cluster, tmp_path, monkeypatch):
    run, local, _ = generated
    monkeypatch.chdir(tmp_path)  # input and output given relative to a directory the nodes were not started in
    manifest = filter_run(os.path.relpath(run), "ray", executor="ray", ray_address=ray_cluster.address)
    assert manifest["executor"] == {"executor": "ray", "workers": 2, "nodes": 2, "address": ray_cluster.address}
    assert_same_outputs(local, tmp_path / "ray")
    steps = {s["filter"]: s for s in manifest["funnel"]["steps"]}
    # every filter did its work on the cluster: math-verify, fastText, dedup across shards, decontam
    assert steps["math"]["by_reason"] == {"wrong answer": COPIES}
    assert steps["language"]["dropped"] == 2 * COPIES
    assert steps["dedup"]["dropped"] == 7 * COPIES - 5  # of 7 rows a copy, 5 of copy 0 are left (9, 10: duplicates)
    assert steps["decontam"]["dropped"] == 1
    assert manifest["funnel"]["kept"] == 4
    kept = pl.read_parquet(tmp_path / "ray" / "kept" / "*.parquet")
    assert kept["math_status"].to_list() == ["correct"] * 4 and "_row" not in kept.columns


def test_a_worker_node_killed_mid_run_changes_nothing(generated, tmp_path, monkeypatch):
    run, local, _ = generated
    killed = {}
    write = chain.Stage.write

    def kill_during_math(self, i, mask, results):
        # the driver has the first math shard back while the others run on both nodes
        if self.f.name == "math" and not killed:
            cluster.kill_node(1)
            killed["at"] = time.monotonic()
        return write(self, i, mask, results)

    monkeypatch.setattr(chain.Stage, "write", kill_during_math)
    with LocalCluster(nodes=2, cpus=1, log_dir=tmp_path) as cluster:
        filter_run(run, tmp_path / "ray", executor="ray", ray_address=cluster.address)
        assert killed
        with make_executor("ray", address=cluster.address) as ex:
            end = time.monotonic() + 60
            while len(alive_nodes(ex.ray)) != 1 and time.monotonic() < end:
                time.sleep(0.5)
            assert len(alive_nodes(ex.ray)) == 1  # the run finished on the head alone
    assert_same_outputs(local, tmp_path / "ray")
