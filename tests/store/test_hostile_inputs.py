"""Issue 10, hostile input: a folder of broken granules builds, and each broken file ends as
a ledger entry (or, read alone with ``open_granule``, a clear GranuleError); no hang (each
build here is bounded by the test's timeout) and bounded worker memory (stated limit:
peak worker RSS under 1.5 GiB for this corpus, whose worst file claims 10^10 pixels).
"""

from __future__ import annotations

import shutil
import time

import h5py
import numpy as np
import pytest
import xarray as xr

from itslive_dask import open_granule, read_ledger, write_cube
from itslive_dask.errors import GranuleError

CHUNKS = (8, 96, 96)
PEAK_RSS_LIMIT = int(1.5 * 2**30)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """3 good V2 granules inside the region, in a local folder."""
    from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive

    root = tmp_path_factory.mktemp("good")
    config = SyntheticConfig(
        n_granules=3, seed=8, v1_fraction=0.0, outside_fraction=0.0, granule_pixels=(120, 160)
    )
    table = generate_archive(str(root), config)
    return sorted(root.rglob("*.nc")), table, config.region_obj.polygon


def _variant(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h:
        edit(h)


def _make_corpus(folder, good_files):
    """Write the hostile files; returns {file name: what it is}."""
    g = good_files[0]
    data = g.read_bytes()
    stem = g.name[:-3]
    out = {}

    def add(name, what):
        out[name] = what
        return folder / name

    add("zero.nc", "zero bytes").write_bytes(b"")
    add("truncated.nc", "truncated").write_bytes(data[: len(data) // 2])
    add("text.nc", "text").write_text("<Error><Code>AccessDenied</Code></Error>\n" * 50)
    with h5py.File(add("plain_hdf5.nc", "HDF5, not ITS_LIVE"), "w") as h:
        h["data"] = np.arange(10)
    gm = None
    with h5py.File(g, "r") as h:
        gm = next(n for n in h if "spatial_epsg" in h[n].attrs)

    def no_crs(h):
        for a in ("spatial_epsg", "crs_wkt", "spatial_ref"):
            if a in h[gm].attrs:
                del h[gm].attrs[a]

    _variant(g, add(f"{stem}_nocrs.nc", "missing CRS"), no_crs)
    _variant(
        g,
        add(f"{stem}_wrongcrs.nc", "wrong CRS (geographic)"),
        lambda h: h[gm].attrs.modify("spatial_epsg", 4326),
    )
    _variant(
        g,
        add(f"{stem}_nanx.nc", "NaN coordinates"),
        lambda h: h["x"].__setitem__(slice(None), np.nan),
    )

    def shuffled(h):
        x = h["x"][...]
        h["x"][...] = x[np.random.default_rng(0).permutation(x.size)]

    _variant(g, add(f"{stem}_shuffledx.nc", "non-monotonic coordinates"), shuffled)

    def huge(h):  # an axis claiming 10^5 x 10^5 pixels (10^10), with no data written
        for name in ("vx", "vy", "v", "v_error", "x", "y"):
            if name in h:
                del h[name]
        h.create_dataset("x", data=np.arange(100_000, dtype="f8") * 120.0)
        h.create_dataset("y", data=-np.arange(100_000, dtype="f8") * 120.0)
        for name in ("vx", "vy", "v"):
            h.create_dataset(
                name, shape=(100_000, 100_000), dtype="i2", chunks=(1000, 1000), fillvalue=-32767
            )

    _variant(g, add(f"{stem}_huge.nc", "claims 10^10 pixels"), huge)
    odd = folder / "ünïcødé ✓ ..%2F..%2Fetc"
    odd.mkdir()
    shutil.copy(good_files[1], odd / good_files[1].name)  # a good granule under an odd name
    return out


def test_hostile_folder_builds_and_names_every_bad_file(tmp_path, good, dask_client):
    good_files, _table, region = good
    folder = tmp_path / "dl"
    folder.mkdir()
    for f in good_files[2:]:
        shutil.copy(f, folder / f.name)
    corpus = _make_corpus(folder, good_files)
    store = tmp_path / "cube.zarr"
    t0 = time.perf_counter()
    res = write_cube(str(folder), str(store), region, chunks=CHUNKS, client=dask_client)
    elapsed = time.perf_counter() - t0
    ledger = read_ledger(str(store))
    failed = {f["url"].rsplit("/", 1)[-1]: f for f in ledger["failed"]}
    skipped = {s["granule_id"]: s["reason"] for s in ledger["skipped"]}
    z = xr.open_zarr(store)
    built = set(z.granule_id.values)
    expected_good = {f.name[:-3] for f in good_files[1:]}
    assert expected_good <= built  # the good granules, the one under an odd folder name too
    for name, what in corpus.items():
        gid = name[:-3]
        # a ledger entry: failed, or skipped (e.g. the huge file's footprint misses the region)
        assert name in failed or gid in {f["granule_id"] for f in res.failed} or gid in skipped, (
            name,
            what,
        )
        if gid in built:  # a file whose header reads but whose data cannot be used
            assert z.granule_status.values[list(z.granule_id.values).index(gid)] == 1, name
    assert res.peak_worker_rss < PEAK_RSS_LIMIT
    print(
        f"\nhostile corpus: {len(corpus)} bad files, all in the ledger; {elapsed:.1f} s; peak worker RSS {res.peak_worker_rss / 2**20:.0f} MiB"
    )
    for name in corpus:  # read alone: a clear GranuleError naming the file
        with pytest.raises(GranuleError) as err:
            open_granule(str(folder / name))
        assert name in str(err.value)
