"""Transient read errors are retried with back-off; permanent ones fail at once and are recorded."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pytest
import shapely
from fsspec.implementations.memory import MemoryFileSystem
from realdata import V1

from itslive_dask.cube.kernel import BlockConfig, read_block, read_block_with_report
from itslive_dask.errors import GranuleError
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.geo.region import parse_region, to_crs
from itslive_dask.io.fetch import RetryPolicy, fetch_granule
from itslive_dask.types import GranuleRef


class FlakyFS(MemoryFileSystem):
    """In-memory files whose first reads fail like a dropped connection."""

    protocol = "flaky"
    store: dict = {}  # noqa: RUF012  (fsspec keeps memory files in a class-level dict)
    pseudo_dirs = [""]  # noqa: RUF012
    failures: dict[str, int] = {}  # noqa: RUF012
    calls: dict[str, int] = {}  # noqa: RUF012

    @classmethod
    def _strip_protocol(cls, path):
        return "/" + path.removeprefix("flaky://").lstrip("/")

    def cat_file(self, path, start=None, end=None, **kwargs):
        path = self._strip_protocol(path)
        FlakyFS.calls[path] = FlakyFS.calls.get(path, 0) + 1
        if FlakyFS.failures.get(path, 0) > 0:
            FlakyFS.failures[path] -= 1
            raise ConnectionResetError("connection reset by peer")
        return super().cat_file(path, start, end, **kwargs)


fsspec.register_implementation("flaky", FlakyFS, clobber=True)


@pytest.fixture
def flaky():
    FlakyFS.store.clear()
    FlakyFS.failures.clear()
    FlakyFS.calls.clear()
    fs = FlakyFS()
    fs.pipe_file("/a/granule.nc", b"x" * 10)
    return fs


def test_transient_errors_are_retried(flaky):
    FlakyFS.failures["/a/granule.nc"] = 2
    data, attempts = fetch_granule("flaky://a/granule.nc", {}, RetryPolicy(retries=3, backoff=0.0))
    assert data == b"x" * 10 and attempts == 3


def test_gives_up_after_retries(flaky):
    FlakyFS.failures["/a/granule.nc"] = 10
    with pytest.raises(GranuleError, match="after 4 attempts") as info:
        fetch_granule("flaky://a/granule.nc", {}, RetryPolicy(retries=3, backoff=0.0))
    assert info.value.attempts == 4 and FlakyFS.calls["/a/granule.nc"] == 4


def test_missing_object_is_not_retried(flaky):
    with pytest.raises(GranuleError, match="not found") as info:
        fetch_granule("flaky://a/nothing.nc", {}, RetryPolicy(retries=3, backoff=0.0))
    assert info.value.attempts == 1


@pytest.mark.skipif(not V1.exists(), reason="shared/data/real not present")
def test_block_records_failures_and_keeps_other_layers(flaky):
    flaky.pipe_file("/real/v1.nc", V1.read_bytes())
    flaky.pipe_file("/real/bad.nc", V1.read_bytes()[:5000])  # truncated
    region = to_crs(parse_region(bbox=(-101.0, -75.2, -100.6, -75.0)), 3031)
    grid = TargetGrid.from_bounds(region.bounds, 3031, 240)
    cfg = BlockConfig(grid, ("v",), "nearest", shapely.to_wkb(region), retries=2, backoff=0.0)
    good = GranuleRef("good", "flaky://real/v1.nc", 3031)
    bad = GranuleRef("bad", "flaky://real/bad.nc", 3031)
    flaky_ref = GranuleRef("flaky", "flaky://real/v1.nc", 3031)
    rows, cols = (0, grid.height), (0, grid.width)
    FlakyFS.failures["/real/v1.nc"] = 1  # the first read of v1.nc drops once
    out, report = read_block_with_report(cfg, ((0, good), (1, bad), (2, flaky_ref)), rows, cols, 3)
    assert report.read == ["good", "flaky"]
    assert [f["granule_id"] for f in report.failed] == ["bad"]
    assert "HDF5" in report.failed[0]["error"] or "NetCDF" in report.failed[0]["error"]
    assert np.isfinite(out[0, 0]).sum() > 100
    assert np.isnan(out[0, 1]).all()
    assert out[0, 2].tobytes() == out[0, 0].tobytes()
    with pytest.raises(GranuleError, match=r"bad\.nc"):
        read_block(cfg, ((0, bad),), rows, cols, 1)


_EXIT_SCRIPT = """
import sys
from fsspec.implementations.memory import MemoryFileSystem
import fsspec
from itslive_dask.errors import GranuleError
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.io.remote import RangedReader

