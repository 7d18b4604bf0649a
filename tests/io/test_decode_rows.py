"""Decoding only the rows of a chunk a window needs: the same values as h5py's own reads, for
every dtype and filter combination HDF5 writes, and the chunk's stored bytes still checked."""

from __future__ import annotations

import io

import fsspec
import h5py
import numpy as np
import pytest

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.io.ranged import ChunkIndex, decode_chunk, read_window_ranged

SHAPE, CHUNKS = (50, 36), (20, 36)  # full-width row chunks, as ITS_LIVE's (640, 2016)


def _file(dtype: str, **filters) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(1)
    data = (rng.normal(size=SHAPE) * 1000).astype(dtype)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        h5.create_dataset("a", data=data, chunks=CHUNKS, **filters)
        h5.create_dataset("lead", data=data[None], chunks=(1, *CHUNKS), **filters)
    return buf.getvalue(), data


FILTERS = {
    "gzip+shuffle": {"compression": "gzip", "compression_opts": 2, "shuffle": True},
    "gzip": {"compression": "gzip"},
    "shuffle only": {"shuffle": True},
    "gzip+shuffle+fletcher32": {"compression": "gzip", "shuffle": True, "fletcher32": True},
    "none": {},
}


@pytest.mark.parametrize("dtype", ["<i2", "<u2", "u1", "<f4", ">i2", "<f8"])
@pytest.mark.parametrize("kind", list(FILTERS))
@pytest.mark.parametrize("rows", [(0, 20), (0, 1), (3, 17), (19, 20), (5, 5)])
def test_the_rows_of_a_chunk_equal_h5pys(dtype, kind, rows):
    raw, data = _file(dtype, **FILTERS[kind])
    with h5py.File(io.BytesIO(raw), "r") as h5:
        index = ChunkIndex.from_h5(h5, ["a", "lead"])
    for name in ("a", "lead"):
        var = index[name]
        for ref in var.refs:
            r0 = ref.origin[-2]
            stored = raw[ref.offset : ref.end]
            got = decode_chunk(stored, var, ref.filter_mask, rows)
            a, b = rows
            want = data[r0 + a : min(r0 + b, SHAPE[0])]
            assert got.shape == (*var.chunks[:-2], b - a, CHUNKS[1])
            # the last chunk overhangs the array: HDF5 stores it whole, rows past the end
            # hold whatever was written there; compare the array's own rows only
            got2 = got.reshape(b - a, CHUNKS[1])[: len(want)]
            np.testing.assert_array_equal(got2, want)
            assert got.dtype == np.dtype(dtype)


def test_windows_read_by_rows_equal_h5py_and_a_cached_read():
    """``read_window_ranged`` without a cache decodes only the window's rows of each chunk;
    with one it decodes whole chunks. Both equal h5py for windows across chunk borders."""
    from itslive_dask.io.ranged import ChunkCache

    raw, data = _file("<i2", **FILTERS["gzip+shuffle"])
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/rows.nc", raw)
    with h5py.File(io.BytesIO(raw), "r") as h5:
        index = ChunkIndex.from_h5(h5, ["a"])
    for rows, cols in [
        ((0, 50), (0, 36)),
        ((7, 33), (4, 30)),
        ((19, 21), (0, 1)),
        ((45, 50), (10, 36)),
    ]:
        plain = read_window_ranged(fs, "/rows.nc", index, ["a"], rows, cols)["a"]
        cached = read_window_ranged(fs, "/rows.nc", index, ["a"], rows, cols, cache=ChunkCache())[
            "a"
        ]
        want = data[rows[0] : rows[1], cols[0] : cols[1]]
        np.testing.assert_array_equal(plain, want)
        np.testing.assert_array_equal(cached, want)


def test_a_chunk_is_still_inflated_whole_so_its_checksum_is_checked():
    """Corrupting the deflate stream's Adler-32 (its last 4 bytes, after every row) is seen
    even when only the first row is wanted."""
    raw, _ = _file("<i2", **FILTERS["gzip+shuffle"])
    with h5py.File(io.BytesIO(raw), "r") as h5:
        index = ChunkIndex.from_h5(h5, ["a"])
    ref = index["a"].refs[0]
    broken = bytearray(raw)
    broken[ref.end - 1] ^= 0xFF
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/adler.nc", bytes(broken))
    with pytest.raises(GranuleError, match="does not decode"):
        read_window_ranged(fs, "/adler.nc", index, ["a"], (0, 1), (0, 36))


def test_rows_outside_the_chunk_and_short_chunks_are_errors():
    raw, _ = _file("<i2", **FILTERS["shuffle only"])
    with h5py.File(io.BytesIO(raw), "r") as h5:
        index = ChunkIndex.from_h5(h5, ["a"])
    var, ref = index["a"], index["a"].refs[0]
    stored = raw[ref.offset : ref.end]
    with pytest.raises(InvalidInputError, match="outside the chunk"):
        decode_chunk(stored, var, ref.filter_mask, (3, 21))
    with pytest.raises(GranuleError, match="expected"):
        decode_chunk(stored[:-2], var, ref.filter_mask, (0, 3))
