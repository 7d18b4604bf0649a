"""The STAC item of a built cube: read back with pystac, validated offline, through the CLI.

Schemas offline: pystac ships the STAC 1.1.0 core (item) and GeoJSON schemas, and validates
the core against them without a network. No package on the index ships the datacube or
projection extension schemas (pystac's extension modules are code only), so the extension
fields are read back through pystac's ``DatacubeExtension``/``ProjectionExtension`` and
checked against the cube's known values here instead of against their schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from pyproj import Transformer

from itslive_dask.store.stac_item import (
    DATACUBE_SCHEMA,
    PROJECTION_SCHEMA,
    ZARR_MEDIA_TYPE,
    cube_stac_item,
)
from itslive_dask.store.write import write_cube

pystac = pytest.importorskip("pystac")


@pytest.fixture(scope="module")
def cube(tmp_path_factory, synthetic_archive, dask_client):
    arch = synthetic_archive
    t = arch.table
    inside = t[t.intersects(arch.region)].reset_index(drop=True).iloc[:6]
    store = str(tmp_path_factory.mktemp("stac") / "svalbard.zarr")
    write_cube(
        inside,
        store,
        arch.region,
        storage_options=arch.storage_options,
        chunks=(4, 96, 96),
        client=dask_client,
    )
    return store, inside


def _core_valid(d: dict) -> None:
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    JsonSchemaSTACValidator().validate_core(
        d, pystac.STACObjectType.ITEM, d["stac_version"], "item.json"
    )


def test_item_reads_back_and_validates(cube):
    from pystac.extensions.datacube import DatacubeExtension, DimensionType, VariableType
    from pystac.extensions.projection import ProjectionExtension

    store, granules = cube
    d = cube_stac_item(store)
    _core_valid(d)
    # the validator does reject a broken item (offline too)
    bad = json.loads(json.dumps(d))
    bad["bbox"] = "everywhere"
    with pytest.raises(pystac.errors.STACValidationError):
        _core_valid(bad)

    item = pystac.Item.from_dict(d)
    assert item.id == "svalbard"
    assert set(item.stac_extensions) == {DATACUBE_SCHEMA, PROJECTION_SCHEMA}
    ds = xr.open_zarr(store)
    # time range: first acquisition .. last acquisition of the granules in the cube
    assert pd.Timestamp(item.common_metadata.start_datetime).tz_localize(None) == pd.Timestamp(
        granules["acquisition_date_img1"].min()
    )
    assert pd.Timestamp(item.common_metadata.end_datetime).tz_localize(None) == pd.Timestamp(
        granules["acquisition_date_img2"].max()
    )

    dc = DatacubeExtension.ext(item)
    assert dc.dimensions["mid_date"].dim_type == DimensionType.TEMPORAL
    x, y = dc.dimensions["x"], dc.dimensions["y"]
    assert x.reference_system == 3413 and x.step == 120.0 and y.step == -120.0
    # extent = pixel edges: centres +- 60 m
    assert x.extent == [float(ds.x.min()) - 60, float(ds.x.max()) + 60]
    assert y.extent == [float(ds.y.min()) - 60, float(ds.y.max()) + 60]
    for v in ("vx", "vy", "v", "v_error"):
        var = dc.variables[v]
        assert var.var_type == VariableType.DATA and var.dimensions == ["mid_date", "y", "x"]
        assert var.unit == "meter/year"
    assert dc.variables["granule_url"].var_type == VariableType.AUXILIARY

    proj = ProjectionExtension.ext(item)
    assert proj.code == "EPSG:3413"
    assert proj.shape == [ds.sizes["y"], ds.sizes["x"]]
    # the transform maps pixel (col 0.5, row 0.5) to the first pixel centre
    a, b, c, dd, e, f = proj.transform[:6]
    assert (a * 0.5 + b * 0.5 + c, dd * 0.5 + e * 0.5 + f) == (float(ds.x[0]), float(ds.y[0]))

    # geometry: lon/lat outline that contains every pixel centre of the cube
    geom = shapely.geometry.shape(item.geometry)
    assert geom.is_valid
    X, Y = np.meshgrid(ds.x.values[[0, -1]], ds.y.values[[0, -1]])
    lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(X.ravel(), Y.ravel())
    assert shapely.contains_xy(geom, lon, lat).all()
    assert item.bbox == list(geom.bounds)

    asset = item.assets["zarr"]
    assert asset.media_type == ZARR_MEDIA_TYPE == pystac.MediaType.ZARR
    assert "data" in asset.roles
    assert xr.open_zarr(asset.href).sizes == ds.sizes  # the asset opens as the cube


def test_cli_info_writes_the_item(cube, tmp_path):
    store, _ = cube
    out = tmp_path / "item.json"
    res = subprocess.run(
        [sys.executable, "-m", "itslive_dask.cli.app", "info", store, "--stac-item", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    item = pystac.Item.from_file(str(out))
    assert item.properties["proj:code"] == "EPSG:3413"
    _core_valid(item.to_dict())
