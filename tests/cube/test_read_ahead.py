"""Remote granules of a block are read several at a time, so a block on an object store does
not wait on each request's latency in turn; the results, failures and errors are those of
reading them one after the other."""

from __future__ import annotations

import dataclasses
import threading
import time

import dask
import numpy as np
import pytest

from itslive_dask.cube import graph, kernel
from itslive_dask.cube.kernel import BlockConfig
from itslive_dask.cube.lazy import open_cube
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.io import remote
from itslive_dask.testing.s3proxy import S3Proxy
from itslive_dask.types import GranuleRef


def _cfg(read_ahead: int) -> BlockConfig:
    grid = TargetGrid(3413, 120.0, 0.0, 0.0, width=4, height=4)
    return BlockConfig(grid, ("v",), "nearest", b"", read_ahead=read_ahead)


def _refs(n: int, remote: bool = True) -> tuple[tuple[int, GranuleRef], ...]:
    base = "s3://bucket/g" if remote else "/data/g"
    return tuple((k, GranuleRef(f"g{k}", f"{base}{k}.nc", 32633)) for k in range(n))


def test_remote_granules_of_a_block_are_read_together():
    barrier = threading.Barrier(4, timeout=10)  # passes only when 4 reads run at once

    def warp(pos, ref):
        barrier.wait()
        return pos * 10

    assert kernel._each_granule(_cfg(4), _refs(4), warp) == [0, 10, 20, 30]


@pytest.mark.parametrize(("read_ahead", "remote"), [(1, True), (8, False)])
def test_one_at_a_time_when_asked_or_for_local_files(read_ahead, remote):
    threads, running = set(), []

    def warp(pos, ref):
        running.append(pos)
        threads.add(threading.get_ident())
        assert len(running) == 1, "two granules were read at once"
        time.sleep(0.01)
        running.remove(pos)
        return pos

    assert kernel._each_granule(_cfg(read_ahead), _refs(5, remote), warp) == list(range(5))
    assert threads == {threading.get_ident()}  # in the calling thread, as before


def test_the_first_error_in_order_is_raised_and_the_rest_are_dropped():
    release, started = threading.Event(), []

    def warp(pos, ref):
        started.append(pos)
        if pos == 0:
            time.sleep(0.05)  # fails after the second granule started
            raise ValueError("granule 0")
        if pos == 1:
            release.wait(10)
            raise KeyError("granule 1, later in order")
        time.sleep(0.05)
        return pos

    with pytest.raises(ValueError, match="granule 0"):
        kernel._each_granule(_cfg(2), _refs(8), warp)
    release.set()
    time.sleep(0.1)
    # granule 1 was running; at most one more was picked up before the rest were cancelled
    assert set(started) <= {0, 1, 2} and {0, 1} <= set(started)


def test_a_block_on_a_slow_object_store_reads_granules_together(synthetic_archive, local_s3):
    """Through the proxy with 20 ms per request, one Dask thread: the default reads several
    objects at once, ``read_ahead=1`` one at a time; the cubes are equal value for value."""
    table = synthetic_archive.table.iloc[:12].reset_index(drop=True)
    original = kernel.BlockConfig
    cubes, in_flight = {}, {}
    with S3Proxy(local_s3, latency=0.02) as proxy:
        so = proxy.storage_options
        for read_ahead in (1, kernel.READ_AHEAD):
            remote.HEADER_CACHE.clear()  # both builds read cold (same plan, same session)
            remote._CHUNKS.clear()
            proxy.reset_stats()

            graph.BlockConfig = lambda **kw: dataclasses.replace(original(**kw), read_ahead=read_ahead)  # noqa: B023
            try:
                cube = open_cube(table, synthetic_archive.region, storage_options=so, chunks=(16, 64, 64))
                with dask.config.set(scheduler="synchronous"):
                    cubes[read_ahead] = cube.compute()
            finally:
                graph.BlockConfig = original
            in_flight[read_ahead] = proxy.stats.max_keys_in_flight(method="GET", key="*.nc")
    assert in_flight[1] == 1
    assert in_flight[kernel.READ_AHEAD] > 1
    for v in ("vx", "vy", "v", "v_error"):
        np.testing.assert_array_equal(cubes[1][v].values, cubes[kernel.READ_AHEAD][v].values)
