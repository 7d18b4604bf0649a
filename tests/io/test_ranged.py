"""The range reader: windows equal to h5py's own ``ds[rows, cols]`` on the real V1/V2 granules
and on realistic synthetic granules, and exactly the needed chunk bytes fetched from S3."""

from __future__ import annotations

import io
import pickle
from concurrent.futures import ThreadPoolExecutor

import fsspec
import h5py
import numpy as np
import pytest
from realdata import V1, V2, needs_real

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.io.ranged import (
    ChunkIndex,
    RangeFile,
    coalesce_ranges,
    open_header,
    read_window_ranged,
    window_chunks,
)
from itslive_dask.testing.s3proxy import FaultRule, S3Proxy
from itslive_dask.testing.synthetic import SyntheticConfig, generate_granule, make_granule_specs

ALL = ("vx", "vy", "v", "v_error", "chip_size_width", "chip_size_height", "interp_mask")
VELOCITY = ("vx", "vy", "v", "v_error")
BUCKET = "ranged-test"
KEY = f"{BUCKET}/realistic.nc"


# ----------------------------------------------------------------------------- pure planning
def test_window_chunks_by_hand():
    # full-width row chunks of a realistic granule: rows 0-639, 640-1279, 1280-1878
    shape, chunks = (1879, 2016), (640, 2016)
    assert window_chunks(shape, chunks, slice(0, 640), slice(0, 2016)) == [(0, 0)]
    assert window_chunks(shape, chunks, slice(639, 641), slice(5, 6)) == [(0, 0), (1, 0)]
    assert window_chunks(shape, chunks, slice(1280, None), slice(None)) == [(2, 0)]
    assert window_chunks(shape, chunks, (100, 1500), (0, 1)) == [(0, 0), (1, 0), (2, 0)]
    assert window_chunks(shape, chunks, slice(5, 5), slice(0, 9)) == []
    # square chunks, a window over the corner of four
    assert window_chunks((10, 10), (4, 4), slice(3, 5), slice(3, 5)) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert window_chunks((10, 10), (4, 4), slice(8, 10), slice(9, 10)) == [(2, 2)]
    # a length-1 leading (time) axis
    assert window_chunks((1, 10, 10), (1, 4, 4), slice(0, 1), slice(0, 1)) == [(0, 0, 0)]
    with pytest.raises(InvalidInputError):
        window_chunks(shape, chunks, slice(0, 10, 2), slice(0, 1))
    with pytest.raises(InvalidInputError):
        window_chunks(shape, chunks, (0, 1880), (0, 1))
    with pytest.raises(InvalidInputError):
        window_chunks((2, 10, 10), (1, 4, 4), slice(0, 1), slice(0, 1))


def test_coalesce_ranges_by_hand():
    assert coalesce_ranges([(0, 10), (10, 20)], max_gap=0) == [(0, 20)]
    assert coalesce_ranges([(0, 10), (11, 20)], max_gap=0) == [(0, 10), (11, 20)]
    assert coalesce_ranges([(30, 40), (0, 10), (12, 20)], max_gap=2) == [(0, 20), (30, 40)]
    assert coalesce_ranges([(0, 10), (5, 8), (0, 10)], max_gap=0) == [(0, 10)]  # overlap, dup
    assert coalesce_ranges([(0, 10), (10, 20), (20, 30)], max_gap=0, max_request=20) == [
        (0, 20),
        (20, 30),
    ]
    assert coalesce_ranges([(0, 100)], max_gap=0, max_request=10) == [(0, 100)]
    assert coalesce_ranges([(5, 5)]) == []


