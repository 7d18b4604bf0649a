"""How often the engine reads each granule, and that building the graph reads nothing."""

from __future__ import annotations

from collections import Counter

import dask
import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from realdata import V1

from itslive_dask.cube.graph import cube_from_plan
from itslive_dask.cube.lazy import make_plan, open_cube
from itslive_dask.io import fetch
from itslive_dask.io.hdf5 import read_granule_info
from itslive_dask.io.reader import default_reader, whole_object_reader

pytestmark = pytest.mark.skipif(not V1.exists(), reason="shared/data/real not present")


class CountingFS(MemoryFileSystem):
    """In-memory files that count reads: requests and bytes per object, whole or ranged."""

    protocol = "counting"
    store: dict = {}  # noqa: RUF012
    pseudo_dirs = [""]  # noqa: RUF012
    reads: Counter = Counter()  # noqa: RUF012
    nbytes: Counter = Counter()  # noqa: RUF012
    ranges: list = []  # noqa: RUF012

    @classmethod
    def _strip_protocol(cls, path):
        return "/" + path.removeprefix("counting://").lstrip("/")

    def cat_file(self, path, start=None, end=None, **kwargs):
        key = self._strip_protocol(path)
        data = super().cat_file(path, start, end, **kwargs)
        CountingFS.reads[key] += 1
        CountingFS.nbytes[key] += len(data)
        CountingFS.ranges.append((key, start, end))
        return data


fsspec.register_implementation("counting", CountingFS, clobber=True)


@pytest.fixture
def table():
    CountingFS.store.clear()
    CountingFS.reads.clear()
    CountingFS.nbytes.clear()
    CountingFS.ranges.clear()
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


def test_whole_object_reader_reads_each_granule_once_per_tile_or_process(table):
    """The whole-object reader (kept as an option): one GET per (granule, tile) without the
    byte cache, one per process with it."""
    plan = make_plan(table, bbox=BBOX, chunks=(2, 100, 100))
    tiles_of = Counter(r.url for b in plan.blocks for _, r in plan.block_refs(b))
    assert max(tiles_of.values()) > 1  # each granule spans several tiles
    cube_whole = _compute_with(plan, whole_object_reader)
    fetch.BYTES_CACHE.clear()
    saved = fetch.BYTES_CACHE.maxbytes
    CountingFS.reads.clear()
    try:
        fetch.BYTES_CACHE.maxbytes = 0  # no byte cache: one request per (granule, tile)
        _compute_with(plan, whole_object_reader)
        per_url = {f"counting://{k.lstrip('/')}": v for k, v in CountingFS.reads.items()}
        assert per_url == dict(tiles_of)
    finally:
        fetch.BYTES_CACHE.maxbytes = saved
    CountingFS.reads.clear()
    fetch.BYTES_CACHE.clear()
    _compute_with(plan, whole_object_reader)  # with the cache: once per process
    assert set(CountingFS.reads.values()) == {1}
    np.testing.assert_array_equal(cube_whole, _compute_with(plan, default_reader))


def test_range_reader_fetches_only_needed_chunks_once(table):
    """The default reader for remote granules: the header once per granule and process, then
    only byte ranges of chunks (never the whole object), each chunk once per process."""
    from itslive_dask.io import remote

    plan = make_plan(table, bbox=BBOX, chunks=(2, 100, 100))
    remote.HEADER_CACHE.clear()
    remote.CHUNK_CACHE.clear()
    CountingFS.reads.clear()
    CountingFS.nbytes.clear()
    CountingFS.ranges.clear()
    _compute_with(plan, default_reader)
    assert CountingFS.ranges, "nothing was read"
    size = V1.stat().st_size
    assert all(start is not None for _, start, _ in CountingFS.ranges)  # ranged only
    for key, got in CountingFS.nbytes.items():
        assert got <= size, (key, got, size)  # never more than the object (V1: one chunk)
    ranges = Counter(CountingFS.ranges)
    assert max(ranges.values()) == 1  # no byte range fetched twice in the process
    tiles_of = Counter(r.url for b in plan.blocks for _, r in plan.block_refs(b))
    for key, n in CountingFS.reads.items():  # requests do not grow with the tiles a granule spans
        assert n <= 8, (key, n, tiles_of[f"counting:/{key}"])


def _compute_with(plan, reader):
    """The plan's v, computed with a given reader factory in this process."""
    import dataclasses

    from itslive_dask.cube import graph

    original = graph.BlockConfig
    try:
        graph.BlockConfig = lambda **kw: dataclasses.replace(original(**kw), reader=reader)
        with dask.config.set(scheduler="synchronous"):
            return cube_from_plan(plan, storage_options={"x": len(str(reader))}).v.values
    finally:
        graph.BlockConfig = original
