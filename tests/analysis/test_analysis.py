"""Analysis functions against values computed by hand on small handmade cubes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from pyproj import Transformer

from itslive_dask.analysis import (
    cube_crs,
    describe_cube,
    layer_counts,
    monthly_mean,
    point_timeseries,
    yearly_mean,
)
from itslive_dask.errors import InvalidInputError

NAN = np.nan
# EPSG:3413 grid over west Greenland (about 69 N), 120 m pixels, production-grid anchor
X = np.array([-200_000 + 52.5, -200_000 + 172.5, -200_000 + 292.5])
Y = np.array([-2_200_000 + 67.5 + 120, -2_200_000 + 67.5])
DATES = pd.to_datetime(["2018-03-01", "2018-09-01", "2019-05-01", "2019-11-01"])
SENSORS = ["landsat", "sentinel2", "landsat", "landsat"]


def make_cube(chunked: bool = False) -> xr.Dataset:
    """4 layers (2 in 2018, 2 in 2019) on a 2 x 3 grid with hand-picked numbers.

    Pixel (0, 0): 2018 vectors (3, 4) and (-3, 4) -> mean(v) = 5, |mean vector| = 4;
                  2019 vectors (6, 8) and NaN -> 10 either way.
    Pixel (0, 1): 2018 v = 5 (err 1) and 10 (err 2) -> unweighted 7.5, weighted 6.
    Pixel (1, 2): 2018 v = 4 (err NaN) and 8 (err 2) -> weighted uses only 8.
    Everything else: NaN.
    """
    shape = (4, 2, 3)
    vx = np.full(shape, NAN, "float32")
    vy = np.full(shape, NAN, "float32")
    err = np.full(shape, NAN, "float32")
    vx[0, 0, 0], vy[0, 0, 0], err[0, 0, 0] = 3, 4, 1
    vx[1, 0, 0], vy[1, 0, 0], err[1, 0, 0] = -3, 4, 1
    vx[2, 0, 0], vy[2, 0, 0], err[2, 0, 0] = 6, 8, 1
    vx[0, 0, 1], vy[0, 0, 1], err[0, 0, 1] = 5, 0, 1
    vx[1, 0, 1], vy[1, 0, 1], err[1, 0, 1] = 0, 10, 2
    vx[0, 1, 2], vy[0, 1, 2] = 0, 4
    vx[1, 1, 2], vy[1, 1, 2], err[1, 1, 2] = 8, 0, 2
    v = np.hypot(vx, vy).astype("float32")
    dims = ("mid_date", "y", "x")
    ds = xr.Dataset(
        {
            "vx": (dims, vx, {"units": "meter/year"}),
            "vy": (dims, vy, {"units": "meter/year"}),
            "v": (dims, v, {"units": "meter/year"}),
            "v_error": (dims, err, {"units": "meter/year"}),
        },
        coords={
            "mid_date": DATES.to_numpy(),
            "y": Y,
            "x": X,
            "sensor": (
                "mid_date",
                np.array(SENSORS, dtype=np.dtypes.StringDType()),
            ),  # as open_zarr gives
            "date_dt": ("mid_date", [16.0, 32.0, 8.0, 64.0]),
            "granule_status": ("mid_date", np.array([0, 1, 0, 0], "int8")),
        },
    )
    ds = ds.rio.write_crs("EPSG:3413", grid_mapping_name="mapping")
    if chunked:
        ds = ds.chunk({"mid_date": 2, "y": 1, "x": 2})
    return ds


def test_yearly_mean_of_speed():
    ym = yearly_mean(make_cube()).load()
    assert ym.dims == ("year", "y", "x")
    assert list(ym["year"].values) == [2018, 2019]
    assert ym.sel(year=2018).values[0, 0] == pytest.approx(5.0)
    assert ym.sel(year=2019).values[0, 0] == pytest.approx(10.0)
    assert ym.sel(year=2018).values[0, 1] == pytest.approx(7.5)
    assert ym.sel(year=2018).values[1, 2] == pytest.approx(6.0)
    assert np.isnan(ym.sel(year=2019).values[0, 1])
    assert int(ym["count"].sel(year=2018).values[0, 0]) == 2
    assert int(ym["count"].sel(year=2019).values[0, 0]) == 1
    assert ym.attrs["units"] == "meter/year"
    assert ym.rio.crs.to_epsg() == 3413


def test_speed_of_mean_differs_from_mean_of_speed():
    sm = yearly_mean(make_cube(), speed_of_mean=True).load()
    # mean vector of (3, 4) and (-3, 4) is (0, 4)
    assert sm.sel(year=2018).values[0, 0] == pytest.approx(4.0)
    # mean of (5, 0) and (0, 10) is (2.5, 5)
    assert sm.sel(year=2018).values[0, 1] == pytest.approx(np.hypot(2.5, 5.0))
    assert sm.sel(year=2019).values[0, 0] == pytest.approx(10.0)


def test_weighted_mean_and_nan_errors():
    wm = yearly_mean(make_cube(), weighted=True).load()
    # weights 1/1 and 1/4: (5 * 1 + 10 * 0.25) / 1.25 = 6
    assert wm.sel(year=2018).values[0, 1] == pytest.approx(6.0)
    # v_error NaN in the first layer: only the second (v = 8) counts
    assert wm.sel(year=2018).values[1, 2] == pytest.approx(8.0)
    assert int(wm["count"].sel(year=2018).values[1, 2]) == 1
    # equal errors: the ordinary mean
    assert wm.sel(year=2018).values[0, 0] == pytest.approx(5.0)
    wsm = yearly_mean(make_cube(), weighted=True, speed_of_mean=True).load()
    # vx: (5 * 1 + 0 * 0.25) / 1.25 = 4, vy: (0 + 10 * 0.25) / 1.25 = 2
    assert wsm.sel(year=2018).values[0, 1] == pytest.approx(np.hypot(4.0, 2.0))


def test_weighted_without_error_variable_is_refused():
    with pytest.raises(InvalidInputError, match="v_error"):
        yearly_mean(make_cube().drop_vars("v_error"), weighted=True)


def test_unknown_variable_is_refused():
    with pytest.raises(InvalidInputError, match="no variable 'speed'"):
        yearly_mean(make_cube(), "speed")


def test_results_stay_lazy_and_match_eager():
    lazy = yearly_mean(make_cube(chunked=True))
    assert lazy.chunks is not None
    eager = yearly_mean(make_cube()).load()
    np.testing.assert_array_equal(lazy.compute().values, eager.values)
    assert point_timeseries(make_cube(chunked=True), *_lonlat(X[0], Y[0]))["v"].chunks is not None


def test_monthly_mean_calendar_and_climatology():
    mm = monthly_mean(make_cube()).load()
    assert [str(m)[:7] for m in mm["month"].values] == ["2018-03", "2018-09", "2019-05", "2019-11"]
    assert mm.isel(month=1).values[0, 1] == pytest.approx(10.0)
    clim = monthly_mean(make_cube(), climatology=True).load()
    assert list(clim["month"].values) == [3, 5, 9, 11]
    assert clim.sel(month=3).values[0, 0] == pytest.approx(5.0)


def _lonlat(x: float, y: float) -> tuple[float, float]:
    return Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True).transform(x, y)


def test_point_timeseries_nearest_pixel_and_offset():
    cube = make_cube()
    # 10 m east and 20 m south of the centre of pixel (row 0, col 1)
    lon, lat = _lonlat(X[1] + 10.0, Y[0] - 20.0)
    ts = point_timeseries(cube, lon, lat).load()
    assert float(ts["x"]) == X[1] and float(ts["y"]) == Y[0]
    np.testing.assert_allclose(ts["v"].values, [5.0, 10.0, NAN, NAN])
    np.testing.assert_allclose(ts["v_error"].values, [1.0, 2.0, NAN, NAN])
    assert ts.attrs["offset_x_m"] == pytest.approx(-10.0, abs=1e-6)
    assert ts.attrs["offset_y_m"] == pytest.approx(20.0, abs=1e-6)
    # ground distance = grid distance / scale factor; EPSG:3413's scale is within 3% of 1 here
    assert ts.attrs["distance_m"] == pytest.approx(np.hypot(10.0, 20.0), rel=0.03)
    assert ts.attrs["crs"] == "EPSG:3413"
    assert list(ts["sensor"].values) == SENSORS
    df = ts.to_dataframe()
    assert len(df) == 4 and "v_error" in df


def test_point_on_outer_half_pixel_is_inside_and_beyond_is_outside():
    cube = make_cube()
    lon, lat = _lonlat(X[-1] + 59.0, Y[-1] - 59.0)
    ts = point_timeseries(cube, lon, lat)
    assert float(ts["x"]) == X[-1] and float(ts["y"]) == Y[-1]
    lon, lat = _lonlat(X[-1] + 61.0, Y[-1])
    with pytest.raises(InvalidInputError, match="outside the cube"):
        point_timeseries(cube, lon, lat)
    with pytest.raises(InvalidInputError, match="outside the cube"):
        point_timeseries(cube, 0.0, 0.0)
    with pytest.raises(InvalidInputError, match="not a valid lon, lat"):
        point_timeseries(cube, 10.0, 95.0)


def test_layer_counts_per_year_and_sensor():
    counts = layer_counts(make_cube())
    assert list(counts.index) == [2018, 2019]
    assert list(counts.columns) == ["landsat", "sentinel2", "total", "failed"]
    assert counts.loc[2018].tolist() == [1, 1, 2, 1]
    assert counts.loc[2019].tolist() == [2, 0, 2, 0]


def test_describe_cube_extent_and_crs():
    info = describe_cube(make_cube(chunked=True))
    assert info["shape"] == (4, 2, 3)
    assert info["crs"] == "EPSG:3413"
    assert info["resolution"] == 120.0
    assert info["extent"] == (X[0] - 60, Y[-1] - 60, X[-1] + 60, Y[0] + 60)
    assert info["start"] == "2018-03-01" and info["end"] == "2019-11-01"
    assert info["chunks"] == (2, 1, 2)
    lon0, lat0, lon1, lat1 = info["extent_lonlat"]
    assert 68 < lat0 < lat1 < 71 and lon0 < lon1


def test_crs_from_mapping_attributes_only():
    cube = make_cube().drop_vars("mapping")
    cube["v"].attrs.pop("grid_mapping", None)
    cube = cube.assign_coords(mapping=((), 0, {"spatial_epsg": 3031}))
    assert cube_crs(cube).to_epsg() == 3031
