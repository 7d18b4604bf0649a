"""The synthetic archive: analytic truth, rotation convention, on-disk encodings, names.

Independent references used here: pyproj.Geod (geodesic displacement) and finite differences
of the CRS transform for the rotation; the two real ITS_LIVE granules in
/work/shared/data/real for the encodings; names.parse_granule_name and h5py for the files.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from realdata import V1 as REAL_V1
from realdata import V2 as REAL_V2
from realdata import needs_real

from itslive_dask.errors import InvalidInputError
from itslive_dask.granule.names import parse_granule_name
from itslive_dask.testing.synthetic import (
    REGIONS,
    Region,
    SyntheticConfig,
    generate_archive,
    generate_granule,
    get_region,
    granule_truth,
    ground_velocity_en,
    make_granule_specs,
    read_catalog,
    tile_folder,
    truth_speed,
    truth_velocity,
)

GEOD = pyproj.Geod(ellps="WGS84")
FILL = -32767


# ----------------------------------------------------------------------------- helpers
def _specs(n: int = 40, **kw):
    kw.setdefault("seed", 3)
    return make_granule_specs(SyntheticConfig(n_granules=n, **kw))


def _first(specs, **want):
    for s in specs:
        if all(getattr(s, k) == v for k, v in want.items()):
            return s
    raise LookupError(want)


def _h5(data: bytes) -> h5py.File:
    return h5py.File(io.BytesIO(data), "r")


def _signature(f: h5py.File) -> dict:
    """Per object: attribute name -> dtype kind, plus dataset dtype/fill/filters."""

    def kinds(attrs) -> dict:
        return {k: np.asarray(v).dtype.kind for k, v in attrs.items()}

    out = {"/": kinds(f.attrs)}
    for name, ds in f.items():
        sig = kinds(ds.attrs)
        sig["<dtype>"] = str(ds.dtype)
        sig["<hdf5 fill>"] = repr(ds.fillvalue)
        sig["<filters>"] = (ds.compression, ds.compression_opts, ds.shuffle)
        out[name] = sig
    return out


def _angle_deg(ax, ay, bx, by):
    d = np.degrees(np.arctan2(ay, ax) - np.arctan2(by, bx))
    return (d + 180.0) % 360.0 - 180.0


# ----------------------------------------------------------------------------- the field
@pytest.mark.parametrize("name", sorted(REGIONS))
def test_field_range_and_both_signs(name):
    reg = get_region(name)
    w, s, e, n = reg.bbox
    lon, lat = np.meshgrid(np.linspace(w, e, 241), np.linspace(s, n, 193))
    for date in ["2015-01-01", "2018-07-01", "2022-12-31"]:
        ve, vn = ground_velocity_en(lon, lat, reg, date)
        speed = np.hypot(ve, vn)
        assert speed.min() >= 10.0 - 1e-9 and speed.max() <= 5000.0
        assert speed.min() < 15.0 and speed.max() > 3500.0  # stagnant ice and a fast trunk
        for comp in (ve, vn):
            assert (comp > 1.0).mean() > 0.1 and (comp < -1.0).mean() > 0.1
    # wider window (granules reach beyond the region) and the end of the default dates
    lon, lat = np.meshgrid(np.linspace(w - 2, e + 2, 101), np.linspace(s - 0.5, n + 0.5, 101))
    speed = np.hypot(*ground_velocity_en(lon, lat, reg, "2022-12-31"))
    assert 10.0 <= speed.min() and speed.max() <= 5000.0


def test_time_trend_is_linear_so_pair_mean_is_mid_date_value():
    lon, lat = 17.8, 78.8
    t1, t2 = np.datetime64("2016-03-01T10:00"), np.datetime64("2017-01-17T22:31")
    ts = t1 + (t2 - t1) * np.linspace(0, 1, 2001)
    ve, vn = ground_velocity_en(np.full(ts.shape, lon), np.full(ts.shape, lat), "svalbard", ts)
    mid = t1 + (t2 - t1) / 2
    ve_mid, vn_mid = ground_velocity_en(lon, lat, "svalbard", mid)
    assert np.trapezoid(ve, dx=1.0 / 2000) == pytest.approx(float(ve_mid), rel=1e-9)
    assert np.trapezoid(vn, dx=1.0 / 2000) == pytest.approx(float(vn_mid), rel=1e-9)
    # 2 % per year, by hand
    s15 = float(np.hypot(*ground_velocity_en(lon, lat, "svalbard", "2015-01-01")))
    s17 = float(
        np.hypot(*ground_velocity_en(lon, lat, "svalbard", "2016-12-31T12:00"))
    )  # 730.5 days
    assert s17 / s15 == pytest.approx(1.0 + 0.02 * 2.0, rel=1e-9)


POINTS = [
    (32633, 17.6, 78.75),
    (32634, 18.4, 78.85),
    (32635, 17.5, 78.72),
    (3413, 18.2, 78.90),
    (3031, -100.3, -75.25),
]


@pytest.mark.parametrize(("epsg", "lon", "lat"), POINTS)
def test_rotation_sign_by_finite_difference(epsg, lon, lat):
    """Moving 1 m along the ground vector on the ellipsoid must move along (vx, vy) in the grid."""
    region = "pine_island" if lat < 0 else "svalbard"
    to_xy = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    x, y = to_xy.transform(lon, lat)
    vx, vy = truth_velocity(x, y, epsg, "2019-05-05", region=region)
    ve, vn = ground_velocity_en(lon, lat, region, "2019-05-05")
    azimuth = np.degrees(np.arctan2(ve, vn))  # clockwise from North
    lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, 1.0)
    x2, y2 = to_xy.transform(lon2, lat2)
    assert abs(_angle_deg(vx, vy, x2 - x, y2 - y)) < 1e-4
    assert np.hypot(vx, vy) == pytest.approx(np.hypot(ve, vn), rel=1e-8)  # ground speed kept
    # 1 m due North: its grid direction is what the (vx, vy) of a northward vector must be
    lon3, lat3, _ = GEOD.fwd(lon, lat, 0.0, 1.0)
    x3, y3 = to_xy.transform(lon3, lat3)
    gamma = pyproj.Proj(f"EPSG:{epsg}").get_factors(lon, lat).meridian_convergence
    assert (
        abs(_angle_deg(x3 - x, y3 - y, -np.sin(np.radians(gamma)), np.cos(np.radians(gamma))))
        < 1e-4
    )


@settings(max_examples=25)
@given(
    lon=st.floats(17.3, 18.7),
    lat=st.floats(78.69, 78.91),
    day=st.integers(0, 8 * 365),
)
def test_same_vector_in_two_crs_differs_by_convergence(lon, lat, day):
    date = np.datetime64("2015-01-01") + np.timedelta64(day, "D")
    out, xy = {}, {}
    for epsg in (32633, 3413):
        xy[epsg] = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
        out[epsg] = truth_velocity(*xy[epsg], epsg, date)
    (ax, ay), (bx, by) = out[32633], out[3413]
    assert np.hypot(ax, ay) == pytest.approx(np.hypot(bx, by), rel=1e-8)
    g_utm = pyproj.Proj("EPSG:32633").get_factors(lon, lat).meridian_convergence
    g_ps = pyproj.Proj("EPSG:3413").get_factors(lon, lat).meridian_convergence
    # expressed in 3413 axes the vector is the 32633 one rotated by (gamma_3413 - gamma_32633)
    assert _angle_deg(bx, by, ax, ay) == pytest.approx(g_ps - g_utm, abs=1e-7)
    # independently: a 1 m step along (ax, ay) in 32633, carried into 3413, points along (bx, by)
    x0, y0 = xy[32633]
    step = 1.0 / np.hypot(ax, ay)
    tr = pyproj.Transformer.from_crs(32633, 3413, always_xy=True)
    p0, p1 = tr.transform(x0, y0), tr.transform(x0 + ax * step, y0 + ay * step)
    assert abs(_angle_deg(p1[0] - p0[0], p1[1] - p0[1], bx, by)) < 1e-4


def test_truth_speed_matches_velocity_and_crs_checks():
    x, y = pyproj.Transformer.from_crs(4326, 32634, always_xy=True).transform(
        [17.9, 18.1], [78.8, 78.85]
    )
    vx, vy = truth_velocity(np.array(x), np.array(y), "EPSG:32634", "2020-02-02")
    np.testing.assert_allclose(
        truth_speed(np.array(x), np.array(y), 32634, "2020-02-02"), np.hypot(vx, vy), rtol=1e-12
    )
    with pytest.raises(InvalidInputError, match="projected"):
        truth_velocity(18.0, 78.8, 4326)
    with pytest.raises(InvalidInputError):
        truth_velocity(0.0, 0.0, "not a crs")
    with pytest.raises(InvalidInputError, match="unknown synthetic region"):
        ground_velocity_en(18.0, 78.8, "atlantis")


def test_region_presets():
    sv, pig = get_region("svalbard"), get_region("pine_island")
    assert set(sv.epsgs) == {32633, 32634, 32635, 3413}
    assert pig.epsgs == (3031,)
    for reg in (sv, pig):
        area, _ = GEOD.geometry_area_perimeter(reg.polygon)
        assert abs(area) / 1e6 == pytest.approx(reg.width_km * reg.height_km, rel=0.01)
        assert reg.polygon.contains(shapely.Point(reg.lon0, reg.lat0))
        assert json.loads(json.dumps(reg.geojson))["type"] == "Polygon"
    with pytest.raises(InvalidInputError, match="not used by ITS_LIVE"):
        Region(name="bad", lon0=-100.0, lat0=-75.0, epsgs=(32747,), epsg_weights=(1.0,))
    with pytest.raises(InvalidInputError, match="not used by ITS_LIVE"):
        SyntheticConfig(region="pine_island", epsg_weights={32613: 1.0})
    assert tile_folder(18.0, 78.8) == "N70E010"
    assert tile_folder(-100.3, -75.2) == "S80W110"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_granules": -1},
        {"start": "2020-01-01", "end": "2019-01-01"},
        {"separation_days": (0, 10)},
        {"separation_days": (50, 10)},
        {"sensor_weights": {"modis": 1.0}},
        {"v1_fraction": 1.5},
        {"granule_pixels": (300, 200)},
        {"region": "atlantis"},
        {"noise_std": -1.0},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(InvalidInputError):
        SyntheticConfig(**kwargs)


# ----------------------------------------------------------------------------- planning
def test_plan_dates_satellites_and_placement():
    cfg = SyntheticConfig(n_granules=300, seed=11)
    specs = make_granule_specs(cfg)
    start, end = dt.datetime(2015, 1, 1), dt.datetime(2023, 1, 1)
    assert all(5.0 <= s.date_dt <= 400.0 for s in specs)
    assert all(start <= s.acquisition_img1 < s.acquisition_img2 < end for s in specs)
    # satellites only within their operating periods
    for s in specs:
        for sat, t in (
            (s.satellite_img1, s.acquisition_img1),
            (s.satellite_img2, s.acquisition_img2),
        ):
            assert not (sat == "S1B" and t > dt.datetime(2021, 12, 23))
            assert not (sat == "LC09" and t < dt.datetime(2021, 10, 31))
            assert not (sat == "S2B" and t < dt.datetime(2017, 6, 30))
    sats = {s.satellite_img1 for s in specs} | {s.satellite_img2 for s in specs}
    assert sats == {"LC08", "LC09", "S1A", "S1B", "S2A", "S2B"}
    assert {s.epsg for s in specs} == {32633, 32634, 32635, 3413}
    v1 = [s for s in specs if s.version == 1]
    assert 0.05 < len(v1) / len(specs) < 0.16
    assert all(s.resolution == 240.0 and s.satellite_img1 == "LC08" for s in v1)
    region = cfg.region_obj.polygon
    outside = [s for s in specs if not s.footprint.intersects(region)]
    assert 1 <= len(outside) <= 0.12 * len(specs)
    pv = np.array([s.percent_valid for s in specs])
    assert pv.min() < 40 and pv.max() == 100 and 50 < np.median(pv) < 100  # gaps vary


def test_grid_alignment_of_every_spec():
    for s in _specs(200, v1_fraction=0.3):
        if s.version == 2:
            assert np.all(np.mod(s.x, 120.0) == 52.5) and np.all(np.mod(s.y, 120.0) == 67.5)
        else:
            assert np.all(np.mod(s.x, 240.0) == 112.5) and np.all(np.mod(s.y, 240.0) == 127.5)
        assert np.all(np.diff(s.x) == s.resolution) and np.all(np.diff(s.y) == -s.resolution)


def test_determinism_and_prefix_stability():
    a = make_granule_specs(SyntheticConfig(n_granules=12, seed=5))
    b = make_granule_specs(SyntheticConfig(n_granules=12, seed=5))
    c = make_granule_specs(SyntheticConfig(n_granules=6, seed=5))
    d = make_granule_specs(SyntheticConfig(n_granules=12, seed=6))
    assert [s.granule_id for s in a] == [s.granule_id for s in b]
    assert [s.granule_id for s in a[:6]] == [s.granule_id for s in c]
    assert not {s.granule_id for s in a} & {s.granule_id for s in d}
    for sa, sb in zip(a[:4], b[:4], strict=True):
        fa, fb = _h5(generate_granule(sa)), _h5(generate_granule(sb))
        for name in ("x", "y", "vx", "vy", "v", "chip_size_width", "interp_mask"):
            assert fa[name][()].tobytes() == fb[name][()].tobytes()


def test_footprint_contains_every_pixel_centre():
    for s in _specs(15, v1_fraction=0.3):
        xx, yy = np.meshgrid(s.x[::7], s.y[::7])
        lon, lat = pyproj.Transformer.from_crs(s.epsg, 4326, always_xy=True).transform(xx, yy)
        assert shapely.contains_xy(s.footprint.buffer(1e-9), lon, lat).all()


# ----------------------------------------------------------------------------- encodings
@needs_real
@pytest.mark.parametrize("sensor", ["landsat", "sentinel2", "sentinel1"])
def test_v2_encoding_matches_real_file(sensor):
    spec = _first(_specs(60, region="pine_island"), version=2, sensor=sensor)
    with h5py.File(REAL_V2) as real, _h5(generate_granule(spec)) as syn:
        rs, ss = _signature(real), _signature(syn)
        assert set(rs) == set(ss)
        for name in rs:
            if name == "img_pair_info" and sensor != "landsat":
                continue  # sensor-specific image metadata, checked below
            assert rs[name] == ss[name], name
        common = {
            "acquisition_date_img1",
            "acquisition_date_img2",
            "date_center",
            "date_dt",
            "id_img1",
            "id_img2",
            "mission_img1",
            "satellite_img1",
            "sensor_img1",
            "roi_valid_percentage",
            "latitude",
            "longitude",
        }
        assert common <= set(ss["img_pair_info"])
        for name in (
            "vx",
            "vy",
            "v",
            "v_error",
            "chip_size_width",
            "chip_size_height",
            "interp_mask",
        ):
            assert syn[name].attrs["grid_mapping"] == b"mapping"
            assert syn[name].chunks == tuple(min(512, n) for n in syn[name].shape)
            assert syn[name].attrs["_FillValue"].dtype == syn[name].dtype
        assert (
            syn["vx"].attrs["_FillValue"][0] == FILL
            and syn["chip_size_width"].attrs["_FillValue"][0] == 0
        )
        assert syn["x"].dtype == np.float64 and syn["vx"].dims[1][0] == syn["x"]


@needs_real
def test_v2_large_granule_is_chunked_512():
    spec = _first(_specs(10, granule_pixels=(520, 700)), version=2)
    with _h5(generate_granule(spec)) as syn:
        assert syn["vx"].chunks == (512, 512)
        vx = syn["vx"][()]
    truth, _ = granule_truth(spec)
    ok = vx != FILL
    assert np.abs(vx[ok] - truth[ok]).max() <= 0.5 + 1e-6  # edge chunks decode correctly


@needs_real
def test_v1_encoding_matches_real_file():
    spec = _first(_specs(60, region="pine_island", v1_fraction=0.3), version=1)
    with h5py.File(REAL_V1) as real, _h5(generate_granule(spec)) as syn:
        assert _signature(real) == _signature(syn)
        assert "v_error" not in syn and "_FillValue" not in syn["vx"].attrs
        assert syn["vx"].attrs["missing_value"][0] == FILL
        assert syn["vx"].chunks == syn["vx"].shape and syn["vx"].compression_opts == 1


@needs_real
def test_v1_utm_uses_utm_projection_with_the_real_attribute_names():
    spec = _first(_specs(80, v1_fraction=0.4), version=1, epsg=32633)
    with h5py.File(REAL_V1) as real, _h5(generate_granule(spec)) as syn:
        rs, ss = _signature(real), _signature(syn)
        assert "UTM_Projection" in ss and "Polar_Stereographic" not in ss
        for name in set(rs) - {"Polar_Stereographic"}:
            assert rs[name] == ss[name], name
        assert syn["vx"].attrs["grid_mapping"] == b"UTM_Projection"
        gm = syn["UTM_Projection"].attrs
        assert (
            gm["grid_mapping_name"] == b"universal_transverse_mercator"
            and gm["utm_zone_number"][0] == 33
        )


@needs_real
@pytest.mark.parametrize("epsg", [32633, 32634, 32635, 3413])
def test_crs_text_and_geotransforms_follow_the_real_conventions(epsg):
    # conventions measured on the real files: V2 GeoTransform = first centre, V1 = outer corner
    with h5py.File(REAL_V2) as f:
        gt = [float(v) for v in f["mapping"].attrs["GeoTransform"].split()]
        assert (gt[0], gt[3]) == (f["x"][0], f["y"][0])
    with h5py.File(REAL_V1) as f:
        gt = [float(v) for v in f["Polar_Stereographic"].attrs["GeoTransform"].split()]
        assert (gt[0], gt[3]) == (f["x"][0] - 120.0, f["y"][0] + 120.0)
    specs = _specs(120, v1_fraction=0.4)
    for version, gm_name in ((2, "mapping"), (1, None)):
        spec = _first(specs, version=version, epsg=epsg)
        with _h5(generate_granule(spec)) as syn:
            name = gm_name or ("Polar_Stereographic" if epsg == 3413 else "UTM_Projection")
            attrs = syn[name].attrs
            wkt = attrs["crs_wkt" if version == 2 else "spatial_ref"].decode()
            assert pyproj.CRS.from_wkt(wkt).to_epsg() == epsg
            assert int(attrs["spatial_epsg"][0]) == epsg
            gt = [float(v) for v in attrs["GeoTransform"].split()]
            half = spec.resolution / 2 if version == 1 else 0.0
            assert gt == [
                syn["x"][0] - half,
                spec.resolution,
                0.0,
                syn["y"][0] + half,
                0.0,
                -spec.resolution,
            ]


def test_files_open_with_xarray_and_decode_fills():
    specs = _specs(30, v1_fraction=0.4)
    for version in (1, 2):
        spec = _first(specs, version=version)
        data = generate_granule(spec)
        ds = xr.open_dataset(io.BytesIO(data), engine="h5netcdf")
        raw = _h5(data)["vx"][()]
        assert np.array_equal(np.isnan(ds.vx.values), raw == FILL)
        assert ds.vx.dtype == np.float32 and ("v_error" in ds) == (version == 2)
        np.testing.assert_array_equal(ds.x.values, spec.x)
        ds.close()


def test_values_are_rounded_truth_v_is_rounded_speed_and_v_error_positive():
    for spec in _specs(12, v1_fraction=0.3):
        f = _h5(generate_granule(spec))
        tvx, tvy = granule_truth(spec)
        vx, vy, v = f["vx"][()], f["vy"][()], f["v"][()]
        ok = vx != FILL
        assert ok.sum() * 100 // ok.size == spec.percent_valid
        assert np.array_equal(ok, vy != FILL) and np.array_equal(ok, v != FILL)
        assert np.abs(vx[ok] - tvx[ok]).max(initial=0) <= 0.5 + 1e-6
        assert np.abs(vy[ok] - tvy[ok]).max(initial=0) <= 0.5 + 1e-6
        assert np.abs(v[ok] - np.hypot(tvx, tvy)[ok]).max(initial=0) <= 0.5 + 1e-6
        if spec.version == 2:
            ve = f["v_error"][()]
            assert (ve[ok] > 0).all() and (ve[~ok] == FILL).all()
        cs = f["chip_size_width"][()]
        assert (cs[ok] > 0).all() and (cs[~ok] == 0).all()


def test_noise_std_adds_gaussian_noise():
    spec = _first(
        make_granule_specs(SyntheticConfig(n_granules=10, seed=2, noise_std=20.0, cloud_holes=0)),
        version=2,
    )
    f = _h5(generate_granule(spec))
    tvx, _ = granule_truth(spec)
    vx = f["vx"][()]
    ok = vx != FILL
    err = vx[ok] - tvx[ok]
    assert err.std() == pytest.approx(20.0, rel=0.05) and abs(err.mean()) < 1.0


# ----------------------------------------------------------------------------- names
def _parse_info_time(text: str) -> dt.datetime:
    return (
        dt.datetime.strptime(text, "%Y%m%dT%H:%M:%S.%f")
        if "T" in text
        else dt.datetime.strptime(text, "%Y%m%d")
    )


def test_names_parse_back_to_the_file_contents():
    specs = _specs(60, v1_fraction=0.2)
    assert {s.sensor for s in specs} == {"landsat", "sentinel1", "sentinel2"}
    for spec in specs:
        f = _h5(generate_granule(spec))
        info = f["img_pair_info"].attrs
        v1 = spec.version == 1
        t1 = _parse_info_time(
            info["aquisition_date_img1" if v1 else "acquisition_date_img1"].decode()
        )
        t2 = _parse_info_time(
            info["aquisition_date_img2" if v1 else "acquisition_date_img2"].decode()
        )
        tc = _parse_info_time(info["date_center"].decode())
        name = parse_granule_name(spec.granule_id + ".nc")
        precision = "D" if spec.sensor == "landsat" else "s"
        for got, want in ((name.acquisition_date_img1, t1), (name.acquisition_date_img2, t2)):
            assert np.datetime64(got, precision) == np.datetime64(want, precision)
        assert name.percent_valid == info["roi_valid_percentage"][0] == spec.percent_valid
        assert info["date_dt"][0] == pytest.approx((t2 - t1) / dt.timedelta(days=1), abs=1e-9)
        assert tc == t1 + (t2 - t1) / 2 or (v1 and tc.date() == (t1 + (t2 - t1) / 2).date())
        assert (name.version, name.resolution) == (spec.version, spec.resolution)
        assert (name.satellite_img1, name.satellite_img2, name.sensor) == (
            spec.satellite_img1,
            spec.satellite_img2,
            spec.sensor,
        )
        vx = f["vx"][()]
        assert (vx != FILL).sum() * 100 // vx.size == name.percent_valid


NAME_PATTERNS = {
    "landsat": r"LC0[89]_L1(TP|GT)_\d{6}_\d{8}_\d{8}_0[12]_T[12]_X_LC0[89]_L1(TP|GT)_\d{6}_\d{8}_\d{8}_0[12]_T[12]_G0(120V02|240V01)_P\d{3}",
    "sentinel2": r"S2[AB]_MSIL1C_\d{8}T\d{6}_N\d{4}_R\d{3}_T\d{2}[A-Z]{3}_\d{8}T\d{6}_X_S2[AB]_MSIL1C_\d{8}T\d{6}_N\d{4}_R\d{3}_T\d{2}[A-Z]{3}_\d{8}T\d{6}_G0120V02_P\d{3}",
    "sentinel1": r"S1[AB]_IW_SLC__1S[SD]H_\d{8}T\d{6}_\d{8}T\d{6}_\d{6}_[0-9A-F]{6}_[0-9A-F]{4}_X_S1[AB]_IW_SLC__1S[SD]H_\d{8}T\d{6}_\d{8}T\d{6}_\d{6}_[0-9A-F]{6}_[0-9A-F]{4}_G0120V02_P\d{3}",
}


def test_names_and_keys_look_like_the_public_archive():
    for s in _specs(80, v1_fraction=0.2):
        assert re.fullmatch(NAME_PATTERNS[s.sensor], s.granule_id), s.granule_id
        folder = {"landsat": "landsatOLI", "sentinel1": "sentinel1", "sentinel2": "sentinel2"}[
            s.sensor
        ]
        assert s.key == f"velocity_image_pair/{folder}/v0{s.version}/N70E010/{s.granule_id}.nc"


# ----------------------------------------------------------------------------- archive (local)
def test_local_archive_table_catalogs_and_https_base(tmp_path):
    cfg = SyntheticConfig(n_granules=12, seed=9, v1_fraction=0.25)
    seen = []
    table = generate_archive(
        tmp_path / "arch",
        cfg,
        progress=lambda done, total: seen.append((done, total)),
        https_base="https://example.test/its-live-data",
    )
    assert seen[-1] == (12, 12) and len(seen) == 12
    assert len(table) == 12 and table["mid_date"].is_monotonic_increasing
    for row in table.itertuples():
        path = Path(row.url)
        assert path.is_file() and path.is_relative_to(tmp_path / "arch")
        key = path.relative_to(tmp_path / "arch").as_posix()
        assert row.https_url == f"https://example.test/its-live-data/{key}"
        assert parse_granule_name(path.name).percent_valid == row.percent_valid
    back = read_catalog(str(tmp_path / "arch"))
    pd.testing.assert_frame_equal(
        pd.DataFrame(back.drop(columns="geometry")), pd.DataFrame(table.drop(columns="geometry"))
    )
    assert back.geometry.geom_equals_exact(table.geometry, 1e-12).all()
    items = json.loads((tmp_path / "arch/catalog/stac/items.json").read_text())["features"]
    assert sorted(i["id"] for i in items) == sorted(table["granule_id"])
    # nothing written outside dest
    assert {p.name for p in tmp_path.iterdir()} == {"arch"}


def test_generate_archive_rejects_bad_destinations(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        generate_archive(str(tmp_path / "file"), SyntheticConfig(n_granules=1))
    with pytest.raises(InvalidInputError):
        generate_archive("", SyntheticConfig(n_granules=1))
    with pytest.raises(InvalidInputError, match="SyntheticConfig"):
        generate_archive(str(tmp_path / "a"), {"n_granules": 1})
