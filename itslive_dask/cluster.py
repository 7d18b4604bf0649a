"""Getting a Dask ``distributed`` client: a LocalCluster of processes, a scheduler address,
a dask-gateway cluster, or a client (or cluster) the user already has.

Which cluster runs a build
    ``client=`` (a :class:`distributed.Client`, or a cluster object with ``get_client()`` such
    as a ``dask_gateway.GatewayCluster``) is used as is and left running. ``scheduler=`` is
    resolved by :func:`dask_client`:

    ============================================  ===========================================
    ``tcp://host:8786`` (any distributed address)  connected to, left running
    ``gateway://proxy:port/<cluster-name>``        the running dask-gateway cluster of that
                                                   name (its scheduler address), left running
    ``gateway:<cluster-name>``                     the same, by name
    ``gateway:new`` / ``gateway:new?workers=4&``   a new dask-gateway cluster with these
    ``worker_memory=4``                            cluster options, scaled to ``workers``;
                                                   shut down when the build ends, however it
                                                   ends
    ============================================  ===========================================

    The gateway itself is the one dask-gateway is configured with (``gateway.address``,
    ``gateway.proxy-address``, ``gateway.auth`` in the Dask configuration, which a Pangeo hub
    sets through ``DASK_GATEWAY__ADDRESS``...). dask-gateway is the ``[hub]`` extra.

Worker processes of the LocalCluster started here
    They start with glibc's own malloc settings (:data:`WORKER_MALLOC_ENV`): distributed's
    ``MALLOC_TRIM_THRESHOLD_=65536`` is not set for them. Setting that variable at all turns
    off glibc's dynamic mmap threshold, so every array above 128 KiB is mmap-ed, page-faulted
    and unmapped afresh: ``write_cube`` of 120 granules took 1.3 M page faults and 8.0 s of
    worker CPU with it, 0.08 M and 4.6 s without it, for ~10 % more peak RSS
    (docs/benchmarks.md, section 3). The setting is scoped to that cluster: neither this
    process's ``os.environ`` nor a cluster started later from it inherits it. Clusters
    started elsewhere (a scheduler address, a given client, dask-gateway) keep their own
    settings: docs/cloud.md says how to set it there.

Worker environment
    Before anything is submitted, the workers of a cluster the package did not start itself
    are asked (by a function sent by value, so it runs even where ``itslive_dask`` cannot be
    imported) which versions of ``itslive_dask`` and of the readers it needs they have; a
    worker without them, or with another ``itslive_dask`` version, makes
    :func:`check_workers` raise one :class:`~itslive_dask.errors.ClusterError` naming the
    workers and what they lack, instead of a deserialisation traceback from the first task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from itslive_dask.errors import ClusterError, InvalidInputError

__all__ = [
    "LOCATED_MODULES",
    "WORKER_MALLOC_ENV",
    "WORKER_MODULES",
    "check_workers",
    "dask_client",
    "dask_setup",
    "default_workers",
    "pre_spawn_environ",
    "release_process_caches",
    "sigint_shield",
    "start_worker_check",
    "worker_environments",
]

log = logging.getLogger(__name__)

#: Modules a worker must import to run block tasks (``itslive_dask`` must also match the
#: client's version: tasks and their configuration are pickled by reference).
WORKER_MODULES: tuple[str, ...] = ("itslive_dask", "h5py", "h5netcdf", "fsspec", "s3fs", "zarr")

#: Of :data:`WORKER_MODULES`, those the check finds and reads the version of without importing
#: them: importing s3fs (aiobotocore, botocore) takes ~0.25 s of each worker's CPU, which only
#: builds from S3 need (their first task imports it).
LOCATED_MODULES: tuple[str, ...] = ("s3fs",)

#: The modules of the block tasks themselves: importing them imports every dependency the
#: tasks use (numpy, shapely, pyproj, the readers...) and nothing the driver alone needs.
#: Checked where ``itslive_dask`` imports.
TASK_MODULES: tuple[str, ...] = ("itslive_dask.cube.kernel", "itslive_dask.store.blocks")

#: glibc malloc settings of the worker processes of a LocalCluster started by
#: :func:`dask_client` (measured in docs/benchmarks.md, section 3): ``None`` = the variable is
#: not set, so glibc's dynamic thresholds apply. Applied before the worker process is spawned
#: (``distributed.nanny.pre-spawn-environ``): glibc reads them once, at the process's first
#: allocation, so the nanny's ``env=`` (applied after the spawn) is too late for them.
WORKER_MALLOC_ENV: dict[str, str | None] = {"MALLOC_TRIM_THRESHOLD_": None}

#: Seconds to wait for the workers of a new gateway cluster.
GATEWAY_WORKER_TIMEOUT = 300.0


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
    check: bool = True,
) -> Iterator[Any]:
    """Yield a :class:`distributed.Client`, starting and stopping a cluster if needed.

    Parameters
    ----------
    client
        An existing client, or a cluster object with ``get_client()`` (a
        ``dask_gateway.GatewayCluster``, a ``LocalCluster``...): used as is and left running.
    scheduler
        Address of a running scheduler (``tcp://host:8786``), of a running dask-gateway
        cluster (``gateway://proxy:8786/<name>`` or ``gateway:<name>``): connected to, left
        running. ``gateway:new`` (options as a query: ``gateway:new?workers=4&worker_memory=4``)
        starts a dask-gateway cluster for this build and shuts it down at the end.
    n_workers, threads_per_worker, memory_limit
        Size of the LocalCluster of processes started when neither ``client`` nor
        ``scheduler`` is given (default: one single-threaded worker per core, memory split
        evenly). ``memory_limit`` is per worker, e.g. ``"2GiB"``. ``n_workers`` also scales a
        ``gateway:new`` cluster (default 2).
    timeout
        Seconds to wait for a scheduler to answer (and for a first worker to join a cluster
        that has none yet).
    announce
        Called with a one-line message giving the dashboard link.
    check
        Check the workers' environment (:func:`check_workers`) of a cluster not started here.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached, the cluster cannot start, or its workers lack the
        package or its readers.

    Examples
    --------
    >>> with dask_client(scheduler="gateway:new?workers=8") as client:  # doctest: +SKIP
    ...     write_cube(granules, "s3://bucket/cube.zarr", region, client=client)
    """
    if client is not None:
        if scheduler is not None:
            raise InvalidInputError("give either client or scheduler, not both")
        with _given(client, check=check, timeout=timeout, announce=announce) as c:
            yield c
        return
    if scheduler is not None:
        if not isinstance(scheduler, str) or ("://" not in scheduler and ":" not in scheduler):
            raise InvalidInputError(
                f"scheduler must be an address like tcp://127.0.0.1:8786 or gateway:new, got {scheduler!r}"
            )
        if scheduler.startswith("gateway:"):
            cm = _gateway(scheduler, n_workers=n_workers, timeout=timeout)
        else:
            cm = _address(scheduler, timeout=timeout)
        with cm as c:
            if check:
                check_workers(c, timeout=timeout)
            _announce(c, announce)
            yield c
        return
    with _local(n_workers, threads_per_worker, memory_limit) as c:
        _announce(c, announce)
        yield c


@contextlib.contextmanager
def _given(client: Any, *, check: bool, timeout: float, announce) -> Iterator[Any]:
    from distributed import Client

    if isinstance(client, Client):
        if check:
            check_workers(client, timeout=timeout)
        _announce(client, announce)
        yield client
        return
    if not callable(getattr(client, "get_client", None)):
        raise InvalidInputError(
            f"client must be a distributed.Client or a cluster with get_client(), got {type(client).__name__}"
        )
    c = client.get_client()  # a new client of the given cluster: ours to close
    try:
        if check:
            check_workers(c, timeout=timeout)
        _announce(c, announce)
        yield c
    finally:
        c.close()


@contextlib.contextmanager
def _address(address: str, *, timeout: float) -> Iterator[Any]:
    from distributed import Client

    try:
        c = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        yield c
    finally:
        c.close()


@contextlib.contextmanager
def _local(n_workers, threads_per_worker, memory_limit) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    n = default_workers() if n_workers is None else int(n_workers)
    if n < 1 or threads_per_worker < 1:
        raise InvalidInputError("workers and threads per worker must be at least 1")
    try:
        with pre_spawn_environ(WORKER_MALLOC_ENV) as restore_environ:
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
            yield c
        finally:
            try:
                _tidy_workers(c)
            finally:
                c.close()
    finally:
        cluster.close()
        restore_environ()  # after a nanny restarted its worker (and set os.environ again)


def release_process_caches() -> dict[str, float]:
    """Empty this process's ``itslive_dask`` caches and exempt what is left from the garbage
    collector: what a worker of a package-started cluster runs before it is closed.

    A worker after a build holds up to ~1 GiB of cached geometry, headers and decoded chunks
    (``LRU`` and ``ChunkCache`` objects of the package's modules) and ~10^5 tracked objects.
    Tearing that down inside the interpreter's exit took longer than the 4 s distributed's
    nanny waits for its worker at ``cluster.close()`` (0.8 x its 5 s close timeout) on a busy
    machine, and the nanny then killed it (SIGKILL). Done here, while the worker is still up
    and no timer runs, the worker exits in well under a second.

    Returns
    -------
    dict
        ``caches`` emptied, ``nbytes`` they held, ``seconds`` taken.
    """
    import gc
    import sys

    t0 = time.perf_counter()
    from itslive_dask.cache import LRU

    kinds: tuple[type, ...] = (LRU,)
    ranged = sys.modules.get("itslive_dask.io.ranged")
    if ranged is not None:
        kinds = (*kinds, ranged.ChunkCache)
    caches: list[Any] = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "itslive_dask" or name.startswith("itslive_dask.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, kinds):
                caches.append(value)
            elif (
                isinstance(value, dict)
                and value
                and all(isinstance(v, kinds) for v in value.values())
            ):
                caches.extend(value.values())
    nbytes = 0
    for cache in caches:
        nbytes += int(getattr(cache, "nbytes", 0) or 0)
        cache.clear()
    gc.collect()
    gc.freeze()  # the interpreter's exit no longer walks the objects that remain
    return {
        "caches": float(len(caches)),
        "nbytes": float(nbytes),
        "seconds": time.perf_counter() - t0,
    }


def _tidy_workers(client: Any) -> None:
    """Run :func:`release_process_caches` on every worker (best effort: a failure is logged)."""
    try:
        done = client.run(release_process_caches, wait=True, on_error="return")
    except Exception as exc:  # closing anyway: the worker only exits more slowly
        log.debug("could not release the workers' caches before closing: %s", exc)
        return
    log.debug("workers' caches released before closing: %s", done)


@contextlib.contextmanager
def pre_spawn_environ(extra: dict[str, str | None]) -> Iterator[Callable[[], None]]:
    """Spawn the worker processes of the nannies created inside the block with ``extra`` in
    their environment (``None``: without that variable), without leaving it in this process's
    ``os.environ``.

    distributed copies ``distributed.nanny.pre-spawn-environ`` into the nanny's process's
    ``os.environ`` just before it spawns the worker (so the new process has it from its first
    instruction), and never takes it back; a LocalCluster's nannies live in this process.
    Inside the block that configuration key carries ``extra`` in place of distributed's
    defaults for the same variables (a value the user configured differently is kept), and a
    variable ``extra`` unsets is also lifted from ``os.environ`` when it holds exactly
    distributed's default (what an earlier cluster's nanny left there); any other value in
    ``os.environ`` is the user's and wins, as in distributed. Leaving the block puts every
    variable the nannies may have set (these, the configuration's own, ``PYTHONHASHSEED``)
    back as it was, so neither this process nor a cluster started later from it inherits
    them. A nanny keeps what it was created with: when it restarts its worker it applies it
    again (to the new worker, and to ``os.environ``); call the yielded ``restore()`` again
    once such a cluster is closed.

    Parameters
    ----------
    extra
        Variables for the worker processes, e.g. :data:`WORKER_MALLOC_ENV`.
    """
    import dask
    import distributed  # noqa: F401  (its config defaults must exist before they are read)

    key = "distributed.nanny.pre-spawn-environ"
    configured = dict(dask.config.get(key, {}) or {})
    shipped: dict[str, Any] = {}
    for defaults in dask.config.defaults:
        nanny = defaults.get("distributed", {}).get("nanny", {})
        shipped.update(nanny.get("pre-spawn-environ", {}) or {})
    merged = dict(configured)
    for name, value in extra.items():
        if name not in configured or configured[name] == shipped.get(name):
            merged[name] = value  # ours, unless the user configured another value
    keys = {*merged, *extra, "PYTHONHASHSEED"}
    before = {k: os.environ.get(k) for k in keys}

    def restore() -> None:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    for name, value in extra.items():
        if value is None and name in shipped and os.environ.get(name) == str(shipped[name]):
            del os.environ[name]  # a nanny's leftover, not the user's choice
    try:
        with dask.config.set({key: merged}):
            yield restore
    finally:
        restore()


# --------------------------------------------------------------------------- dask-gateway


def parse_gateway_scheduler(scheduler: str) -> tuple[str, str | None, dict[str, str]]:
    """Split a ``gateway:`` scheduler string into (kind, cluster name or proxy, options).

    ``kind`` is ``"new"`` (options from the query), ``"name"`` (the cluster name) or
    ``"address"`` (``gateway://proxy:port/<name>``: the name and the proxy address).

    Examples
    --------
    >>> parse_gateway_scheduler("gateway:new?workers=4&image=pangeo")
    ('new', None, {'workers': '4', 'image': 'pangeo'})
    >>> parse_gateway_scheduler("gateway://10.0.0.5:8786/abc123")
    ('address', 'abc123', {'proxy_address': 'gateway://10.0.0.5:8786'})
    """
    if scheduler.startswith("gateway://"):
        rest = scheduler[len("gateway://") :]
        proxy, _, name = rest.partition("/")
        if not proxy or not name or "/" in name:
            raise InvalidInputError(
                f"a gateway cluster address is gateway://<proxy host:port>/<cluster name>, got {scheduler!r}"
            )
        return "address", name, {"proxy_address": f"gateway://{proxy}"}
    rest = scheduler[len("gateway:") :]
    head, _, query = rest.partition("?")
    if head == "new":
        try:
            return (
                "new",
                None,
                dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))),
            )
        except ValueError:
            raise InvalidInputError(
                f"cluster options are given as gateway:new?option=value&option=value, got {scheduler!r}"
            ) from None
    if not head or query:
        raise InvalidInputError(
            f"use gateway:new[?option=value&...], gateway:<cluster name> or the cluster's "
            f"gateway:// address, got {scheduler!r}"
        )
    return "name", head, {}


def _gateway_module():
    try:
        import dask_gateway
    except ImportError:
        raise ClusterError(
            "a gateway: scheduler needs dask-gateway: pip install 'itslive_dask[hub]'"
        ) from None
    return dask_gateway


def _option_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@contextlib.contextmanager
def _gateway(scheduler: str, *, n_workers: int | None, timeout: float) -> Iterator[Any]:
    kind, name, opts = parse_gateway_scheduler(scheduler)
    dg = _gateway_module()
    proxy = opts.pop("proxy_address", None)
    try:
        gateway = dg.Gateway(proxy_address=proxy) if proxy else dg.Gateway()
    except (ValueError, OSError) as exc:
        raise ClusterError(
            f"no dask-gateway to reach ({exc}); set the gateway address in the Dask "
            "configuration (gateway.address, or DASK_GATEWAY__ADDRESS)"
        ) from None
    try:
        if kind == "new":
            with _new_gateway_cluster(gateway, opts, n_workers) as c:
                yield c
            return
        try:
            cluster = gateway.connect(name, shutdown_on_close=False)
        except Exception as exc:  # the gateway's HTTP errors (ValueError, ClientError...)
            raise ClusterError(
                f"cannot connect to the dask-gateway cluster {name!r}: {exc}"
            ) from None
        try:
            c = cluster.get_client()
            try:
                yield c
            finally:
                c.close()
        finally:
            close_gateway_cluster(cluster, shutdown=False)  # given, not ours: left running
    finally:
        close_gateway(gateway)


def close_gateway(gateway: Any) -> None:
    """Close a ``dask_gateway.Gateway`` once (its ``__del__`` would close it again, on a
    stopped loop, and print an ignored exception)."""
    gateway.close()
    with contextlib.suppress(AttributeError):
        del gateway._loop_runner


def close_gateway_cluster(cluster: Any, *, shutdown: bool) -> None:
    """Close a ``dask_gateway.GatewayCluster`` object, shutting the cluster down or not, and
    its gateway client once (see :func:`close_gateway`)."""
    cluster.close(shutdown=shutdown)
    gateway = getattr(cluster, "gateway", None)
    if gateway is not None:
        with contextlib.suppress(AttributeError):
            del gateway._loop_runner


@contextlib.contextmanager
def _new_gateway_cluster(
    gateway: Any, opts: dict[str, str], n_workers: int | None
) -> Iterator[Any]:
    workers = opts.pop("workers", None)
    n = int(workers) if workers is not None else (n_workers if n_workers is not None else 2)
    if n < 1:
        raise InvalidInputError(f"a gateway cluster needs at least 1 worker, got {n}")
    try:
        options = gateway.cluster_options()
        for key, value in opts.items():
            options[key] = _option_value(value)
    except (KeyError, ValueError, TypeError) as exc:
        raise ClusterError(f"invalid dask-gateway cluster option: {exc}") from None
    except Exception as exc:
        raise ClusterError(f"cannot reach the dask-gateway at {gateway.address}: {exc}") from None
    try:
        cluster = gateway.new_cluster(options, shutdown_on_close=True)
    except Exception as exc:
        raise ClusterError(f"the dask-gateway could not start a cluster: {exc}") from None
    log.info("started dask-gateway cluster %s", cluster.name)
    try:
        cluster.scale(n)
        c = cluster.get_client()
        try:
            try:
                c.wait_for_workers(n, timeout=GATEWAY_WORKER_TIMEOUT)
            except TimeoutError:
                raise ClusterError(
                    f"the dask-gateway cluster {cluster.name} did not get {n} workers in "
                    f"{GATEWAY_WORKER_TIMEOUT:.0f} s"
                ) from None
            yield c
        finally:
            c.close()
    finally:
        close_gateway_cluster(cluster, shutdown=True)  # started here: never left running
        log.info("shut down dask-gateway cluster %s", cluster.name)


# --------------------------------------------------------------------------- worker environment

_PROBE_SOURCE = """
def probe(names, located=()):
    import importlib
    import importlib.metadata
    import importlib.util
    import platform
    import sys

    out = {"python": platform.python_version(), "modules": {}}
    for name in names:
        try:
            if name in located and sys.modules.get(name) is None:
                if importlib.util.find_spec(name) is None:
                    raise ModuleNotFoundError(f"No module named {name!r}")
                try:
                    version = importlib.metadata.version(name)
                except importlib.metadata.PackageNotFoundError:
                    version = "unknown"
                out["modules"][name] = {"version": version}
                continue
            module = importlib.import_module(name)
        except Exception as exc:
            out["modules"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            out["modules"][name] = {"version": str(getattr(module, "__version__", "unknown"))}
    return out
"""


def _probe_function() -> Callable[[tuple[str, ...]], dict[str, Any]]:
    # defined in a module that does not exist on the workers, so cloudpickle sends it by
    # value: it runs on a worker that cannot import itslive_dask
    namespace: dict[str, Any] = {"__name__": "_itslive_dask_worker_probe"}
    exec(compile(_PROBE_SOURCE, "<itslive_dask worker probe>", "exec"), namespace)
    return namespace["probe"]


def worker_environments(
    client: Any, modules: tuple[str, ...] = WORKER_MODULES
) -> dict[str, dict[str, Any]]:
    """What each worker of ``client``'s cluster can import: ``{address: {"python": ..., "modules":
    {name: {"version": ...} or {"error": ...}}, "name": worker name}}`` (the modules of
    :data:`LOCATED_MODULES` are found, not imported)."""
    probe = _probe_function()
    try:
        found = client.run(probe, tuple(modules), LOCATED_MODULES, on_error="return")
    except Exception as exc:
        raise ClusterError(f"cannot ask the Dask workers for their environment: {exc}") from None
    names = {a: w.get("name") for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    out: dict[str, dict[str, Any]] = {}
    for address, env in found.items():
        if isinstance(env, BaseException):
            env = {"python": "?", "modules": {}, "error": f"{type(env).__name__}: {env}"}
        out[address] = {**env, "name": names.get(address)}
    return out


def check_workers(
    client: Any, *, modules: tuple[str, ...] = WORKER_MODULES, timeout: float = 10.0
) -> dict[str, dict[str, Any]]:
    """Check that every worker can import ``itslive_dask`` at this version and its readers.

    A cluster without workers is waited for up to ``timeout`` seconds, then let through (an
    adaptive cluster may start its workers only when tasks arrive; those are not checked).

    Returns
    -------
    dict
        :func:`worker_environments` of the workers checked.

    Raises
    ------
    ClusterError
        One or more workers lack a module or run another ``itslive_dask`` version: the
        message names each worker and what it lacks.
    """
    import itslive_dask

    if not client.scheduler_info(n_workers=-1).get("workers"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not client.scheduler_info(n_workers=-1).get(
            "workers"
        ):
            time.sleep(0.2)
        if not client.scheduler_info(n_workers=-1).get("workers"):
            log.warning("the cluster has no workers yet: their environment is not checked")
            return {}
    envs = worker_environments(client, (*modules, *TASK_MODULES))
    want = _public_version(itslive_dask.__version__)
    bad = []
    for address, env in sorted(envs.items()):
        problems = []
        if "error" in env:
            problems.append(f"cannot run the check ({env['error']})")
        for name in modules:
            info = env.get("modules", {}).get(name)
            if info is None:
                continue
            if "error" in info:
                problems.append(f"{name} missing ({info['error']})")
            elif name == "itslive_dask" and _public_version(info["version"]) != want:
                problems.append(
                    f"itslive_dask {info['version']} (this client has {itslive_dask.__version__})"
                )
        package = env.get("modules", {}).get("itslive_dask", {})
        for name in TASK_MODULES if "error" not in package else ():
            info = env.get("modules", {}).get(name, {})
            if "error" in info:
                problems.append(f"{name} cannot be imported ({info['error']})")
        if problems:
            label = (
                address
                if not env.get("name") or str(env["name"]) == address
                else f"{address} (name {env['name']})"
            )
            bad.append(f"  {label}: " + "; ".join(problems))
    if bad:
        raise ClusterError(
            f"{len(bad)} of {len(envs)} Dask workers cannot run the build:\n"
            + "\n".join(bad)
            + "\n"
            f"Install itslive_dask=={itslive_dask.__version__} with "
            f"{', '.join(m for m in modules if m != 'itslive_dask')} in the workers' environment "
            "(the cluster's image or conda environment) and restart them."
        )
    log.debug("worker environments checked: %d workers", len(envs))
    return envs


def start_worker_check(client: Any, *, timeout: float = 10.0) -> Future | None:
    """Start :func:`check_workers` on a running ``distributed.Client`` in a background thread.

    The workers import the package and the block tasks' modules while the caller goes on
    (e.g. plans the cube): on a cluster that has not run a build
    yet, those imports then no longer delay the first tasks. Wait on the returned future
    (``.result()`` raises the check's :class:`~itslive_dask.errors.ClusterError`) before
    anything depends on the workers, and pass ``check=False`` to :func:`dask_client`.

    Parameters
    ----------
    client
        Anything :func:`dask_client` takes as ``client``; only a ``distributed.Client`` is
        checked early (a cluster object gets its own client, checked by :func:`dask_client`).
    timeout
        As for :func:`check_workers`.

    Returns
    -------
    concurrent.futures.Future or None
        The running check, or None when ``client`` is not a ``distributed.Client``.
    """
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    if not isinstance(client, Client):
        return None
    pool = ThreadPoolExecutor(1, thread_name_prefix="itslive-worker-check")
    try:
        return pool.submit(check_workers, client, timeout=timeout)
    finally:
        pool.shutdown(wait=False)


def _public_version(version: str) -> str:
    return str(version).split("+", 1)[0]


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
