"""The engine on the two real ITS_LIVE granules in shared/data/real."""

from __future__ import annotations

import shutil

import dask
import h5py
import numpy as np
import pytest
from realdata import V1, V2

from itslive_dask.cube.lazy import make_plan, open_cube

PIG = {
    "type": "Polygon",
    "coordinates": [
        [
            [-101.155511, -74.738709],
            [-99.117207, -75.087959],
            [-99.879774, -75.46007],
            [-102.42516, -74.925034],
            [-101.155511, -74.738709],
        ]
    ],
}

pytestmark = pytest.mark.skipif(not V1.exists(), reason="shared/data/real not present")


def _raw(path, name, fill=-32767):
    with h5py.File(path, "r", locking=False) as h:
        a = h[name][:].astype("float32")
        x, y = h["x"][:], h["y"][:]
    a[a == fill] = np.nan
    return a, x, y


@pytest.mark.parametrize("resolution", [240, 120])
def test_v1_values_equal_file_at_colocated_pixels(resolution):
    cube = open_cube([str(V1)], PIG, resolution=resolution, chunks=(1, 200, 150))
    with dask.config.set(scheduler="synchronous"):
        c = cube.compute()
    assert c.sizes["mid_date"] == 1 and c.rio.crs.to_epsg() == 3031
    assert np.allclose(np.mod(c.x.values, 120), 52.5) and np.allclose(
        np.diff(c.x.values), resolution
    )
    X, Y = np.meshgrid(c.x.values, c.y.values)
    for name in ("vx", "vy", "v"):
        raw, x, y = _raw(V1, name)
        j = np.floor((X - x[0]) / 240 + 0.5).astype(int)
        i = np.floor((Y - y[0]) / -240 + 0.5).astype(int)
        got = c[name].values[0]
        ok = np.isfinite(got)
        assert ok.sum() > 10_000
        # every valid cube pixel carries the value of the file pixel that contains its centre
        assert np.array_equal(got[ok], raw[i[ok], j[ok]]), name
    assert np.isnan(c.v_error.values).all()  # V1 has no v_error
    assert str(c.acquisition_date_img1.values[0])[:10] == "2012-11-18"
    assert float(c.date_dt.values[0]) == 14.0 and int(c.version.values[0]) == 1


def test_folder_input_like_load_cube_and_empty_v2(tmp_path):
    for f in (V1, V2):
        shutil.copy(f, tmp_path / f.name)
    plan = make_plan(str(tmp_path), PIG)
    # the V2 granule is far from Pine Island Glacier: dropped with a reason, not read
    assert list(plan.dropped["granule_id"]) == [V2.stem]
    assert [r.granule_id for r in plan.refs] == [V1.stem]
    # the all-fill V2 granule on its own region gives an all-NaN layer with its metadata
    cube = open_cube(
        str(tmp_path / "*.nc"), bbox=(-130.0, -82.0, -127.0, -81.0), chunks=(2, 512, 512)
    )
    with dask.config.set(scheduler="synchronous"):
        c = cube.compute()
    assert V2.stem in set(c.granule_id.values)
    k = list(c.granule_id.values).index(V2.stem)
    assert np.isnan(c.v.values[k]).all()
    assert str(c.acquisition_date_img1.values[k])[:10] == "1984-12-06"


def test_table_rows_without_footprint_get_their_header_read():
    """Legacy-API rows (name-derived, no footprint/EPSG) are completed from the file header."""
    from itslive_dask.io.hdf5 import read_granule_info
    from itslive_dask.table import granule_table

    rec = read_granule_info(str(V1)).to_record(str(V1))
    rec.update(geometry=None, epsg=0)
    plan = make_plan(granule_table([rec]), PIG, resolution=240)
    assert [r.epsg for r in plan.refs] == [3031]
    assert plan.blocks  # the footprint from the header touches the region
