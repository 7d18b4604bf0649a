"""The LocalCluster that the package starts: its workers' malloc setting (scoped to that
cluster) and a clean shutdown after a build (no worker killed by its nanny).

Real worker processes (``LocalCluster(processes=True)``), the session's synthetic archive on
the local S3 server.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest

import itslive_dask
from itslive_dask.cluster import (
    WORKER_MALLOC_ENV,
    dask_client,
    pre_spawn_environ,
    release_process_caches,
)

#: Variables the nannies of a LocalCluster copy into the parent's os.environ.
WATCHED = (*WORKER_MALLOC_ENV, "PYTHONHASHSEED")


def _boot_environ() -> dict[str, str]:
    """The environment this process was started with (``/proc/self/environ``: what glibc saw
    at the first allocation), not ``os.environ`` as changed since."""
    with open("/proc/self/environ", "rb") as f:
        raw = f.read()
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.startswith((b"MALLOC_", b"PYTHONHASHSEED")):
            out[key.decode()] = value.decode()
    return out


def _environ_get(key: str) -> str | None:
    return os.environ.get(key)  # (os.environ.get itself would be pickled with the client's copy)


def _parent() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in WATCHED}


@pytest.fixture
def clean_environ():
    """This process's environment as a plain LocalCluster's nanny leaves it (distributed's
    ``MALLOC_TRIM_THRESHOLD_=65536`` in ``os.environ``: the session's ``dask_client`` fixture
    may have started one already), restored after the test."""
    saved = {k: os.environ.get(k) for k in (*WATCHED, "OMP_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_")}
    if saved["MALLOC_TRIM_THRESHOLD_"] not in (None, "65536"):
        pytest.skip("this process's environment sets its own MALLOC_TRIM_THRESHOLD_ (it wins)")
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    yield _parent()
    for key, value in saved.items():  # whatever the test did, leave the session as it was
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="needs Linux /proc")
def test_package_cluster_workers_start_without_the_trim_threshold_and_nothing_leaks(
    clean_environ,
):
    from distributed import Client, LocalCluster

    before = clean_environ
    with dask_client(n_workers=1, memory_limit="1GiB") as client:
        boot = list(client.run(_boot_environ).values())
        live = list(client.run(_environ_get, "MALLOC_TRIM_THRESHOLD_").values())
        during = _parent()
    after = _parent()
    # the worker was spawned without distributed's MALLOC_TRIM_THRESHOLD_ (glibc's own
    # dynamic thresholds: glibc reads the variables once, at the process's first malloc)
    assert boot == [{"PYTHONHASHSEED": "6640"}]
    assert live == [None]
    # ... and this process's environment is as it was, during the build and after it
    assert during == before and after == before
    # a later plain LocalCluster from the same process gets distributed's defaults
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            memory_limit="1GiB",
        ) as cluster,
        Client(cluster) as plain,
    ):
        later = list(plain.run(_boot_environ).values())
    assert later == [{"MALLOC_TRIM_THRESHOLD_": "65536", "PYTHONHASHSEED": "6640"}]


def test_pre_spawn_environ_keeps_the_users_values_and_restores_the_environment(clean_environ):
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    with pre_spawn_environ(WORKER_MALLOC_ENV) as restore:
        cfg = dict(dask.config.get(key))
        assert cfg["MALLOC_TRIM_THRESHOLD_"] is None  # not set for the workers
        assert cfg["OMP_NUM_THREADS"] == 1  # distributed's other entries stay
        assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # a nanny's leftover is lifted
        os.environ.update({"MALLOC_TRIM_THRESHOLD_": "65536", "PYTHONHASHSEED": "6640"})
        restore()  # as a nanny leaves it -> as before the block
        assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
        assert (
            "PYTHONHASHSEED" not in os.environ
            or os.environ["PYTHONHASHSEED"] == clean_environ["PYTHONHASHSEED"]
        )
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
    assert dask.config.get(key)["MALLOC_TRIM_THRESHOLD_"] == 65536
    # a value the user chose (in os.environ, or in the Dask configuration) wins
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "131072"
    with pre_spawn_environ(WORKER_MALLOC_ENV):
        assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "131072"
    with dask.config.set({f"{key}.MALLOC_TRIM_THRESHOLD_": 262144}):
        with pre_spawn_environ(WORKER_MALLOC_ENV):
            assert dask.config.get(key)["MALLOC_TRIM_THRESHOLD_"] == 262144


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_closing_the_package_cluster_after_a_build_kills_no_worker(tmp_path, synthetic_archive):
    """Each nanny waits 4 s for its worker to exit, then kills it ("Worker process still alive
    after 4.0 seconds, killing", then "... was killed by signal 9"); a worker that exits by
    itself with status 0 logs nothing at all."""
    table = synthetic_archive.table.iloc[:24].reset_index(drop=True)
    handler = _Records()
    nanny = logging.getLogger("distributed.nanny")
    old_level = nanny.level
    nanny.addHandler(handler)
    nanny.setLevel(logging.INFO)
    try:
        result = itslive_dask.write_cube(
            table,
            str(tmp_path / "cube.zarr"),
            synthetic_archive.region,
            storage_options=synthetic_archive.storage_options,
            n_workers=2,
            memory_limit="1GiB",
        )
    finally:
        nanny.removeHandler(handler)
        nanny.setLevel(old_level)
    assert result.blocks_written > 0
    closing = [m for m in handler.messages if "Closing Nanny" in m]
    assert len(closing) == 2, handler.messages  # both nannies were seen closing
    bad = [
        m
        for m in handler.messages
        if "killing" in m or "killed by" in m or "exited with status" in m
    ]
    assert bad == []


def test_release_process_caches_empties_the_package_caches():
    import gc

    from itslive_dask.cube import kernel
    from itslive_dask.io import remote

    kernel.MASK_CACHE.get(("test", 1), lambda: bytearray(1000))
    remote.CHUNK_CACHE.put(("test-session", "p", 0), np.zeros(10))  # a decoded chunk
    try:
        out = release_process_caches()
        assert out["caches"] >= 4 and out["nbytes"] >= 1000
        assert kernel.MASK_CACHE.nbytes == 0 and kernel.MASK_CACHE.peek(("test", 1)) is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_block_tasks_import_only_what_they_need_on_the_workers(tmp_path, synthetic_archive):
    """A worker's first block task imports the kernel, the reader and Zarr, not the driver's
    planner and template (geopandas, pandas, xarray, dask.array: ~0.35 s per worker of a
    cluster's first build). The task functions and their arguments (the block configuration
    with its store of kept headers, the store target) used to be pickled from modules that
    import them."""
    from itslive_dask.cluster import dask_client

    table = synthetic_archive.table.iloc[:12].reset_index(drop=True)
    driver_side = ("geopandas", "pandas", "xarray", "dask.array", "rioxarray", "rasterio")
    with dask_client(None, n_workers=1, memory_limit="1GiB") as client:
        # the worker process starts without them (pytest's main module imports none)
        before = client.run(lambda: [m for m in driver_side if m in sys.modules])
        assert list(before.values()) == [[]], before
        result = itslive_dask.write_cube(
            table,
            str(tmp_path / "cube.zarr"),
            synthetic_archive.region,
            storage_options=synthetic_archive.storage_options,
            client=client,
        )
        after = client.run(lambda: {m: m in sys.modules for m in (*driver_side, "zarr", "h5py")})
    assert result.blocks_written > 0 and result.granules_read > 0
    (modules,) = after.values()
    assert modules["zarr"] and modules["h5py"]  # it did read granules and write the cube
    assert [m for m in driver_side if modules[m]] == []
