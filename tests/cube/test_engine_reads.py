"""How often the engine reads each granule, and that building the graph reads nothing."""

from __future__ import annotations

from collections import Counter

import dask
import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from realdata import V1

from itslive_dask.cube.lazy import make_plan, open_cube
from itslive_dask.io import fetch
from itslive_dask.io.hdf5 import read_granule_info

pytestmark = pytest.mark.skipif(not V1.exists(), reason="shared/data/real not present")


class CountingFS(MemoryFileSystem):
    """In-memory files that count whole-object reads."""

    protocol = "counting"
    store: dict = {}  # noqa: RUF012
    pseudo_dirs = [""]  # noqa: RUF012
    reads: Counter = Counter()  # noqa: RUF012

    @classmethod
    def _strip_protocol(cls, path):
        return "/" + path.removeprefix("counting://").lstrip("/")

    def cat_file(self, path, start=None, end=None, **kwargs):
        CountingFS.reads[self._strip_protocol(path)] += 1
        return super().cat_file(path, start, end, **kwargs)


fsspec.register_implementation("counting", CountingFS, clobber=True)


@pytest.fixture
def table():
    CountingFS.store.clear()
    CountingFS.reads.clear()
    fs = CountingFS()
    data = V1.read_bytes()
    info = read_granule_info(str(V1))
    recs = []
    for k in range(6):  # six copies of the granule, one day apart
        url = f"counting://bucket/g{k}/{V1.name}"
        fs.pipe_file(url, data)
        rec = info.to_record(url)
        rec["granule_id"] = f"{info.granule_id}-{k}"
        rec["mid_date"] = rec["mid_date"] + np.timedelta64(k, "D")
        recs.append(rec)
    from itslive_dask.table import granule_table

    return granule_table(recs)


BBOX = (-101.0, -75.3, -100.2, -74.95)


def test_building_the_graph_reads_nothing(table):
    cube = open_cube(table, bbox=BBOX, chunks=(2, 100, 100))
    assert sum(CountingFS.reads.values()) == 0
    assert cube.v.data.npartitions > 6


def test_each_granule_read_at_most_once_per_tile(table):
    plan = make_plan(table, bbox=BBOX, chunks=(2, 100, 100))
    tiles_of = Counter(r.url for b in plan.blocks for _, r in plan.block_refs(b))
    assert max(tiles_of.values()) > 1  # each granule spans several tiles
    fetch.BYTES_CACHE.clear()
    saved = fetch.BYTES_CACHE.maxbytes
    try:
        fetch.BYTES_CACHE.maxbytes = 0  # no byte cache: one request per (granule, tile)
        with dask.config.set(scheduler="synchronous"):
            open_cube(table, bbox=BBOX, chunks=(2, 100, 100)).compute()
        per_url = {f"counting://{k.lstrip('/')}": v for k, v in CountingFS.reads.items()}
        assert per_url == dict(tiles_of)
    finally:
        fetch.BYTES_CACHE.maxbytes = saved
    CountingFS.reads.clear()
    fetch.BYTES_CACHE.clear()
    with dask.config.set(scheduler="synchronous"):  # with the cache: once per process
        open_cube(table, bbox=BBOX, chunks=(2, 100, 100)).compute()
    assert set(CountingFS.reads.values()) == {1}