class Once(MemoryFileSystem):
    protocol = "onceflaky"
    store = {}
    pseudo_dirs = [""]
    failed = False

    @classmethod
    def _strip_protocol(cls, path):
        return "/" + path.removeprefix("onceflaky://").lstrip("/")

    def cat_file(self, path, start=None, end=None, **kw):
        if not Once.failed:
            Once.failed = True
            raise ConnectionResetError("reset by peer")
        return super().cat_file(path, start, end, **kw)

fsspec.register_implementation("onceflaky", Once, clobber=True)
Once().pipe_file("/g.nc", open(sys.argv[1], "rb").read())
Once().pipe_file("/bad.nc", open(sys.argv[1], "rb").read()[:5000])
info = RangedReader("onceflaky://g.nc", {}, RetryPolicy(retries=2, backoff=0), "s").header()
try:
    RangedReader("onceflaky://bad.nc", {}, RetryPolicy(retries=2, backoff=0), "s").header()
except GranuleError as exc:
    print("bad:", exc.problem)
print("read", info.granule_id)
"""


@pytest.mark.skipif(not V1.exists(), reason="shared/data/real not present")
def test_a_retried_header_read_leaves_the_interpreter_able_to_exit():
    """Defect: a network error inside h5py's open chained h5py's failed file-access objects to
    the retried exception; HDF5 freed them after Python had shut down: a segfault at exit
    (exit code 139) of any process that retried a header, e.g. a test run or a worker."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, str(V1)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "read g" in done.stdout and "bad: truncated" in done.stdout


# -- issue 15: no h5py object of a failed attempt is left to the cyclic garbage collector ----

ROOT = Path(__file__).resolve().parents[2]

_DEADLOCK_SCRIPT = r"""
import gc, json, sys, threading, time
import fsspec.asyn
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.io.hdf5 import read_granule_info
from itslive_dask.io.listing import read_headers
from itslive_dask.io.remote import RangedReader
from itslive_dask.errors import GranuleError
from itslive_dask.testing.s3proxy import FaultRule, S3Proxy

upstream, urls = json.loads(sys.argv[1]), json.loads(sys.argv[2])
gc.disable()  # what the failed attempts leave stays in memory until the collection below
policy = RetryPolicy(retries=2, backoff=0.0)
with S3Proxy(upstream, seed=7) as proxy:
    so = proxy.storage_options
    # 1. header reads at 30% faults (resets, truncated bodies, 500, 503): failed attempts
    proxy.set_faults(FaultRule(0.3, kinds=("500", "503", "reset", "truncate"), direction="read"))
    for k, url in enumerate(urls[1:]):
        for read in (lambda: read_granule_info(url, so, policy),
                     lambda: RangedReader(url, so, policy, f"s{k}").header()):
            try:
                read()
            except GranuleError:
                pass
    print("faults", sum(proxy.stats.faults().values()), flush=True)
    # 2. a plan-time header read whose GETs stall 1.5 s; while h5py waits inside its read
    # callback for fsspec's IO thread, the garbage collector runs in that thread (as an
    # automatic collection does when that thread's allocations cross the threshold)
    victim = urls[0]
    proxy.set_faults(FaultRule(1.0, kinds=("stall",), methods=("GET",), stall_seconds=1.5,
                               key_pattern=victim.split("://", 1)[1]))
    out = {}
    reader = threading.Thread(target=lambda: out.update(r=read_headers([victim], so, policy=policy)))
    reader.start()

    def inside_h5py_io():
        for tid, frame in sys._current_frames().items():
            names, f = [], frame
            while f is not None:
                names.append((f.f_code.co_filename, f.f_code.co_name))
                f = f.f_back
            if any(n == "sync" and "fsspec" in p for p, n in names) and any("h5py" in p for p, _ in names):
                return True
        return False

    t0 = time.monotonic()
    while not inside_h5py_io() and reader.is_alive() and time.monotonic() - t0 < 20:
        time.sleep(0.01)
    print("inside h5py", inside_h5py_io(), flush=True)
    fsspec.asyn.get_loop().call_soon_threadsafe(gc.collect)
    reader.join()
    infos, failures = out["r"]
    print("read", len(infos), "failed", len(failures), flush=True)
"""


