"""A cold header read sends no HEAD: the object's size comes from its first block.

Truth: ``os.path.getsize`` / the bytes written, for HDF5 files of superblock versions 0 and 2
written here with h5py and for the real granules; request counts from the counting proxy in
front of the local S3 server. An object shorter than its superblock says is reported as
truncated at once (not retried as a cut connection), and an empty object as a bad file.
"""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
from realdata import V1, V2, needs_real

from itslive_dask.errors import GranuleError
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.io.ranged import RangeFile, hdf5_end_of_file, open_header
from itslive_dask.io.remote import HEADER_CACHE, RangedReader
from itslive_dask.testing.s3proxy import S3Proxy
from itslive_dask.testing.synthetic import SyntheticConfig, generate_granule, make_granule_specs

BUCKET = "object-size"


def _h5_bytes(libver: str) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w", libver=libver) as h5:
        h5.create_dataset(
            "vx", data=np.arange(50_000, dtype="i2").reshape(200, 250), chunks=(50, 250)
        )
    return buf.getvalue()


@pytest.mark.parametrize("libver", ["earliest", "latest"])  # superblock version 0 and 3
def test_end_of_file_from_the_superblock(libver):
    data = _h5_bytes(libver)
    assert data[8] == (0 if libver == "earliest" else 3)
    assert hdf5_end_of_file(data[:4096]) == len(data)


@needs_real
@pytest.mark.parametrize("path", [V1, V2])
def test_end_of_file_of_the_real_granules(path):
    assert hdf5_end_of_file(path.read_bytes()[:1024]) == path.stat().st_size


def test_no_superblock_no_size():
    assert hdf5_end_of_file(b"<Error><Code>AccessDenied</Code></Error>" * 3) is None
    assert hdf5_end_of_file(b"\x89HDF\r\n\x1a\n\x02") is None  # too short to say
    assert hdf5_end_of_file(b"") is None


@pytest.fixture(scope="module")
def granule() -> bytes:
    spec = make_granule_specs(SyntheticConfig(n_granules=1, seed=3, v1_fraction=0.0))[0]
    data = generate_granule(spec)
    assert len(data) * 2 // 3 > 65536  # even truncated, bigger than the first block
    return data


@pytest.fixture(scope="module")
def bucket(local_s3, granule):
    local_s3.create_bucket(BUCKET)
    fs = local_s3.filesystem()
    fs.pipe_file(f"{BUCKET}/good.nc", granule)
    fs.pipe_file(f"{BUCKET}/truncated.nc", granule[: len(granule) * 2 // 3])
    fs.pipe_file(f"{BUCKET}/empty.nc", b"")
    fs.pipe_file(f"{BUCKET}/tiny.nc", granule[:100])
    return local_s3


def test_a_cold_header_sends_no_head(bucket, granule):
    with S3Proxy(bucket) as proxy:
        with open_header(proxy.filesystem(), f"{BUCKET}/good.nc") as h5:
            rf = h5.range_file
            assert rf.size == len(granule) and rf.size_from_superblock
            assert sorted(h5) == sorted(h5py.File(io.BytesIO(granule), "r"))
        st = proxy.reset_stats()
    assert st.requests(method="HEAD") == 0
    assert st.requests() == st.requests(method="GET", ranged=True) == rf.requests


def _header(local_s3, key):
    HEADER_CACHE.clear()
    reader = RangedReader(
        f"s3://{BUCKET}/{key}", local_s3.storage_options, RetryPolicy(retries=3, backoff=0.0)
    )
    return reader.header(["vx", "vy"])


def test_a_truncated_object_is_named_truncated_and_not_retried(bucket, granule):
    with pytest.raises(GranuleError, match="truncated") as err:
        _header(bucket, "truncated.nc")
    assert err.value.attempts == 1
    assert f"{len(granule) * 2 // 3} bytes" in str(err.value)


@pytest.mark.parametrize("key", ["empty.nc", "tiny.nc"])
def test_empty_and_tiny_objects_are_bad_files_not_failed_reads(bucket, key):
    with pytest.raises(GranuleError) as err:
        _header(bucket, key)
    assert err.value.attempts == 1, err.value


def test_a_short_first_block_of_a_big_object_is_a_cut_not_a_small_file(granule):
    """A first read cut short (a connection reset mid-body) must not be taken for the
    whole object: the size is asked for, and the short read is transient."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/cut.nc", granule)
    real = fs.cat_file

    def cut_once(path, start=None, end=None, **kw):
        fs.cat_file = real
        return real(path, start=start, end=end, **kw)[:1000]

    fs.cat_file = cut_once
    with pytest.raises(OSError, match="short read"):
        RangeFile(fs, "/cut.nc")
    assert RangeFile(fs, "/cut.nc").size == len(granule)
