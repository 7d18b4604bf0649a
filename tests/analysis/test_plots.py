"""Plots: valid PNG files of the expected size, with content (not blank)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import shapely
import xarray as xr
from PIL import Image
from pyproj import Transformer

from itslive_dask.analysis import point_timeseries, yearly_mean
from itslive_dask.errors import InvalidInputError
from itslive_dask.plots import (
    plot_granule_counts,
    plot_point_timeseries,
    plot_speed_histogram,
    plot_yearly_mean,
)

X = -200_000 + 52.5 + 120.0 * np.arange(40)
Y = -2_200_000 + 67.5 + 120.0 * np.arange(30)[::-1]


def make_cube() -> xr.Dataset:
    """Three years of a smooth speed field on a 30 x 40 grid (EPSG:3413), with NaN corners."""
    dates = pd.to_datetime(["2017-02-01", "2017-08-01", "2018-03-01", "2019-06-01", "2019-07-01"])
    yy, xx = np.meshgrid(np.arange(30), np.arange(40), indexing="ij")
    base = 100.0 + 20.0 * xx + 5.0 * yy
    v = np.stack([base * (1 + 0.1 * k) for k in range(len(dates))]).astype("float32")
    v[:, :5, :5] = np.nan
    dims = ("mid_date", "y", "x")
    ds = xr.Dataset(
        {
            "vx": (dims, v * 0.6, {"units": "meter/year"}),
            "vy": (dims, v * 0.8, {"units": "meter/year"}),
            "v": (dims, v, {"units": "meter/year"}),
            "v_error": (dims, np.full(v.shape, 12.0, "float32"), {"units": "meter/year"}),
        },
        coords={
            "mid_date": dates.to_numpy(),
            "y": Y,
            "x": X,
            "sensor": (
                "mid_date",
                np.array(
                    ["landsat", "sentinel2", "landsat", "sentinel1", "landsat"],
                    dtype=np.dtypes.StringDType(),
                ),
            ),
            "acquisition_date_img1": ("mid_date", (dates - pd.Timedelta(days=8)).to_numpy()),
            "acquisition_date_img2": ("mid_date", (dates + pd.Timedelta(days=8)).to_numpy()),
            "date_dt": ("mid_date", np.full(len(dates), 16.0)),
        },
    )
    ds = ds.rio.write_crs("EPSG:3413", grid_mapping_name="mapping")
    ds.attrs["region_wkt"] = shapely.box(X[3], Y[-4], X[-6], Y[2]).wkt
    return ds.chunk({"mid_date": 2, "y": 16, "x": 16})


def check_png(path, size=None) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        if size is not None:
            assert im.size == size
        arr = np.asarray(im.convert("RGB"), dtype="float64")
    assert arr.var() > 0, "blank image"
    # some pixels are clearly not the white background
    assert (arr.sum(axis=2) < 600).mean() > 0.005
    return arr


def granule_table() -> gpd.GeoDataFrame:
    dates = pd.to_datetime(["2016-01-05", "2016-11-20", "2017-12-01", "2019-01-15", "2019-06-01"])
    return gpd.GeoDataFrame(
        {"mid_date": dates, "sensor": ["landsat", "landsat", "sentinel2", "sentinel1", "landsat"]},
        geometry=[shapely.box(0, 0, 1, 1)] * 5,
        crs="EPSG:4326",
    )


@pytest.mark.parametrize("by", ["year", "month"])
def test_granule_counts_from_table_and_cube(tmp_path, by):
    out = plot_granule_counts(granule_table(), tmp_path / f"t_{by}.png", by=by)
    check_png(out, (900, 450))
    out = plot_granule_counts(
        make_cube(), tmp_path / "sub" / f"c_{by}.png", by=by, figsize=(6, 3), dpi=80
    )
    check_png(out, (480, 240))


def test_granule_counts_bars_differ_with_data(tmp_path):
    a = check_png(plot_granule_counts(granule_table(), tmp_path / "a.png"))
    b = check_png(plot_granule_counts(granule_table().iloc[:2], tmp_path / "b.png"))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_yearly_mean_facets(tmp_path):
    cube = make_cube()
    out = plot_yearly_mean(cube, tmp_path / "yearly.png", col_wrap=2, panel_size=3.0, dpi=100)
    # 3 years on 2 columns -> 2 rows; panel height = 3 in * (30 / 40) rows/cols aspect
    width = round((3.0 * 2 + 1.0) * 100)
    height = round((3.0 * 30 / 40 * 2 + 2.0) * 100)
    check_png(out, (width, height))
    # precomputed means and a lon/lat region outline
    lonlat = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)
    ring = [
        lonlat.transform(x, y)
        for x, y in [(X[2], Y[2]), (X[20], Y[2]), (X[20], Y[20]), (X[2], Y[20])]
    ]
    out2 = plot_yearly_mean(yearly_mean(cube, speed_of_mean=True), tmp_path / "m.png", region=ring)
    check_png(out2)


def test_yearly_mean_draws_data_colors(tmp_path):
    """A map of NaN only and a map of data must differ: the data is drawn."""
    cube = make_cube()
    empty = cube.copy()
    empty["v"] = empty["v"] * np.nan
    a = check_png(plot_yearly_mean(cube, tmp_path / "a.png", vmax=1000))
    b = np.asarray(
        Image.open(plot_yearly_mean(empty, tmp_path / "b.png", vmax=1000)).convert("RGB"), "float64"
    )
    assert a.shape == b.shape
    assert np.abs(a - b).sum(axis=2).astype(bool).mean() > 0.05


def test_point_timeseries_plot(tmp_path):
    cube = make_cube()
    lon, lat = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True).transform(
        X[10], Y[10]
    )
    ts = point_timeseries(cube, lon, lat)
    out = plot_point_timeseries(ts, tmp_path / "ts.png")
    check_png(out, (1000, 450))
    # a pixel without data still gives a figure
    lon, lat = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True).transform(X[0], Y[0])
    check_png(
        plot_point_timeseries(point_timeseries(cube, lon, lat), tmp_path / "none.png"), (1000, 450)
    )


def test_speed_histogram(tmp_path):
    check_png(plot_speed_histogram(make_cube(), tmp_path / "h.png"), (700, 450))


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidInputError, match=r"\.png"):
        plot_granule_counts(granule_table(), tmp_path / "x.jpg")
    with pytest.raises(InvalidInputError, match="by must be"):
        plot_granule_counts(granule_table(), tmp_path / "x.png", by="week")
    with pytest.raises(InvalidInputError):
        plot_yearly_mean(make_cube()["v"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