def test_a_failed_header_attempt_leaves_no_h5py_object_to_the_garbage_collector(
    synthetic_archive, local_s3
):
    """Issue 15, the hang of the 50% header test: a failed attempt left its h5py objects in
    reference cycles (exception <-> frames <-> file object). The cyclic collector then freed
    them in whatever thread it ran; in fsspec's IO thread, while another thread sat inside
    h5py waiting for that thread's I/O, freeing an h5py object waits for h5py's global lock
    forever (h5py#2019). Here the collector runs in the IO thread at that moment: before the
    fix the process hangs (killed by the timeout), after it the header is read."""
    import json
    import os
    import subprocess
    import sys

    urls = list(synthetic_archive.table.url[:9])
    env = {
        **os.environ,
        # the checkout under test, whatever the working directory
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _DEADLOCK_SCRIPT,
                json.dumps(local_s3.storage_options),
                json.dumps(urls),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(
            f"deadlock: the header read hung after garbage collection in fsspec's IO thread ({out!r})"
        )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-3000:])
    assert "inside h5py True" in done.stdout, done.stdout
    assert "read 1 failed 0" in done.stdout, done.stdout
    assert int(done.stdout.split("faults ", 1)[1].split()[0]) > 0


def test_failed_header_attempts_leave_no_h5py_reference_cycle(synthetic_archive, local_s3):
    """The cause itself: after header reads whose attempts fail (seeded faults through the
    proxy), the cyclic garbage collector finds no h5py object: each attempt's h5py objects
    were freed when it failed, in the thread that read them."""
    import gc

    from itslive_dask.io.hdf5 import read_granule_info
    from itslive_dask.io.remote import RangedReader
    from itslive_dask.testing.s3proxy import FaultRule, S3Proxy

    policy = RetryPolicy(retries=2, backoff=0.0)
    urls = list(synthetic_archive.table.url[:8])
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        rule = FaultRule(0.3, kinds=("500", "503", "reset", "truncate"), direction="read")
        with S3Proxy(local_s3, faults=rule, seed=7) as proxy:
            so = proxy.storage_options
            for k, url in enumerate(urls):
                for read in (
                    lambda: read_granule_info(url, so, policy),  # noqa: B023
                    lambda: RangedReader(url, so, policy, f"cycles-{k}").header(),  # noqa: B023
                ):
                    try:
                        read()
                    except GranuleError:
                        pass
            assert sum(proxy.stats.faults().values()) > 0
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        leaked = [type(o).__name__ for o in gc.garbage if type(o).__module__.startswith("h5py")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
    assert leaked == []


def test_release_frames_frees_what_failed_attempts_hold_and_leaves_live_generators_alone():
    """``release_frames`` drops what the finished frames of a failed attempt hold, and never
    closes a generator or coroutine that is only suspended (an event loop's task can be in a
    traceback: clearing its frame would end it)."""
    import gc
    import weakref

    from itslive_dask.io.fetch import release_frames

    class Handle:  # stands for an h5py object held by a failed attempt
        pass

    def attempt():
        handle = Handle()
        handles.append(weakref.ref(handle))
        raise OSError("connection reset")

    handles: list = []
    saved: list = []

    def live():
        try:
            raise ValueError("caught inside, kept")
        except ValueError as exc:
            saved.append(exc)
        yield 1
        yield 2

    gen = live()
    assert next(gen) == 1
    gc.disable()
    try:
        try:
            attempt()
        except OSError as exc:
            exc.__context__ = saved[0]
            kept = exc
            kept.self_ref = kept  # a cycle through the exception, as a traced file makes
            release_frames(kept)
        assert handles[0]() is None  # freed at once, not left to the garbage collector
    finally:
        gc.enable()
    assert next(gen) == 2  # the suspended generator still runs
