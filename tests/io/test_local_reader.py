"""Local granules go through the range reader's chunk decoder (:class:`LocalReader`).

* Tiles that share a chunk decode it once per process (h5py's 1 MiB chunk cache holds none
  of a realistic granule's 2.6 MB row chunks, so the h5py reader decoded each chunk once per
  tile), and the cube is bit for bit the cube of the same granules read from the local S3
  server (whose values ``tests/cube/test_engine_synthetic.py`` checks against the analytic
  field).
* A variable the decoder cannot read (here LZF-compressed) falls back to h5py in place.
"""

from __future__ import annotations

import collections
import shutil

import dask
import h5py
import numpy as np
import pytest

from itslive_dask.cube.lazy import make_plan, open_cube
from itslive_dask.io import ranged
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.io.hdf5 import H5Reader
from itslive_dask.io.reader import default_reader
from itslive_dask.io.remote import LocalReader

VARS = ("vx", "vy", "v", "v_error")
CHUNKS = (8, 32, 32)


@pytest.fixture(scope="module")
def local_copies(synthetic_archive, local_s3, tmp_path_factory):
    """12 granules of the archive (V1 and V2, several CRSs) copied to local files."""
    fs = local_s3.filesystem()
    folder = tmp_path_factory.mktemp("local-granules")
    table = synthetic_archive.table.iloc[:12].copy().reset_index(drop=True)
    paths = []
    for url in table.url:
        dst = folder / url.rsplit("/", 1)[1]
        fs.get_file(url.split("://", 1)[1], str(dst))
        paths.append(str(dst))
    table["url"] = paths
    return synthetic_archive.table.iloc[:12].reset_index(drop=True), table


def test_local_tiles_decode_each_chunk_once_and_match_the_remote_cube(
    local_copies, synthetic_archive, monkeypatch
):
    remote, local = local_copies
    plan = make_plan(local, synthetic_archive.region, chunks=CHUNKS)
    tiles = collections.Counter(r.url for b in plan.block_ids() for _, r in plan.block_refs(b))
    assert max(tiles.values()) >= 4  # granules shared by several tiles: the case that matters

    decoded = collections.Counter()
    put = ranged.ChunkCache.put

    def counting_put(self, key, arr):
        decoded[key] += 1
        return put(self, key, arr)

    monkeypatch.setattr(ranged.ChunkCache, "put", counting_put)
    with dask.config.set(scheduler="synchronous"):  # in this process: the patch applies
        got = open_cube(local, synthetic_archive.region, chunks=CHUNKS).compute()
    # keys: (the cube's session, path, byte offset)
    assert sum(decoded.values()) > 0 and {k[1] for k in decoded} <= set(local.url)
    assert max(decoded.values()) == 1, decoded.most_common(3)

    with dask.config.set(scheduler="synchronous"):
        want = open_cube(
            remote, synthetic_archive.region, storage_options=synthetic_archive.storage_options,
            chunks=CHUNKS,
        ).compute()  # fmt: skip
    for v in VARS:
        np.testing.assert_array_equal(got[v].values, want[v].values)
    assert np.isfinite(got.vx.values).sum() > 10_000


def _recompress_lzf(src, dst, name):
    """A copy of granule ``src`` whose variable ``name`` is stored with LZF (an HDF5 filter
    the range reader does not decode), same values, attributes and chunks."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        old = h5[name]
        data, attrs, chunks = old[()], dict(old.attrs), old.chunks
        fill = old.fillvalue
        for dim in old.dims:  # detach the dimension scales first (netCDF4 keeps references)
            for scale in list(dim.values()):
                dim.detach_scale(scale)
        del h5[name]
        new = h5.create_dataset(name, data=data, chunks=chunks, compression="lzf", fillvalue=fill)
        for k, v in attrs.items():
            if k not in ("DIMENSION_LIST", "REFERENCE_LIST"):
                new.attrs[k] = v


def test_a_layout_the_decoder_cannot_read_falls_back_to_h5py(local_copies, tmp_path):
    _, local = local_copies
    src = next(u for u in local.url if "_G0120V02_" in u or "V02" in u)
    lzf = tmp_path / "lzf.nc"
    _recompress_lzf(src, lzf, "vx")
    with pytest.raises(ranged.UnsupportedLayout, match="filter 32000"):
        with h5py.File(lzf, "r") as h5:
            ranged.ChunkIndex.from_h5(h5, ["vx"])

    with H5Reader(src) as ref:
        info = ref.header(list(VARS))
        want = ref.window(info, list(VARS), slice(0, info.shape[0]), slice(0, info.shape[1]))
    reader = default_reader(str(lzf), {}, RetryPolicy(), "s")
    assert isinstance(reader, LocalReader)
    with reader:
        info2 = reader.header(list(VARS))
        got = reader.window(info2, list(VARS), slice(0, info.shape[0]), slice(0, info.shape[1]))
    for v in VARS:
        np.testing.assert_array_equal(got[v], want[v])
    assert np.isfinite(got["vx"]).any()


def test_a_local_file_broken_after_planning_is_a_granule_error(local_copies, tmp_path):
    """The header of a local granule is read through HDF5's own driver: a file truncated,
    emptied or replaced after planning is a :class:`GranuleError` naming it and what is
    wrong (a ledger entry in a build), read once (a bad file is not retried)."""
    from itslive_dask.errors import GranuleError

    _, local = local_copies
    good = open(local.url.iloc[0], "rb").read()
    cases = {
        "truncated.nc": (good[: len(good) // 3], "truncated"),
        "empty.nc": (b"", r"empty file \(0 bytes\): not a NetCDF4/HDF5 file"),
        "text.nc": (b"<html>403 Forbidden</html>\n" * 20, "not a NetCDF4/HDF5 file"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        reader = LocalReader(
            str(path), policy=RetryPolicy(retries=3, backoff=0.5), session="broken"
        )
        with pytest.raises(GranuleError, match=reason) as err:
            reader.header(VARS)
        assert name in str(err.value) and err.value.attempts == 1
    with pytest.raises(GranuleError, match="file not found") as err:
        LocalReader(str(tmp_path / "missing.nc"), session="broken").header(VARS)
    assert "missing.nc" in str(err.value)
    with pytest.raises(GranuleError, match="is a directory"):
        LocalReader(str(tmp_path), session="broken").header(VARS)
