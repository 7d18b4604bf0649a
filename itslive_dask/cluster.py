"""Getting a Dask ``distributed`` client: a LocalCluster of processes, a scheduler address,
or a client the user already has (a Pangeo hub, dask-gateway, a cloud cluster)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from itslive_dask.errors import ClusterError, InvalidInputError

__all__ = ["dask_client", "dask_setup", "default_workers", "sigint_shield"]

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One worker process per core (HDF5 decoding is single-threaded per process)."""
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(
    client: Any = None,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    timeout: float = 10.0,
    announce: Callable[[str], None] | None = None,
) -> Iterator[Any]:
    """Yield a :class:`distributed.Client`, starting and stopping a cluster if needed.

    Parameters
    ----------
    client
        An existing client: used as is and left open.
    scheduler
        Address of a running scheduler (``tcp://host:8786``): connected to, left running.
    n_workers, threads_per_worker, memory_limit
        Size of the LocalCluster of processes started when neither ``client`` nor
        ``scheduler`` is given (default: one single-threaded worker per core, memory split
        evenly). ``memory_limit`` is per worker, e.g. ``"2GiB"``.
    timeout
        Seconds to wait for a scheduler to answer.
    announce
        Called with a one-line message giving the dashboard link.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached or the cluster cannot start.
    """
    from distributed import Client, LocalCluster

    if client is not None:
        if scheduler is not None:
            raise InvalidInputError("give either client or scheduler, not both")
        _announce(client, announce)
        yield client
        return
    if scheduler is not None:
        if not isinstance(scheduler, str) or ("://" not in scheduler and ":" not in scheduler):
            raise InvalidInputError(f"scheduler must be an address like tcp://127.0.0.1:8786, got {scheduler!r}")
        try:
            c = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            _announce(c, announce)
            yield c
        finally:
            c.close()
        return
    n = default_workers() if n_workers is None else int(n_workers)
    if n < 1 or threads_per_worker < 1:
        raise InvalidInputError("workers and threads per worker must be at least 1")
    try:
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
    except (OSError, ValueError, TypeError) as exc:
        raise ClusterError(f"cannot start a LocalCluster: {exc}") from None
    try:
        c = Client(cluster)
        try:
            _announce(c, announce)
            yield c
        finally:
            c.close()
    finally:
        cluster.close()


def _announce(client: Any, announce: Callable[[str], None] | None) -> None:
    link = getattr(client, "dashboard_link", None)
    msg = f"Dask dashboard: {link}" if link else "Dask client ready"
    log.info(msg)
    if announce is not None:
        announce(msg)


def dask_setup(worker: Any = None) -> None:
    """Dask worker preload hook: worker processes ignore Ctrl-C (see :func:`sigint_shield`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sigint_shield() -> Iterator[Callable[[], None]]:
    """Keep Ctrl-C away from the Dask worker processes started inside the block.

    A Ctrl-C in a terminal reaches every process of the foreground group: each LocalCluster
    worker would print its own KeyboardInterrupt traceback, and an interrupted cluster start
    leaves distributed in a bad state. Inside the block:

    * SIGINT is ignored until ``release()`` is called (call it once the cluster is up, e.g.
      from ``write_cube``'s ``announce``): worker processes spawned meanwhile inherit
      "ignore". A Ctrl-C during those few seconds of cluster start-up is dropped.
    * a worker preload (:func:`dask_setup`) makes workers started later (restarted by their
      nanny) ignore SIGINT too.

    After ``release()`` only the main process is interrupted, and it closes the cluster on
    its way out. Leaving the block releases too.
    """
    import dask
    import distributed  # noqa: F401  (its config defaults must exist before they are overridden)

    preload = list(dask.config.get("distributed.worker.preload", []) or [])
    if __name__ not in preload:
        preload.append(__name__)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    released = not main

    def release() -> None:
        nonlocal released
        if released or threading.current_thread() is not threading.main_thread():
            return
        released = True
        signal.signal(signal.SIGINT, previous)

    if main:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a spawned interpreter inherits
    try:
        with dask.config.set({"distributed.worker.preload": preload}):
            yield release
    finally:
        release()
