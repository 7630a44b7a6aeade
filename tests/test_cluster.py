"""The local test cluster and `curate.cluster.connect` on it: two real Ray nodes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess

import pytest
from raycluster import LocalCluster

from curate.cluster import alive_nodes, connect

pytestmark = pytest.mark.slow


def _processes_under(path: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if path in line and "ps -eo" not in line]


def test_two_nodes_run_tasks_and_a_killed_node_leaves_nothing_behind(tmp_path):
    cluster = LocalCluster(nodes=2, cpus=1, log_dir=tmp_path)
    with cluster:
        with connect(cluster.address) as ray:
            assert len(alive_nodes(ray)) == 2

            @ray.remote(num_cpus=1)
            def where(_):
                import time

                time.sleep(0.5)
                return ray.get_runtime_context().get_node_id()

            nodes = set(ray.get([where.remote(i) for i in range(4)]))
            assert len(nodes) == 2  # both nodes did work
            cluster.kill_node(1)
            import time

            end = time.monotonic() + 60
            while len(alive_nodes(ray)) != 1 and time.monotonic() < end:
                time.sleep(0.5)
            assert len(alive_nodes(ray)) == 1
            assert ray.get(where.remote(0)) in nodes  # the head still works
        assert not ray.is_initialized()  # connect() leaves nothing connected
    assert _processes_under(cluster.temp_dir) == []


def test_connect_to_nothing_is_one_clear_error():
    from curate.errors import CurateError

    with pytest.raises(CurateError, match=r"--ray-address 127.0.0.1:1: could not connect"):
        with connect("127.0.0.1:1"):
            pass


def test_executors_give_the_same_results_in_order(ray_cluster):
    import math

    from curate.executor import make_executor

    # what a task runs must be importable on the workers (a curate or library function, not a test's)
    items = list(range(40))
    with make_executor("local", workers=2) as local:
        expected = list(local.map(math.factorial, items))
    with make_executor("ray", address=ray_cluster.address) as ray_exec:
        assert ray_exec.workers == 2 and ray_exec.describe()["nodes"] == 2
        assert list(ray_exec.map(math.factorial, items, inflight=3)) == expected
        assert expected == [math.factorial(x) for x in items]
        # a task keeps to its 1 CPU: polars in it starts one thread, not one per core of the node
        assert list(ray_exec.map(os.getenv, ["POLARS_MAX_THREADS"] * 4)) == ["1"] * 4


def test_ray_tasks_run_in_the_drivers_working_directory(ray_cluster, tmp_path, monkeypatch):
    """A relative path means in a task what it means to the driver (the nodes were started elsewhere)."""
    from curate.executor import make_executor

    monkeypatch.chdir(tmp_path)
    with make_executor("ray", address=ray_cluster.address) as ray_exec:
        assert list(ray_exec.map(os.path.abspath, ["a.parquet"] * 4)) == [str(tmp_path / "a.parquet")] * 4
