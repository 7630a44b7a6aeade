"""The local test cluster and `curate.cluster.connect` on it: two real Ray nodes on 127.0.0.1."""

from __future__ import annotations

import subprocess

import pytest

from curate.cluster import alive_nodes, connect
from tests.raycluster import LocalCluster

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
