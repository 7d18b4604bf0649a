"""The synthetic archive on the local S3 server, read back through s3:// like the real one.

Truth: :func:`itslive_dask.testing.synthetic.truth_velocity` at every valid pixel centre of every
granule at the granule's mid_date from the table; the files are opened by the package's own
granule reader (``open_granule``/``read_granule_info``) over HTTP from the moto server.
"""

from __future__ import annotations

import io
import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import shapely

from itslive_dask.granule.names import parse_granule_name
from itslive_dask.io.dataset import open_granule
from itslive_dask.io.hdf5 import read_granule_info
from itslive_dask.table import COLUMNS, validate_granule_table
from itslive_dask.testing.synthetic import (
    CATALOG_PARQUET,
    STAC_COLLECTION,
    STAC_ITEMS,
    SyntheticConfig,
    generate_archive,
    read_catalog,
    truth_velocity,
)

QUANT = 0.5 + 1e-6  # int16 rounding of each stored component (noise_std = 0)
KEY_RE = re.compile(
    r"velocity_image_pair/(landsatOLI|sentinel1|sentinel2)/v0([12])/N70E010/(?P<name>[^/]+)\.nc"
)


def _key(url: str) -> str:
    assert url.startswith("s3://its-live-data/")
    return url[len("s3://its-live-data/") :]


def test_archive_mix_and_layout(synthetic_archive):
    t = synthetic_archive.table
    assert len(t) == synthetic_archive.config.n_granules == len(synthetic_archive.specs)
    epsgs = set(t["epsg"])
    assert {32633, 32634, 3413} <= epsgs
    assert set(t["version"]) == {1, 2} and set(t["sensor"]) == {"landsat", "sentinel1", "sentinel2"}
    assert set(t.loc[t["version"] == 1, "resolution"]) == {240.0}
    inside = t.geometry.intersects(synthetic_archive.region)
    assert inside.mean() > 0.85 and (~inside).sum() >= 1  # most overlap the region, a few do not
    for row in t.itertuples():
        m = KEY_RE.fullmatch(_key(row.url))
        assert m and m["name"] == row.granule_id
        folder = {"landsat": "landsatOLI", "sentinel1": "sentinel1", "sentinel2": "sentinel2"}[
            row.sensor
        ]
        assert m[1] == folder and int(m[2]) == row.version
        assert row.https_url == f"https://its-live-data.s3.amazonaws.com/{_key(row.url)}"
        assert parse_granule_name(row.url).percent_valid == row.percent_valid


def test_every_granule_read_through_s3_reproduces_the_truth(synthetic_archive):
    so = synthetic_archive.storage_options
    checked = 0
    for row in synthetic_archive.table.itertuples():
        g = open_granule(row.url, storage_options=so)
        assert g.rio.crs.to_epsg() == row.epsg
        x, y = g.x.values, g.y.values
        # alignment of production grids
        mod = (52.5, 67.5) if row.version == 2 else (112.5, 127.5)
        assert np.all(np.mod(x, row.resolution) == mod[0]) and np.all(
            np.mod(y, row.resolution) == mod[1]
        )
        tvx, tvy = truth_velocity(x[None, :], y[:, None], int(row.epsg), row.mid_date)
        vx, vy, v = g.vx.values, g.vy.values, g.v.values
        ok = np.isfinite(vx)
        assert np.array_equal(ok, np.isfinite(vy)) and np.array_equal(ok, np.isfinite(v))
        assert ok.sum() * 100 // ok.size == row.percent_valid
        if ok.any():
            assert np.abs(vx[ok] - tvx[ok]).max() <= QUANT, row.granule_id
            assert np.abs(vy[ok] - tvy[ok]).max() <= QUANT, row.granule_id
            assert np.abs(v[ok] - np.hypot(tvx, tvy)[ok]).max() <= 1.0, row.granule_id
        if row.version == 2:
            assert (g.v_error.values[ok] > 0).all()
        else:
            assert np.isnan(g.v_error.values).all()
        checked += int(ok.sum())
    assert checked > 1_000_000


def test_granule_headers_agree_with_the_table(synthetic_archive):
    """The package's header reader and the generator's table agree (3 granules per sensor/version/CRS)."""
    so = synthetic_archive.storage_options
    t = synthetic_archive.table
    sample = t.groupby(["sensor", "version", "epsg"], group_keys=False).head(3)
    assert len(sample) >= 20
    for row in sample.itertuples():
        rec = read_granule_info(row.url, storage_options=so).to_record(row.url)
        for col in (
            "granule_id",
            "mid_date",
            "acquisition_date_img1",
            "acquisition_date_img2",
            "satellite_img1",
            "satellite_img2",
            "sensor",
            "epsg",
            "percent_valid",
            "version",
            "resolution",
        ):
            assert rec[col] == getattr(row, col), (col, row.granule_id)
        assert rec["date_dt"] == pytest.approx(row.date_dt, abs=1e-9)
        inter = rec["geometry"].intersection(row.geometry).area
        assert inter / rec["geometry"].union(row.geometry).area > 0.999


