"""Where parallel work runs: this machine's worker processes, or a Ray cluster.

An executor maps a pure function over items and yields the results in the items'
order, with a bounded number in flight (inputs larger than memory stream through).
A task's outputs are a function of its item alone (a file it writes is named by
the item and written atomically), so the same code gives the same rows on either
executor, and on Ray a task lost with its node is run again elsewhere with nothing
doubled. See docs/ARCHITECTURE.md, "Executors".
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from curate.cluster import TASK_CPUS
from curate.errors import CurateError

EXECUTORS = ("local", "ray")


def _call_in(fn: Callable, item, cwd: str):
    """`fn(item)` in the driver's working directory, when this node has it (a relative path
    in a filter's parameters means there what it means to the driver)."""
    if os.getcwd() != cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    return fn(item)


class Executor:
    """`map(fn, items)` → results in order; a context manager. `workers`: tasks run at once."""

    name = "base"
    workers = 1
    task_cpus: int | None = None  # the CPUs one task is given (Ray: 1); None: a process of this machine

    def map(self, fn: Callable, items: Iterable, *, inflight: int | None = None) -> Iterator:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """Worker processes on this machine (spawned: polars' threads must not be forked);
    with one worker, the work runs in this process."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable, items: Iterable, *, inflight: int | None = None) -> Iterator:
        if self.workers == 1:
            yield from (fn(item) for item in items)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        window: deque = deque()
        limit = inflight or 2 * self.workers
        for item in items:
            window.append(self._pool.submit(fn, item))
            if len(window) >= limit:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class RayExecutor(Executor):
    """Ray tasks (1 CPU each) on the cluster at `address` (see curate.cluster.connect),
    spread over the nodes (Ray's default packs the driver's node first and left the
    second node idle for seconds at a stage's start; Ray Data spreads its tasks too).
    A task keeps to its CPU (curate.cluster.connect sizes polars' thread pool to it) and
    runs in the driver's working directory where its node has it.
    A task whose worker or node dies is retried (`max_retries`) on another node."""

    name = "ray"
    task_cpus = TASK_CPUS

    def __init__(self, address: str | None = None, workers: int | None = None, max_retries: int = 3):
        from curate.cluster import connect

        self._conn = connect(address)
        self.ray = self._conn.__enter__()
        self.address = address
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, int(workers or cpus))
        self._cwd = os.getcwd()
        self._task = self.ray.remote(num_cpus=self.task_cpus, max_retries=max_retries, retry_exceptions=False,
                                     scheduling_strategy="SPREAD")(_call_in)

    def map(self, fn: Callable, items: Iterable, *, inflight: int | None = None) -> Iterator:
        ray = self.ray
        fn_ref = ray.put(fn)
        window: deque = deque()
        limit = inflight or 2 * self.workers
        for item in items:
            window.append(self._task.remote(fn_ref, item, self._cwd))
            if len(window) >= limit:
                yield self._get(window.popleft())
        while window:
            yield self._get(window.popleft())

    def _get(self, ref):
        """A task's result; a task that raised raises its own exception here, not Ray's wrapper of it."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, Exception):
                raise e.cause from None
            raise

    def describe(self) -> dict:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"executor": self.name, "workers": self.workers, "nodes": len(nodes), "address": self.address}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.__exit__(None, None, None)
            self._conn = None


def make_executor(name: str, workers: int = 1, address: str | None = None) -> Executor:
    """`--executor local|ray` (with `--workers N`, `--ray-address ADDR`)."""
    if name == "local":
        if address:
            raise CurateError("--ray-address needs --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address, workers if workers and workers > 1 else None)
    raise CurateError(f"--executor: unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
