import numpy as np
import pytest
from pyproj import Geod, Transformer

from itslive_dask.cube.reproject import fractional_index, rotate, sample, source_geometry


def test_rotation_utm_central_meridian_to_polar_stereographic_is_hand_computed():
    # On UTM 33N's central meridian (15E) the UTM x axis points true east. In EPSG:3413
    # (lon_0 = -45) true east at longitude lon points at angle (lon - lon_0) = 60 deg.
    to3413 = Transformer.from_crs(4326, 3413, always_xy=True)
    x, y = to3413.transform([15.0, 15.0], [78.0, 79.5])
    for xi, yi in zip(x, y, strict=True):
        g = source_geometry(np.array([xi]), np.array([yi]), 3413, 32633)
        assert np.degrees(np.arctan2(g.sin, g.cos)).item() == pytest.approx(60.0, abs=1e-4)


def test_rotation_matches_geodesic_azimuths():
    # Independent check: azimuth (clockwise from north) of each grid's x axis, from geodesics.
    geod = Geod(ellps="WGS84")
    lon, lat = 21.5, 78.7
    to_src = Transformer.from_crs(4326, 32635, always_xy=True)
    to_tgt = Transformer.from_crs(4326, 3413, always_xy=True)
    back_src = Transformer.from_crs(32635, 4326, always_xy=True)
    back_tgt = Transformer.from_crs(3413, 4326, always_xy=True)

    def x_axis_azimuth(fwd, back):
        px, py = fwd.transform(lon, lat)
        lon2, lat2 = back.transform(px + 500.0, py)
        return geod.inv(lon, lat, lon2, lat2)[0]

    expected = x_axis_azimuth(to_tgt, back_tgt) - x_axis_azimuth(to_src, back_src)  # clockwise
    tx, ty = to_tgt.transform(lon, lat)
    g = source_geometry(np.array([tx]), np.array([ty]), 3413, 32635)
    got = np.degrees(np.arctan2(g.sin, g.cos)).item()  # counter-clockwise from target x
    assert got == pytest.approx(expected, abs=0.01)


def test_same_crs_is_identity():
    g = source_geometry(np.array([1.0, 2.0]), np.array([5.0]), 3031, 3031)
    assert np.array_equal(g.xs, [[1.0, 2.0]]) and np.array_equal(g.ys, [[5.0, 5.0]])
    assert np.all(g.cos == 1) and np.all(g.sin == 0)


def test_rotate_preserves_magnitude_and_angle():
    vx = np.array([3.0, -100.0, 0.0], "float32")
    vy = np.array([4.0, 250.0, -7.0], "float32")
    th = np.radians([30.0, -75.0, 90.0])
    rx, ry = rotate(vx, vy, np.cos(th), np.sin(th))
    assert np.allclose(np.hypot(rx, ry), np.hypot(vx, vy), rtol=1e-6)
    turned = np.arctan2(ry, rx) - np.arctan2(vy, vx) - th  # 0 modulo 2 pi
    assert np.allclose(np.cos(turned), 1, atol=1e-9) and np.allclose(np.sin(turned), 0, atol=1e-6)
    # 90 degrees: (0, -7) -> (7, 0)
    assert rx[2] == pytest.approx(7.0) and ry[2] == pytest.approx(0.0, abs=1e-5)


def test_nearest_uses_containing_pixel_and_nan_outside():
    src = np.arange(12, dtype="float32").reshape(3, 4)
    fi = np.array([0.0, 0.49, 0.5, 2.49, 2.5, -0.5, -0.51, 1.0])
    fj = np.array([0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 3.49])
    out = sample(src, fi, fj, "nearest")
    expected = [0, 0, 4, 11, np.nan, 0, np.nan, 7]
    assert np.array_equal(out, np.array(expected, "float32"), equal_nan=True)


def test_bilinear_reproduces_linear_field_and_ignores_nan():
    i, j = np.mgrid[0:5, 0:6]
    src = (3.0 * i - 2.0 * j + 10).astype("float32")
    fi = np.array([0.25, 2.5, 3.9, 1.0])
    fj = np.array([0.5, 4.75, 0.1, 1.0])
    out = sample(src, fi, fj, "bilinear")
    assert np.allclose(out, 3.0 * fi - 2.0 * fj + 10, atol=1e-5)
    holed = src.copy()
    holed[1, 1] = np.nan
    out = sample(holed, np.array([1.5]), np.array([1.5]), "bilinear")
    # the three valid neighbours (1,2), (2,1), (2,2) with equal weights
    assert out[0] == pytest.approx((src[1, 2] + src[2, 1] + src[2, 2]) / 3)


def test_fractional_index_descending_axis():
    axis = np.array([1000.0, 880.0, 760.0])
    assert np.allclose(fractional_index(np.array([1000.0, 820.0, 760.0]), axis), [0, 1.5, 2])