def test_catalog_parquet_round_trips_through_geopandas(synthetic_archive):
    so = synthetic_archive.storage_options
    url = f"{synthetic_archive.url}/{CATALOG_PARQUET}"
    back = gpd.read_parquet(url, storage_options=so)
    assert back.crs.to_epsg() == 4326
    validated = validate_granule_table(back)
    t = synthetic_archive.table
    pd.testing.assert_frame_equal(
        pd.DataFrame(validated[list(COLUMNS)]), pd.DataFrame(t[list(COLUMNS)]), check_dtype=True
    )
    assert validated.geometry.geom_equals_exact(t.geometry, 1e-12).all()
    again = read_catalog(synthetic_archive.url, storage_options=so)
    assert list(again["granule_id"]) == list(t["granule_id"])


def test_stac_items_have_the_public_collection_fields(synthetic_archive, local_s3):
    fs = local_s3.filesystem()
    fc = json.loads(fs.cat_file(f"its-live-data/{STAC_ITEMS}"))
    assert fc["type"] == "FeatureCollection"
    t = synthetic_archive.table.set_index("granule_id")
    assert sorted(f["id"] for f in fc["features"]) == sorted(t.index)
    for feat in fc["features"]:
        item = pystac.Item.from_dict(feat)
        row = t.loc[item.id]
        p = item.properties
        assert item.collection_id == "itslive-granules"
        assert pd.Timestamp(p["mid_datetime"]).tz_localize(None) == row.mid_date
        assert pd.Timestamp(item.datetime).tz_localize(None) == row.mid_date
        assert pd.Timestamp(p["start_datetime"]).tz_localize(None) == row.acquisition_date_img1
        assert pd.Timestamp(p["end_datetime"]).tz_localize(None) == row.acquisition_date_img2
        assert p["percent_valid_pixels"] == row.percent_valid
        assert p["proj:code"] == f"EPSG:{row.epsg}" and p["version"] == f"{row.version:03d}"
        assert p["platform"] == row.satellite_img1 and p["date_dt"] == round(row.date_dt)
        assert p["scene_1_id"] + "_X_" + p["scene_2_id"] in item.id
        assert shapely.Point(p["longitude"], p["latitude"]).within(row.geometry)
        asset = item.assets["data"]
        assert asset.href == row.https_url and asset.media_type == "application/netcdf"
        assert asset.extra_fields["alternate"]["s3"]["href"] == row.url
        assert (
            shapely.hausdorff_distance(shapely.geometry.shape(feat["geometry"]), row.geometry)
            < 2e-4
        )
    coll = json.loads(fs.cat_file(f"its-live-data/{STAC_COLLECTION}"))
    assert coll["id"] == "itslive-granules" and coll["type"] == "Collection"


def test_generation_into_a_prefix_is_parallel_and_deterministic(local_s3):
    """Same config twice -> the same table and byte-identical granule data arrays."""
    local_s3.create_bucket("synthetic-determinism")
    cfg = SyntheticConfig(n_granules=6, seed=42, v1_fraction=0.3)
    so = local_s3.storage_options
    a = generate_archive("s3://synthetic-determinism/a", cfg, storage_options=so, max_workers=3)
    b = generate_archive("s3://synthetic-determinism/b", cfg, storage_options=so, max_workers=1)
    assert list(a["granule_id"]) == list(b["granule_id"])
    assert all(u.startswith("s3://synthetic-determinism/a/velocity_image_pair/") for u in a["url"])
    assert all(
        u.startswith("https://synthetic-determinism.s3.amazonaws.com/a/velocity_image_pair/")
        for u in a["https_url"]
    )
    import h5py

    fs = local_s3.filesystem()
    for ua, ub in zip(a["url"], b["url"], strict=True):
        fa = h5py.File(io.BytesIO(fs.cat_file(ua)), "r")
        fb = h5py.File(io.BytesIO(fs.cat_file(ub)), "r")
        for name in ("vx", "vy", "v", "x", "y"):
            assert fa[name][()].tobytes() == fb[name][()].tobytes()


def test_process_pool_generation_matches_threads(local_s3, tmp_path):
    """processes=True (spawned workers writing to S3 themselves) gives the same archive."""
    local_s3.create_bucket("synthetic-processes")
    cfg = SyntheticConfig(n_granules=3, seed=8, v1_fraction=0.3)
    so = local_s3.storage_options
    a = generate_archive(
        "s3://synthetic-processes", cfg, storage_options=so, processes=True, max_workers=1
    )
    b = generate_archive(tmp_path, cfg)
    assert list(a["granule_id"]) == list(b["granule_id"])
    import h5py

    fs = local_s3.filesystem()
    for ua, ub in zip(a["url"], b["url"], strict=True):
        fa = h5py.File(io.BytesIO(fs.cat_file(ua)), "r")
        fb = h5py.File(ub, "r")
        assert fa["vx"][()].tobytes() == fb["vx"][()].tobytes()


def test_public_bucket_reads_anonymously(synthetic_archive, local_s3):
    row = synthetic_archive.table.iloc[0]
    anon = {"anon": True, "endpoint_url": local_s3.endpoint_url}
    g = open_granule(row.url, storage_options=anon)
    assert g.sizes["x"] > 0 and g.attrs["granule_id"] == row.granule_id


def test_missing_bucket_is_an_input_error(local_s3):
    from itslive_dask.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="does not exist"):
        generate_archive(
            "s3://no-such-bucket-here",
            SyntheticConfig(n_granules=1),
            storage_options=local_s3.storage_options,
        )
