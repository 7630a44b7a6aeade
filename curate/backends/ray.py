"""`--executor ray`: N vLLM engine replicas as Ray actors, fed from one queue of requests.

`RayBackend` is a Backend like the others (`run(requests)` yields `(request, samples)`
as they finish), so generate's resume, shards, manifest and counts do not change. Each
replica is an actor holding the same `VLLMBackend` the local executor uses, so the
prompt tokens and the per-problem seeded sampling are the same, and so are the rows.

The driver keeps up to `max_inflight` requests on each replica: one `exchange(new)`
call per replica at a time hands it new requests and returns the ones it finished (its
engine keeps stepping in a thread of the actor between calls). The driver remembers
what each replica holds; when a replica dies (actor killed, node lost: RayActorError),
its unfinished requests go back to the front of the queue for the others — a request is
yielded once, when a replica returns it, so nothing is lost or doubled. A replacement
is started when the cluster has room for one; with no replica left the run stops with
one line (what finished is saved; running again resumes).

Replicas take 1 CPU each (`replica_cpus`; torch/OpenMP threads set to match), or
`tensor_parallel_size` GPUs each on a cluster with GPUs. The engine runs inside the
actor's own process, so a killed actor takes its engine with it. Engine output stays
in Ray's session logs. See docs/ARCHITECTURE.md, "Generation executors".
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from curate.backends.base import Backend, Request, Sample
from curate.errors import CurateError

log = logging.getLogger(__name__)

RAY_BACKENDS = ("vllm",)  # engines whose rows do not depend on which requests share a batch
DEFAULT_WINDOW = 1024  # requests in flight per replica (VLLMBackend's own window)
EXCHANGE_WAIT_S = 2.0  # how long a replica holds an exchange call waiting for a finished request
REPLACE_WAIT_S = 30.0  # how long a wanted replacement waits for the cluster to have room


def check_backend(backend: str) -> None:
    """One line when `backend` cannot run as Ray replicas."""
    if backend not in RAY_BACKENDS:
        hint = "; for a fleet of servers give several --base-url" if backend == "openai" else ""
        raise CurateError(f"--executor ray runs {' or '.join(RAY_BACKENDS)} replicas, not --backend {backend}{hint}")


class _Queue:
    """What a replica's engine pulls requests from: the inbox's (number, request) items
    while it has any, remembering each request's number.

    It never blocks: empty, it stops the engine's iteration (the engine finishes what it
    holds), and the replica's loop starts a new run when more arrive."""

    def __init__(self, first, inbox: queue.Queue, numbers: dict):
        self.first, self.inbox, self.numbers = first, inbox, numbers

    def __iter__(self):
        return self

    def __next__(self) -> Request:
        if self.first is not None:
            item, self.first = self.first, None
        else:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                raise StopIteration from None
        number, req = item
        self.numbers[id(req)] = number
        return req


class Replica:
    """One engine in a Ray actor (made remote in `RayBackend`). Requests travel as
    (number, Request); finished ones come back as (number, samples)."""

    def __init__(self, backend: str, model: str, sampling, options: dict, cpus: int):
        self.error = None
        try:
            if cpus:
                import torch

                torch.set_num_threads(cpus)  # before the engine loads (vLLM's CPU worker pins it after)
            from curate.backends import make_backend

            self.backend = make_backend(backend, model, sampling, options)
        except CurateError as e:
            self.error = str(e)
            return
        except Exception as e:  # noqa: BLE001 - reported by ready() as one line
            self.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.failed: BaseException | None = None
        threading.Thread(target=self._loop, name="curate-replica", daemon=True).start()

    def _loop(self) -> None:
        numbers: dict[int, int] = {}
        try:
            while True:
                first = self.inbox.get()
                for req, samples in self.backend.run(_Queue(first, self.inbox, numbers)):
                    self.outbox.put((numbers.pop(id(req)), samples))
        except BaseException as e:  # noqa: BLE001 - handed to the driver by exchange()
            self.failed = e
            self.outbox.put(None)

    def ready(self) -> dict:
        """Where this replica runs, or the one line that says why it could not start."""
        import ray

        ctx = ray.get_runtime_context()
        return {"error": self.error, "node": ctx.get_node_id(), "host": os.uname().nodename,
                "describe": None if self.error else self.backend.describe()}

    def validate(self, prompt) -> str | None:
        try:
            self.backend.validate(prompt)
        except CurateError as e:
            return str(e)
        return None

    def exchange(self, new: list) -> list:
        """Queue `new`; return the requests finished so far (waiting a little for one)."""
        for item in new:
            self.inbox.put(item)
        out = []
        try:
            out.append(self.outbox.get(timeout=EXCHANGE_WAIT_S))
            while True:
                out.append(self.outbox.get_nowait())
        except queue.Empty:
            pass
        if None in out:
            raise RuntimeError(f"engine failed: {type(self.failed).__name__}: {self.failed}") from self.failed
        return out


