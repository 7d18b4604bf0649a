"""The cube's grid mapping, written with pyproj alone, read back by the libraries users read
it with: rioxarray (``ds.rio.crs``), GDAL through rasterio (``spatial_ref``), pyproj from
``crs_wkt``; its CF parameters against rioxarray's own ``write_crs``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS

from itslive_dask.cube.graph import _write_crs
from itslive_dask.geo.grid import TargetGrid

#: The cube CRSs of ITS_LIVE regions: both polar stereographics, two UTM zones, and one
#: projection of another family.
EPSGS = (3031, 3413, 32633, 32606, 3857)


def _dataset(grid: TargetGrid) -> xr.Dataset:
    return xr.Dataset(
        {"vx": (("y", "x"), np.zeros(grid.shape, "float32"), {"grid_mapping": "mapping"})},
        coords={"x": grid.x, "y": grid.y},
    )


@pytest.mark.parametrize("epsg", EPSGS)
def test_the_grid_mapping_reads_back_as_its_crs_everywhere(epsg):
    import rasterio.crs
    import rioxarray  # noqa: F401

    grid = TargetGrid(epsg, 120.0, -1_000_020.0, 2_000_040.0, 4, 3)
    ds = _write_crs(_dataset(grid), grid)
    attrs = ds["mapping"].attrs
    assert ds["mapping"].dtype == np.int64 and ds["mapping"].ndim == 0
    assert ds.rio.crs.to_epsg() == epsg
    assert CRS.from_wkt(attrs["crs_wkt"]) == CRS.from_epsg(epsg)
    assert rasterio.crs.CRS.from_wkt(attrs["spatial_ref"]).to_epsg() == epsg  # GDAL
    assert attrs["spatial_epsg"] == epsg
    # centre-based, as in ITS_LIVE V2 granules; readers place the grid by its coordinates:
    # rioxarray's transform has the corner half a pixel out from the first centre
    assert attrs["GeoTransform"] == "-1000020.0 120.0 0.0 2000040.0 0.0 -120.0"
    assert grid.x[0] == -1_000_020.0 and grid.y[0] == 2_000_040.0
    t = ds.vx.rio.transform()
    assert (t.c, t.f, t.a, t.e) == (-1_000_080.0, 2_000_100.0, 120.0, -120.0)
    # every CF parameter rioxarray writes, with its value (the datum's name aside: rioxarray
    # derives it from GDAL's WKT1, pyproj from the EPSG database)
    reference = _dataset(grid).rio.write_crs(f"EPSG:{epsg}", grid_mapping_name="mapping")
    ref = reference["mapping"].attrs
    for key, value in ref.items():
        if key in ("crs_wkt", "spatial_ref", "horizontal_datum_name"):
            continue
        assert attrs[key] == pytest.approx(value) if isinstance(value, float) else value, key
    if attrs.get("grid_mapping_name") == "polar_stereographic":  # CF requires it
        assert attrs["latitude_of_projection_origin"] == (-90.0 if epsg == 3031 else 90.0)


def test_planning_and_the_template_import_no_rasterio():
    """``write_cube``'s driver builds the template without rioxarray: importing rasterio
    (GDAL, boto3) cost a quarter of a second of every process's first build."""
    code = textwrap.dedent(
        """
        import sys
        import shapely
        from itslive_dask.cube.plan import plan_cube
        from itslive_dask.geo.grid import TargetGrid
        from itslive_dask.store.template import template_dataset
        from itslive_dask.table import granule_table
        import pandas as pd
        from pyproj import Transformer
        grid = TargetGrid(3413, 120.0, -200_000.0, -2_000_000.0, 8, 8)
        lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(-199_600.0, -2_000_400.0)
        mid = pd.Timestamp("2020-01-01")
        row = {
            "granule_id": "g", "url": "/nowhere/g.nc", "mid_date": mid,
            "acquisition_date_img1": mid, "acquisition_date_img2": mid, "date_dt": 10.0,
            "satellite_img1": "LC08", "satellite_img2": "LC08", "sensor": "landsat",
            "epsg": 3413, "percent_valid": 50.0, "version": 2, "resolution": 120.0,
            "geometry": shapely.box(lon - 1, lat - 1, lon + 1, lat + 1),
        }
        plan = plan_cube(granule_table([row]), grid, shapely.box(*grid.bounds), chunks=(1, 8, 8))
        ds = template_dataset(plan)
        assert ds.sizes["mid_date"] == 1 and ds["mapping"].attrs["spatial_epsg"] == 3413
        print(sorted(m for m in ("rasterio", "rioxarray", "boto3") if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
