"""Issue 11: with fewer time blocks than workers, no granule is fetched by two workers.

The tiles of one time block read the same granules; given to two workers tile by tile, both
fetch (nearly) every granule's chunks. The runner then splits the time block's granules
between the workers instead (:func:`itslive_dask.store.runner.granule_split`). Counted through
the request-counting proxy in front of the local S3 server: the same byte range of a granule
is fetched (almost) never twice, and the cube is the lazy cube of :func:`open_cube` (the
graph path, which splits nothing).
"""

from __future__ import annotations

import collections

import numpy as np
import xarray as xr
from bucket_copies import copy_to_bucket

from itslive_dask import open_cube, write_cube
from itslive_dask.testing.s3proxy import S3Proxy

CHUNKS = (32, 64, 64)  # one time block of 12 layers, 20 tiles


def test_one_time_block_on_two_workers_fetches_each_range_once(
    synthetic_archive, local_s3, dask_client, tmp_path
):
    table = copy_to_bucket(local_s3, synthetic_archive.table.iloc[:12], "split-in")
    store = tmp_path / "split.zarr"
    with S3Proxy(local_s3) as proxy:
        res = write_cube(
            table, str(store), synthetic_archive.region, storage_options=proxy.storage_options,
            chunks=CHUNKS, client=dask_client,
        )  # fmt: skip
        stats = proxy.reset_stats()
    assert res.failed == [] and res.blocks_written > 4 and res.shape[0] == len(table)
    gets = collections.Counter((r.key, r.range) for r in stats.select(method="GET"))
    again = sum(n - 1 for n in gets.values())
    print(f"ranges fetched again: {again} of {sum(gets.values())} GETs")
    # split by tiles (before): 47 of 94 GETs fetched a range the other worker had fetched
    assert again <= 0.05 * sum(gets.values()), (again, sum(gets.values()))
    assert {r.key for r in stats.select(method="GET")} == {u.split("://", 1)[1] for u in table.url}

    built = xr.open_zarr(store).load()
    lazy = open_cube(
        table, synthetic_archive.region, storage_options=synthetic_archive.storage_options,
        chunks=CHUNKS,
    ).compute(scheduler="synchronous")  # fmt: skip
    for v in ("vx", "vy", "v", "v_error"):
        np.testing.assert_array_equal(built[v].values, lazy[v].values)
    assert np.isfinite(built.vx.values).mean() > 0.2  # granules cover ~28 % of the cube


def _cached_chunk_bytes(dask_client):
    def held():
        from itslive_dask.io import remote

        return remote.CHUNK_CACHE.nbytes

    return sum(dask_client.run(held).values())


def _forget_chunks():
    from itslive_dask.io import remote

    remote.CHUNK_CACHE.clear()


def test_decoded_chunks_are_kept_only_for_granules_several_blocks_read(
    synthetic_archive, dask_client, tmp_path
):
    """One tile in space: every granule feeds one block, and no worker keeps a decoded chunk
    (a worker held 320 MiB of useless chunks after the tutorial-size build: 918 MB peak, 339
    MB now); small tiles: the shared granules' chunks are kept."""
    arch = synthetic_archive
    table = arch.table.iloc[:12]
    kw = dict(storage_options=arch.storage_options, client=dask_client)
    dask_client.run(_forget_chunks)  # other tests' builds on these workers kept theirs
    write_cube(table, str(tmp_path / "one.zarr"), arch.region, chunks=(4, 1024, 1024), **kw)
    assert _cached_chunk_bytes(dask_client) == 0
    write_cube(table, str(tmp_path / "many.zarr"), arch.region, chunks=(4, 64, 64), **kw)
    assert _cached_chunk_bytes(dask_client) > 0