# ----------------------------------------------------------------------------- equality
def _windows(shape, chunks):
    ny, nx = shape
    cy, _cx = chunks
    return [
        (slice(None), slice(None)),
        (slice(0, 1), slice(0, 1)),  # top-left pixel
        (slice(ny - 1, ny), slice(nx - 1, nx)),  # bottom-right pixel (last, partial chunk)
        (slice(ny - 7, ny), slice(0, nx)),  # last rows, full width
        (slice(min(cy, ny) - 3, min(cy, ny) + 3), slice(nx // 3, nx // 2)),  # crosses a row chunk
        (slice(10, ny - 10), slice(nx - 20, nx)),  # right edge, all row chunks
        (slice(4, 4), slice(0, 3)),  # empty
    ]


def _check_equal(fs, path, h5, names, windows, **kw):
    index = ChunkIndex.from_h5(h5, names)
    for rows, cols in windows:
        got = read_window_ranged(fs, path, index, names, rows, cols, **kw)
        assert set(got) == set(names)
        for name in names:
            expected = h5[name][rows, cols]
            assert got[name].dtype == expected.dtype, name
            assert got[name].shape == expected.shape, (name, rows, cols)
            np.testing.assert_array_equal(got[name], expected, err_msg=f"{name} {rows} {cols}")


@needs_real
@pytest.mark.parametrize("path", [V1, V2], ids=["V1", "V2"])
def test_equal_to_h5py_on_the_real_granules(path):
    fs = fsspec.filesystem("file")
    with h5py.File(path, "r") as h5:
        names = [n for n in ALL if n in h5]
        shape, chunks = h5["vx"].shape, h5["vx"].chunks
        _check_equal(fs, str(path), h5, names, _windows(shape, chunks))
        _check_equal(fs, str(path), h5, names, _windows(shape, chunks)[:5], max_gap=-1)


@needs_real
def test_unwritten_chunks_read_as_the_fill_value():
    """V1's chip_size_height has no stored chunk at all: HDF5 fill 65535 everywhere."""
    fs = fsspec.filesystem("file")
    with h5py.File(V1, "r") as h5:
        index = ChunkIndex.from_h5(h5, ["chip_size_height", "vx"])
        assert index["chip_size_height"].refs == ()
        assert index["chip_size_height"].fill_value == 65535
        got = read_window_ranged(fs, str(V1), index, ["chip_size_height"], (3, 9), (0, 636))
        assert got["chip_size_height"].shape == (6, 636)
        assert np.all(got["chip_size_height"] == 65535)
        # V1 layout: one gzip level-1 chunk, no shuffle
        assert index["vx"].filters == ((1, (1,)),) and index["vx"].chunks == (592, 636)


@pytest.fixture(scope="module")
def realistic_bytes() -> bytes:
    """One realistic-size V2 granule (1879 x 2016, (640, 2016) chunks, ~19 MB)."""
    spec = make_granule_specs(
        SyntheticConfig(n_granules=1, seed=11, size="realistic", v1_fraction=0.0)
    )[0]
    assert spec.version == 2
    return generate_granule(spec)


def test_equal_to_h5py_on_a_realistic_synthetic_granule(realistic_bytes, tmp_path):
    path = tmp_path / "realistic.nc"
    path.write_bytes(realistic_bytes)
    fs = fsspec.filesystem("file")
    with h5py.File(path, "r") as h5:
        assert h5["vx"].chunks == (640, 2016)
        windows = [
            *_windows((1879, 2016), (640, 2016)),
            (slice(1279, 1281), slice(2000, 2016)),  # second row-chunk boundary, right edge
            (slice(600, 1300), slice(0, 50)),  # three row chunks
        ]
        _check_equal(fs, str(path), h5, list(ALL), windows)
        with ThreadPoolExecutor(2) as ex:  # decoding in threads gives the same arrays
            _check_equal(fs, str(path), h5, list(VELOCITY), windows[3:6], executor=ex)


def test_index_is_picklable_and_serialisable(realistic_bytes):
    with h5py.File(io.BytesIO(realistic_bytes), "r") as h5:
        index = ChunkIndex.from_h5(h5, ALL)
        expected = h5["v"][700:705, 10:20]
    assert index.file_size == len(realistic_bytes)
    assert pickle.loads(pickle.dumps(index)) == index
    again = ChunkIndex.from_json(index.to_json())
    assert again == index
    assert len(index.to_json()) < 4000  # 7 variables x 3 chunks: small enough for a catalog
    # the restored index reads windows from the bytes alone
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/restored.nc", realistic_bytes)
    got = read_window_ranged(fs, "/restored.nc", again, ["v"], slice(700, 705), slice(10, 20))
    np.testing.assert_array_equal(got["v"], expected)
    vx = index["vx"]
    assert vx.dtype == "<i2" and vx.chunks == (640, 2016) and vx.fill_value == -32767
    assert vx.filters == ((2, (2,)), (1, (2,)))  # shuffle (2-byte elements), then deflate 2
    assert [r.origin for r in vx.refs] == [(0, 0), (640, 0), (1280, 0)]
    with pytest.raises(KeyError, match="not in this chunk index"):
        index["M11"]
    with pytest.raises(InvalidInputError):
        ChunkIndex.from_dict({"format": "other"})


def test_missing_variables_raise_or_are_skipped(realistic_bytes):
    with h5py.File(io.BytesIO(realistic_bytes), "r") as h5:
        with pytest.raises(GranuleError, match="M11"):
            ChunkIndex.from_h5(h5, ["vx", "M11"])
        assert ChunkIndex.from_h5(h5, ["vx", "M11"], missing="skip").names == ("vx",)


def test_corrupt_chunk_bytes_raise_a_granule_error(realistic_bytes):
    with h5py.File(io.BytesIO(realistic_bytes), "r") as h5:
        index = ChunkIndex.from_h5(h5, ["vx"])
    ref = index["vx"].refs[0]
    broken = bytearray(realistic_bytes)
    broken[ref.offset : ref.offset + 64] = b"\0" * 64
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/broken.nc", bytes(broken))
    with pytest.raises(GranuleError, match="does not decode"):
        read_window_ranged(fs, "/broken.nc", index, ["vx"], slice(0, 5), slice(0, 5))


# ----------------------------------------------------------------------------- bytes on S3
@pytest.fixture(scope="module")
def on_s3(local_s3, realistic_bytes):
    local_s3.create_bucket(BUCKET)
    local_s3.filesystem().pipe_file(KEY, realistic_bytes)
    with h5py.File(io.BytesIO(realistic_bytes), "r") as h5:
        index = ChunkIndex.from_h5(h5, ALL)
        expected = {n: h5[n][700:900, 100:600] for n in VELOCITY}
    with S3Proxy(local_s3) as proxy:
        yield proxy, index, expected


def test_a_window_inside_one_row_chunk_fetches_exactly_that_chunk_per_variable(on_s3):
    proxy, index, expected = on_s3
    fs = proxy.filesystem()
    proxy.reset_stats()
    got = read_window_ranged(fs, KEY, index, VELOCITY, slice(700, 900), slice(100, 600))
    st = proxy.reset_stats()
    for name in VELOCITY:
        np.testing.assert_array_equal(got[name], expected[name])
    chunk1 = {name: index["vx"].refs[1] for name in VELOCITY}
    assert all(index[n].refs[1].origin == (640, 0) for n in VELOCITY) and chunk1
    # one ranged GET per variable, of exactly row chunk 1's bytes; nothing else
    assert st.requests() == 4
    assert st.requests(method="GET", ranged=True) == 4
    assert st.bytes_out() == sum(index[n].refs[1].size for n in VELOCITY)
    assert sorted(r.bytes_out for r in st.records) == sorted(
        index[n].refs[1].size for n in VELOCITY
    )
    assert st.bytes_out() == index.window_bytes(VELOCITY, slice(700, 900), slice(100, 600))
    # ~1 byte per pixel per variable: a row chunk is ~1.3 MB, the object ~19 MB
    assert st.bytes_out() < 0.3 * fs.size(KEY)


def test_header_plus_window_through_the_proxy(on_s3, realistic_bytes):
    """Cold read of a granule by URL: header (block cache) + the window's chunks, no whole
    object; adjacent row chunks of a variable are one coalesced GET."""
    proxy, index, _ = on_s3
    fs = proxy.filesystem()
    proxy.reset_stats()
    with open_header(fs, KEY, size=len(realistic_bytes)) as h5:
        cold = ChunkIndex.from_h5(h5, VELOCITY)
        rf = h5.range_file
    header = proxy.reset_stats()
    assert cold.variables == tuple(index[n] for n in VELOCITY)
    assert header.requests() == rf.requests == header.requests(method="GET", ranged=True)
    assert header.bytes_out() == rf.bytes_fetched
    assert rf.requests <= 8 and rf.bytes_fetched < 600_000  # measured: 6 GETs, 344 kB
    got = read_window_ranged(fs, KEY, cold, VELOCITY, slice(600, 700), slice(0, 2016))
    st = proxy.reset_stats()
    assert st.requests() == 4  # chunks 0 and 1 of each variable are adjacent: one GET each
    needed = cold.window_bytes(VELOCITY, slice(600, 700), slice(0, 2016))
    assert st.bytes_out() == needed
    assert needed == sum(cold[n].refs[0].size + cold[n].refs[1].size for n in VELOCITY)
    with h5py.File(io.BytesIO(realistic_bytes), "r") as h5:
        for name in VELOCITY:
            np.testing.assert_array_equal(got[name], h5[name][600:700, :])
    # without coalescing: one GET per chunk
    read_window_ranged(fs, KEY, cold, VELOCITY, slice(600, 700), slice(0, 2016), max_gap=-1)
    assert proxy.reset_stats().requests() == 8


def test_transient_faults_are_absorbed_by_s3fs_retries(local_s3, on_s3):
    _, index, expected = on_s3
    rule = FaultRule(0.3, kinds=("500", "503", "reset", "truncate"), key_pattern=KEY)
    with S3Proxy(local_s3, faults=rule, seed=5) as proxy:
        fs = proxy.filesystem()
        for _ in range(3):
            got = read_window_ranged(fs, KEY, index, VELOCITY, slice(700, 900), slice(100, 600))
            for name in VELOCITY:
                np.testing.assert_array_equal(got[name], expected[name])
        assert proxy.stats.requests(fault=True) > 0


def test_range_file_counts_and_seeks(realistic_bytes):
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/rf.nc", realistic_bytes)
    rf = RangeFile(fs, "/rf.nc", block_size=1000)
    assert rf.size == len(realistic_bytes)
    assert rf.read(10) == realistic_bytes[:10] and rf.requests == 1 and rf.bytes_fetched == 1000
    rf.seek(2500)
    assert rf.read(1000) == realistic_bytes[2500:3500] and rf.requests == 2
    assert rf.bytes_fetched == 3000  # blocks 2 and 3 fetched by one request
    rf.seek(-5, 2)
    assert rf.read() == realistic_bytes[-5:] and rf.read() == b""
    buf = bytearray(4)
    rf.seek(1)
    assert rf.readinto(buf) == 4 and bytes(buf) == realistic_bytes[1:5]
    assert rf.requests == 3  # block 0 was cached


def test_tiles_sharing_row_chunks_fetch_and_decode_them_once_with_a_chunk_cache(on_s3):
    """Two tiles side by side in row chunk 1: the second one is served from the cache."""
    from itslive_dask.io.ranged import ChunkCache

    proxy, index, expected = on_s3
    fs = proxy.filesystem()
    cache = ChunkCache(max_bytes=64 * 2**20)
    proxy.reset_stats()
    left = read_window_ranged(
        fs, KEY, index, VELOCITY, slice(700, 900), slice(100, 350), cache=cache
    )
    right = read_window_ranged(
        fs, KEY, index, VELOCITY, slice(700, 900), slice(350, 600), cache=cache
    )
    st = proxy.reset_stats()
    assert st.requests() == 4  # the left tile's 4 chunks; nothing for the right tile
    assert st.bytes_out() == sum(index[n].refs[1].size for n in VELOCITY)
    assert (cache.misses, cache.hits, len(cache)) == (4, 4, 4)
    assert cache.nbytes == 4 * 640 * 2016 * 2
    for name in VELOCITY:
        np.testing.assert_array_equal(
            np.concatenate([left[name], right[name]], axis=1), expected[name]
        )
    # a cache too small for one chunk keeps nothing and changes nothing
    tiny = ChunkCache(max_bytes=1000)
    got = read_window_ranged(fs, KEY, index, ["vx"], slice(700, 900), slice(100, 600), cache=tiny)
    np.testing.assert_array_equal(got["vx"], expected["vx"])
    assert len(tiny) == 0 and tiny.nbytes == 0
    # LRU eviction by bytes: room for two chunks
    lru = ChunkCache(max_bytes=2 * 640 * 2016 * 2)
    read_window_ranged(fs, KEY, index, ["vx", "vy", "v"], slice(700, 701), slice(0, 1), cache=lru)
    assert len(lru) == 2 and lru.nbytes <= lru.max_bytes


def test_builds_used_in_turn_in_one_process_keep_their_decoded_chunks(on_s3):
    """Two lazy cubes (two sessions) computed in turn in one process: each fetches a chunk
    once. The process's chunk cache used to hold one session at a time, so each cube's
    turn dropped the other's chunks and the third and fourth reads fetched them again."""
    from itslive_dask.granule.decode import decode
    from itslive_dask.io import remote

    proxy, index, expected = on_s3
    url = f"s3://{KEY}"
    opts = proxy.storage_options
    remote.CHUNK_CACHE.clear()
    readers = {s: remote.RangedReader(url, opts, session=s) for s in ("cube-a", "cube-b")}
    for reader in readers.values():
        reader.header(VELOCITY)  # light header and chunk index, once per session
    proxy.reset_stats()
    gets = []
    for session in ("cube-a", "cube-b", "cube-a", "cube-b"):
        reader = readers[session]
        info = reader.header(VELOCITY)
        got = reader.window(info, VELOCITY, slice(700, 900), slice(100, 600))
        gets.append(proxy.reset_stats().requests())
        for name in VELOCITY:  # h5py's values, decoded (fill values -> NaN)
            np.testing.assert_array_equal(got[name], decode(expected[name], info.spec(name)))
    assert gets == [4, 4, 0, 0]  # one GET per variable's row chunk, per session, once
    # a session never sees another's chunks (a new build re-reads a repaired object)
    assert remote.chunk_cache("cube-c").get((KEY, index["vx"].refs[1].offset)) is None
    assert remote.chunk_cache("cube-a").get((KEY, index["vx"].refs[1].offset)) is not None
    remote.CHUNK_CACHE.clear()


def test_zlib_fallback_decodes_the_same(monkeypatch, realistic_bytes):
    """Without the optional isal package the standard zlib inflates the chunks."""
    import zlib

    import itslive_dask.io.ranged as ranged

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/fallback.nc", realistic_bytes)
    with h5py.File(io.BytesIO(realistic_bytes), "r") as h5:
        index = ChunkIndex.from_h5(h5, VELOCITY)
        expected = {n: h5[n][630:650, 1000:1100] for n in VELOCITY}
    monkeypatch.setattr(ranged, "_inflate_module", zlib)
    got = read_window_ranged(
        fs, "/fallback.nc", index, VELOCITY, slice(630, 650), slice(1000, 1100)
    )
    for name in VELOCITY:
        np.testing.assert_array_equal(got[name], expected[name])
