"""build_catalog over the synthetic archive on the local S3 server, against the generator's table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from itslive_dask.discovery.api import search
from itslive_dask.discovery.catalog import build_catalog, load_catalog
from itslive_dask.errors import InvalidInputError
from itslive_dask.io.download import download_granules

EXACT = [
    "granule_id",
    "url",
    "https_url",
    "satellite_img1",
    "satellite_img2",
    "sensor",
    "epsg",
    "version",
]


@pytest.fixture(scope="module")
def built(synthetic_archive):
    calls = []
    table = build_catalog(
        synthetic_archive.url, storage_options=synthetic_archive.storage_options, max_workers=8,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    return table, calls


def test_builder_reproduces_the_generator_table(synthetic_archive, built):
    table, calls = built
    ref = synthetic_archive.table
    assert table.attrs["failures"] == []
    assert len(calls) == len(ref) and calls[-1] == (len(ref), len(ref))
    assert list(table["granule_id"]) == list(ref["granule_id"])  # same rows, same order
    for col in EXACT:
        assert list(table[col]) == list(ref[col]), col
    np.testing.assert_allclose(table["resolution"], ref["resolution"])
    # dates, separation and coverage come from the file headers: equal to the generator's
    for col in (
        "mid_date",
        "acquisition_date_img1",
        "acquisition_date_img2",
        "date_dt",
        "percent_valid",
    ):
        assert (table[col] == ref[col]).all(), col
    # footprints: the same box on the ground (outlines densified differently)
    for a, b in zip(table.geometry, ref.geometry, strict=True):
        assert a.symmetric_difference(b).area <= 1e-3 * b.area


def test_catalog_written_to_s3_reads_back(synthetic_archive, built, tmp_path):
    so = synthetic_archive.storage_options
    out = f"{synthetic_archive.url}/test-builder/granules.parquet"
    items = f"{synthetic_archive.url}/test-builder/items.json"
    table = build_catalog(synthetic_archive.url + "/velocity_image_pair", out, storage_options=so,
                          stac_items=items)  # fmt: skip
    assert len(table) == len(built[0])
    back = load_catalog(out, storage_options=so)
    pd.testing.assert_frame_equal(
        pd.DataFrame(back.drop(columns="geometry")), pd.DataFrame(table.drop(columns="geometry"))
    )
    from_items = load_catalog(items, storage_options=so)
    assert list(from_items["granule_id"]) == list(table["granule_id"])
    assert list(from_items["url"]) == list(table["url"])
    # searching the S3 catalog file equals searching the table
    region = synthetic_archive.region
    a = search(region, catalog=out, storage_options=so)
    b = search(region, catalog=table)
    assert len(a) and list(a["granule_id"]) == list(b["granule_id"])


def test_generator_stac_items_load_as_the_same_table(synthetic_archive):
    from itslive_dask.testing.synthetic import STAC_ITEMS

    items = load_catalog(
        f"{synthetic_archive.url}/{STAC_ITEMS}", storage_options=synthetic_archive.storage_options
    )
    ref = synthetic_archive.table
    assert list(items["granule_id"]) == list(ref["granule_id"])
    for col in (
        "url",
        "https_url",
        "epsg",
        "sensor",
        "version",
        "satellite_img1",
        "satellite_img2",
    ):
        assert list(items[col]) == list(ref[col]), col


def test_non_granules_are_reported_not_fatal(local_s3, synthetic_archive, tmp_path):
    bucket = local_s3.create_bucket("catalog-builder-test")
    fs = local_s3.filesystem()
    src = list(synthetic_archive.table["url"][:4])
    for url in src:
        fs.copy(url[len("s3://") :], f"catalog-builder-test/good/{url.rsplit('/', 1)[1]}")
    junk = "LC08_L1GT_232113_20201213_20201219_02_T2_X_LC08_L1GT_232113_20201229_20210308_02_T2_G0120V02_P073.nc"
    fs.pipe_file(f"catalog-builder-test/bad/{junk}", b"not a netcdf file at all")
    fs.pipe_file("catalog-builder-test/bad/readme.nc", b"\x89HDF\r\n\x1a\n truncated")
    fs.pipe_file("catalog-builder-test/notes.txt", b"ignored: not *.nc")
    table = build_catalog(bucket, storage_options=local_s3.storage_options)
    assert sorted(table["granule_id"]) == sorted(u.rsplit("/", 1)[1][:-3] for u in src)
    failures = table.attrs["failures"]
    assert [f["url"] for f in failures] == [f"{bucket}/bad/{junk}", f"{bucket}/bad/readme.nc"]
    assert all(f["error"] for f in failures)


def test_local_folder_and_glob(local_s3, synthetic_archive, tmp_path):
    urls = list(synthetic_archive.table["url"][:3])
    res = download_granules(
        urls, tmp_path / "granules", storage_options=local_s3.storage_options, progress=False
    )
    assert res.ok
    table = build_catalog(tmp_path / "granules", tmp_path / "catalog.parquet")
    assert sorted(table["url"]) == sorted(str(p) for p in res.paths)
    assert (table["https_url"] == "").all()
    assert list(load_catalog(tmp_path / "catalog.parquet")["granule_id"]) == list(
        table["granule_id"]
    )
    globbed = build_catalog(str(tmp_path / "granules" / "*.nc"))
    assert list(globbed["granule_id"]) == list(table["granule_id"])
    with pytest.raises(InvalidInputError, match=r"no such file or folder"):
        build_catalog(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"no \*\.nc"):
        build_catalog(tmp_path / "empty")
    assert shapely.get_coordinates(table.geometry.iloc[0]).shape[0] > 4