class _Slot:
    """The driver's view of one replica: its actor and the requests it holds."""

    def __init__(self, actor, number: int):
        self.actor, self.number = actor, number
        self.held: dict[int, Request] = {}
        self.call = None  # the exchange in progress
        self.info: dict = {}


class RayBackend(Backend):
    """`replicas` engines of `options["backend"]` on the Ray cluster at `ray_address`."""

    name = "ray"

    def __post_init__(self):
        from curate.cluster import alive_nodes, connect

        opts = self.options
        self.inner = opts.get("backend", "vllm")
        check_backend(self.inner)
        self.replicas = int(opts.get("replicas") or 1)
        self.address = opts.get("ray_address")
        self.window = int(opts.get("max_inflight") or DEFAULT_WINDOW)
        self.inner_options = {k: v for k, v in opts.items()
                              if k not in ("backend", "replicas", "ray_address", "replica_cpus", "llm")}
        self._conn = connect(self.address)
        self.ray = self._conn.__enter__()
        try:
            self.resources = self._resources(int(opts.get("replica_cpus") or 1))
            self.cluster_nodes = len(alive_nodes(self.ray))
            self._actor_class = self.ray.remote(max_restarts=0, max_task_retries=0, **self.resources)(Replica)
            self.slots: list[_Slot] = []
            self.started = 0
            from ray.exceptions import RayActorError

            starting = [self._start() for _ in range(self.replicas)]
            for slot, ready in starting:
                try:
                    info = self.ray.get(ready)
                except RayActorError as e:
                    raise CurateError(f"engine replica {slot.number} did not start ({_line(e)})") from None
                self._ready(slot, info)
        except BaseException:
            self.close()
            raise

    def _resources(self, cpus: int) -> dict:
        """Per replica: `tensor_parallel_size` GPUs on a cluster with GPUs, else `cpus` CPUs;
        refused at once when the cluster cannot hold `replicas` of them."""
        total = self.ray.cluster_resources()
        where = f"the Ray cluster at {self.address}" if self.address else "the local Ray"
        if total.get("GPU", 0) > 0:
            gpus = int(self.inner_options.get("tensor_parallel_size") or 1)
            need, unit, per = {"num_cpus": 1, "num_gpus": gpus}, "GPU", gpus
        else:
            need, unit, per = {"num_cpus": cpus}, "CPU", cpus
        if self.replicas * per > total.get(unit, 0):
            raise CurateError(f"--replicas {self.replicas} needs {self.replicas * per} {unit}s; "
                              f"{where} has {int(total.get(unit, 0))}")
        threads = str(cpus if unit == "CPU" else 1)
        env = {"OMP_NUM_THREADS": threads, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false",
               "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
        self._threads = cpus if unit == "CPU" else 0
        return {**need, "runtime_env": {"env_vars": env}, "scheduling_strategy": "SPREAD"}

    def _start(self):
        # a model folder given relative to here is found by an actor whatever its node's working directory
        model = str(Path(self.model).absolute()) if Path(self.model).exists() else self.model
        actor = self._actor_class.remote(self.inner, model, self.sampling, self.inner_options, self._threads)
        self.started += 1
        return _Slot(actor, self.started), actor.ready.remote()

    def _ready(self, slot: _Slot, info: dict) -> None:
        if info["error"]:
            raise CurateError(info["error"])
        slot.info = info
        self.slots.append(slot)

    def describe(self) -> dict:
        first = self.slots[0].info["describe"] if self.slots else {"backend": self.inner, "model": self.model}
        return {**first, "executor": "ray", "address": self.address, "replicas": self.replicas,
                "replica_resources": {k: v for k, v in self.resources.items() if k.startswith("num_")},
                "replica_hosts": sorted({s.info["host"] for s in self.slots}),
                "replica_nodes": len({s.info["node"] for s in self.slots}), "cluster_nodes": self.cluster_nodes}

    def validate(self, prompt) -> None:
        error = self.ray.get(self.slots[0].actor.validate.remote(prompt))
        if error:
            raise CurateError(error)

    # -- the queue -------------------------------------------------------------------

    def run(self, requests: Iterable[Request]) -> Iterator[tuple[Request, list[Sample]]]:
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        source = iter(requests)
        requeued: deque[tuple[int, Request]] = deque()
        counter = 0
        exhausted = False
        starting: dict = {}  # ready ref -> slot (replacements loading their engine)
        wanted: list[float] = []  # when each wanted replacement was asked for
        last_death = ""

        def next_item():
            nonlocal counter, exhausted
            if requeued:
                return requeued.popleft()
            req = None if exhausted else next(source, None)
            if req is None:
                exhausted = True
                return None
            counter += 1
            return counter, req

        def feed(slots: list[_Slot]) -> None:
            """Top up the idle replicas, one request each in turn, then start their exchanges."""
            new: dict[int, list] = {id(s): [] for s in slots}
            open_ = list(slots)
            while open_:
                for slot in list(open_):
                    item = next_item() if len(slot.held) + len(new[id(slot)]) < self.window else None
                    if item is None:
                        open_.remove(slot)
                    else:
                        new[id(slot)].append(item)
            for slot in slots:
                slot.held.update(new[id(slot)])
                slot.call = slot.actor.exchange.remote(new[id(slot)]) if slot.held else None

        def died(slot: _Slot, why: str) -> None:
            """Its unfinished requests go back to the front of the queue; a replacement is wanted."""
            nonlocal last_death
            last_death = why
            self.slots.remove(slot)
            requeued.extendleft(sorted(slot.held.items(), reverse=True))  # first in, first again
            log.warning("replica %d on %s died (%s); %d request(s) back in the queue",
                        slot.number, slot.info.get("host"), why, len(slot.held))
            slot.held.clear()
            self.ray.kill(slot.actor)
            if self.started + len(wanted) < 2 * self.replicas:  # at most `replicas` replacements in a run
                wanted.append(time.monotonic())

        while True:
            feed([s for s in self.slots if s.call is None])
            if not requeued and exhausted and not any(s.held for s in self.slots):
                break
            self._replace(wanted, starting)
            if not self.slots and not starting and not wanted:
                raise CurateError(f"every engine replica died (last: {last_death}); what finished is saved: "
                                  "run the same command again to resume")
            calls = {s.call: s for s in self.slots if s.call is not None}
            if not calls and not starting:
                time.sleep(0.5)
                continue
            done, _ = ray.wait([*calls, *starting], num_returns=1, timeout=5.0)
            for ref in done:
                if ref in starting:
                    slot = starting.pop(ref)
                    try:
                        self._ready(slot, ray.get(ref))
                        log.info("replacement replica %d ready on %s", slot.number, slot.info["host"])
                    except (RayActorError, CurateError) as e:
                        log.warning("replacement replica %d did not start: %s", slot.number, _line(e))
                    continue
                slot = calls[ref]
                try:
                    finished = ray.get(ref)
                except (RayActorError, RayTaskError) as e:
                    died(slot, _line(e))
                    continue
                slot.call = None
                for number, samples in finished:
                    yield slot.held.pop(number), samples
        for slot in starting.values():  # the work is done: replacements still loading are not needed
            self.ray.kill(slot.actor)

    def _replace(self, wanted: list[float], starting: dict) -> None:
        """Start the wanted replacements the cluster has room for; forget those that waited too long."""
        now = time.monotonic()
        while wanted:
            free = self.ray.available_resources()
            fits = (free.get("CPU", 0) >= self.resources["num_cpus"]
                    and free.get("GPU", 0) >= self.resources.get("num_gpus", 0))
            if fits:
                wanted.pop(0)
                slot, ready = self._start()
                starting[ready] = slot
                log.info("starting replacement replica %d", slot.number)
            elif now - wanted[0] > REPLACE_WAIT_S:
                wanted.pop(0)
                log.info("no room for a replacement replica; carrying on with %d", len(self.slots))
            else:
                break

    def close(self) -> None:
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is None:
            return
        for slot in getattr(self, "slots", []):
            try:
                self.ray.kill(slot.actor)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        conn.__exit__(None, None, None)


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
