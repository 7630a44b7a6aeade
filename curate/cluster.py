"""Joining a Ray cluster: the one place curate calls `ray.init`.

`--executor ray` stages (generate replicas, the filter chain) run inside `connect(address)`.
The address is `--ray-address`, else $RAY_ADDRESS, else a Ray started in-process on this
machine. Worker output stays in Ray's own session logs (never the terminal); the driver
joins a cluster it did not start and leaves it running. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from curate.errors import CurateError

TASK_CPUS = 1  # the CPUs a curate Ray task asks for (curate.executor.RayExecutor)


def ray_module():
    """`ray`, or one clear line saying how to install it."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - the default install has Ray
        raise CurateError("--executor ray needs Ray: pip install 'curate[ray]'") from e
    return ray


@contextmanager
def connect(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[object]:
    """Connected `ray` for the body of the block.

    `address` (or $RAY_ADDRESS) joins a running cluster ("host:port", "ray://…" or "auto");
    with neither, a private Ray starts on this machine (`num_cpus` of them) and stops at
    the end. Already connected (a caller's own `ray.init`): that connection is used and
    left open."""
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    # a task keeps to the TASK_CPUS it asks for: polars' thread pool is sized to them, as Ray
    # sizes OpenMP's (else every task starts a thread per core of its node)
    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True,
                  runtime_env={"env_vars": {"POLARS_MAX_THREADS": str(TASK_CPUS)}})
    if address:
        _reachable(address)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--ray-address {address}" if address else "a local Ray"
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CurateError(f"{where}: could not connect ({why})") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A "host:port" that accepts no connection is refused at once (Ray itself retries for minutes)."""
    if "://" in address or address == "auto" or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except ValueError as e:
        raise CurateError(f"--ray-address {address}: expected HOST:PORT") from e
    except OSError as e:
        raise CurateError(f"--ray-address {address}: could not connect ({e.strerror or e})") from e


def alive_nodes(ray) -> list[dict]:
    """The cluster's live nodes (Ray's node records)."""
    return [n for n in ray.nodes() if n.get("Alive")]
