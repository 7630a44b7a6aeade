"""A real local Ray cluster for tests: a head and worker nodes on 127.0.0.1.

Each node is `ray start ... --block` in its own process group, with its own CPUs and a
small object store, under a private temp dir. `kill_node(i)` SIGKILLs a worker node's
whole group (raylet, object store and its workers), as a lost machine would be;
`stop()` ends what was started by process group (TERM, then KILL after a grace period)
and never calls `ray stop`, which would end every Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import free_port

OBJECT_STORE_BYTES = 200 * 1024 * 1024


class LocalCluster:
    """`LocalCluster(nodes=2, cpus=1)`: `.address`, `.kill_node(i)`, `.stop()`; a context manager."""

    def __init__(self, nodes: int = 2, cpus: int = 1, log_dir: str | Path | None = None):
        self.nodes, self.cpus = nodes, cpus
        # short: Ray's Unix socket paths live under it (107-character limit)
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.log_dir = Path(log_dir or self.temp_dir)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def _start(self, *args: str, name: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address=127.0.0.1",
               f"--num-cpus={self.cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
               "--disable-usage-stats", *args]
        log = open(self.log_dir / f"{name}.log", "ab")
        # RAY_AUTH_MODE: once any local ray.init has written ~/.ray/auth_token, a head started
        # without it turns token auth on and a joining node is refused; a test cluster runs without
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 90) -> LocalCluster:
        self._start("--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.temp_dir}",
                    name="head")
        self._wait_port(timeout)
        for i in range(1, self.nodes):
            self._start(f"--address={self.address}", name=f"node{i}")
        self.wait_nodes(self.nodes, timeout)
        return self

    def _wait_port(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"ray head exited: see {self.log_dir / 'head.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"ray head did not listen on {self.address} in {timeout:.0f} s")

    def wait_nodes(self, n: int, timeout: float = 90) -> None:
        """Until `n` nodes are alive (asked in a child process: no driver left behind here)."""
        code = ("import ray,sys,time;ray.init(address=sys.argv[1],logging_level='ERROR',log_to_driver=False)\n"
                "end=time.monotonic()+float(sys.argv[3])\n"
                "while time.monotonic()<end:\n"
                "    if sum(1 for x in ray.nodes() if x['Alive'])>=int(sys.argv[2]): sys.exit(0)\n"
                "    time.sleep(0.5)\n"
                "sys.exit(3)")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        r = subprocess.run([sys.executable, "-c", code, self.address, str(n), str(timeout)], env=env,
                           capture_output=True, text=True, timeout=timeout + 60)
        if r.returncode:
            raise RuntimeError(f"ray cluster at {self.address}: {n} nodes not alive ({r.stderr.strip()[-300:]})")

    def freeze_node(self, i: int) -> None:
        """SIGSTOP worker node `i` and everything it started: its tasks and actors make no
        more progress (Ray notices nothing for a while), until `kill_node(i)`."""
        assert i >= 1, "freeze a worker node, not the head"
        for pid in descendants(self.procs[i].pid):  # Ray's workers leave the node's process group
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass

    def kill_node(self, i: int) -> None:
        """SIGKILL worker node `i` (1..nodes-1) and everything it started."""
        assert i >= 1, "kill a worker node, not the head"
        proc = self.procs[i]
        below = descendants(proc.pid)  # Ray's workers leave the node's process group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)

    def stop(self, grace: float = 10) -> None:
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:  # `--block` children outlive a TERM: the whole group goes
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def descendants(root: int) -> list[int]:
    """ROOT and every process below it (parents read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found
