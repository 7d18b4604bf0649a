import numpy as np
import pytest
from pyproj import Geod, Transformer

from itslive_dask.cube.reproject import (
    Sampler,
    fractional_index,
    rotate,
    sample,
    source_geometry,
)


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


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_one_sampler_serves_every_variable_of_a_window(method):
    """The kernel works out the points once per granule and samples each variable with
    them: each variable gets its own values (linear fields, known at every point), and a
    hole in one variable does not leak into another."""
    i, j = np.mgrid[0:6, 0:7]
    fields = {
        "vx": (2.0 * i + j).astype("float32"),
        "vy": (-3.0 * i + 5.0 * j + 1).astype("float32"),
        "v": (0.5 * i - j + 40).astype("float32"),
    }
    fields["v"][2, 3] = np.nan
    fi = np.array([0.0, 1.25, 2.0, 4.6, 3.4, 6.0, 0.3])  # [5]: outside the extent
    fj = np.array([0.0, 2.5, 3.0, 5.2, 0.7, 1.0, 3.0])
    sampler = Sampler(fi, fj, (6, 7), method)
    for name, src in fields.items():
        out = sampler(src)
        if method == "nearest":
            ii, jj = np.floor(fi + 0.5).astype(int), np.floor(fj + 0.5).astype(int)
            ok = (ii >= 0) & (ii < 6) & (jj >= 0) & (jj < 7)
            truth = np.full(fi.shape, np.nan)
            truth[ok] = src[ii[ok], jj[ok]]
        else:
            a, b, c = {"vx": (2, 1, 0), "vy": (-3, 5, 1), "v": (0.5, -1, 40)}[name]
            inside = (fi >= -0.5) & (fi <= 5.5) & (fj >= -0.5) & (fj <= 6.5)
            truth = np.where(inside, a * fi + b * fj + c, np.nan)
        if name == "v":  # the hole at (2, 3): no data there; bilinear renormalises around it
            truth[2] = np.nan
            if method == "bilinear":  # (1.25, 2.5): weights 3/8, 3/8, 1/8 at (1,2), (1,3), (2,2)
                truth[1] = (0.375 * 38.5 + 0.375 * 37.5 + 0.125 * 39.0) / 0.875
        assert np.allclose(out, truth, equal_nan=True, atol=1e-4), name
    assert not np.isnan(sampler(fields["vx"])[2])  # the hole is v's alone


def test_a_sampler_refuses_another_shape_or_method():
    with pytest.raises(ValueError, match="shape"):
        Sampler(np.array([0.0]), np.array([0.0]), (3, 4))(np.zeros((4, 4), "float32"))
    with pytest.raises(ValueError, match="unknown resampling"):
        Sampler(np.array([0.0]), np.array([0.0]), (3, 4), "cubic")


def test_fractional_index_descending_axis():
    axis = np.array([1000.0, 880.0, 760.0])
    assert np.allclose(fractional_index(np.array([1000.0, 820.0, 760.0]), axis), [0, 1.5, 2])


# --------------------------------------------------------------------------- the rotation lattice

#: Worst cases of the lattice: (target EPSG, source EPSG, lon, lat of the tile centre): UTM
#: zones 6 deg and more from their central meridian into the polar grids, at high latitude,
#: a UTM target, and a tile 55 km from the North Pole.
LATTICE_CASES = [
    (3413, 32633, 9.0, 80.0),  # 33N's central meridian is 15E
    (3413, 32633, 21.0, 84.0),  # the northern limit of UTM
    (3031, 32719, -75.0, -80.0),  # 19S: central meridian 69W
    (3031, 32718, -81.0, -80.0),  # 18S: central meridian 75W
    (3031, 32719, -66.0, -70.0),
    (32719, 3031, -75.0, -80.0),  # polar stereographic granules into a UTM cube
    (3413, 32633, 15.0, 89.5),
]


def _tile(lon: float, lat: float, epsg: int, n: int, res: float = 120.0):
    """Pixel centres of an n x n tile of the production-aligned grid around lon, lat."""
    cx, cy = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    x0 = np.floor(cx / res) * res + 52.5
    y0 = np.floor(cy / res) * res + 67.5
    return x0 + res * (np.arange(n) - n // 2), y0 - res * (np.arange(n) - n // 2)


def _angle_diff(a, b) -> np.ndarray:
    """Absolute angle between the unit vectors of two SourceGeometry (radians)."""
    return np.abs(np.arctan2(a.sin * b.cos - a.cos * b.sin, a.cos * b.cos + a.sin * b.sin))


def _convergence_theta(x, y, target_epsg: int, source_epsg: int) -> np.ndarray:
    """The rotation from pyproj's meridian convergences (a method independent of the
    kernel's finite difference): theta = convergence(target) - convergence(source)."""
    from pyproj import CRS, Proj

    xx, yy = np.meshgrid(x, y)
    lon, lat = Transformer.from_crs(target_epsg, 4326, always_xy=True).transform(xx, yy)
    conv_t = Proj(CRS.from_epsg(target_epsg)).get_factors(lon, lat).meridian_convergence
    conv_s = Proj(CRS.from_epsg(source_epsg)).get_factors(lon, lat).meridian_convergence
    return np.radians(conv_t - conv_s)


@pytest.mark.parametrize(
    ("target", "source", "lon", "lat", "n"),
    [(*case, 320) for case in LATTICE_CASES]
    + [pytest.param(*case, 1024, marks=pytest.mark.slow) for case in LATTICE_CASES],
)
def test_lattice_rotation_is_within_its_bound_of_the_per_pixel_computation(
    target, source, lon, lat, n
):
    """320 px tiles in the default suite; 1024 px tiles (-m slow) check the lattice's indexing
    over 64 x 64 cells (the error of a cell does not depend on the tile's size)."""
    from itslive_dask.cube.reproject import ANGLE_TOLERANCE

    x, y = _tile(lon, lat, target, n)
    exact = source_geometry(x, y, target, source, exact=True)
    fast = source_geometry(x, y, target, source)
    # positions are never approximated: the same bits as the per-pixel transform
    assert np.array_equal(fast.xs, exact.xs) and np.array_equal(fast.ys, exact.ys)
    err = _angle_diff(fast, exact)
    assert np.isfinite(err).all()
    assert err.max() < ANGLE_TOLERANCE  # the stated bound: 1e-6 rad, 1e-6 of the speed
    assert np.abs(np.hypot(fast.cos, fast.sin) - 1).max() < 1e-12  # a rotation, unit length
    # ... and against the analytic rotation (meridian convergences), on every 8th pixel of
    # each axis (pyproj's get_factors is slow), lattice nodes and in-between pixels alike
    theta = _convergence_theta(x[3::8], y[5::8], target, source)
    d = np.arctan2(fast.sin[5::8, 3::8], fast.cos[5::8, 3::8]) - theta
    assert np.abs((d + np.pi) % (2 * np.pi) - np.pi).max() < ANGLE_TOLERANCE


def test_lattice_interpolates_most_pixels_and_falls_back_cell_by_cell(monkeypatch):
    import itslive_dask.cube.reproject as R

    x, y = _tile(9.0, 80.0, 3413, 256)
    counted: list[int] = []
    real = R._angles

    def counting(xs, ys, *args):
        counted.append(xs.size)
        return real(xs, ys, *args)

    monkeypatch.setattr(R, "_angles", counting)
    fast = source_geometry(x, y, 3413, 32633)
    assert sum(counted) < 0.05 * x.size * y.size  # nodes and check points only
    assert 0 < _angle_diff(fast, source_geometry(x, y, 3413, 32633, exact=True)).max()
    # no cell passes a zero tolerance: every pixel is computed exactly, bit for bit
    monkeypatch.setattr(R, "ANGLE_TOLERANCE", 0.0)
    counted.clear()
    strict = source_geometry(x, y, 3413, 32633)
    exact = source_geometry(x, y, 3413, 32633, exact=True)
    assert sum(counted) >= x.size * y.size
    for name in ("xs", "ys", "cos", "sin"):
        assert np.array_equal(getattr(strict, name), getattr(exact, name)), name


def test_lattice_gives_the_same_bits_whatever_the_tiling():
    # the lattice is anchored to the grid: a pixel's rotation does not depend on its tile
    x, y = _tile(-75.0, -80.0, 3031, 300)
    whole = source_geometry(x, y, 3031, 32719)
    for rows, cols in [
        (slice(0, 64), slice(0, 64)),
        (slice(37, 137), slice(5, 42)),
        (slice(299, 300), slice(3, 300)),
    ]:
        part = source_geometry(x[cols], y[rows], 3031, 32719)
        for name in ("xs", "ys", "cos", "sin"):
            assert np.array_equal(getattr(part, name), getattr(whole, name)[rows, cols]), name


def test_lattice_keeps_nan_where_the_transform_fails():
    # the South Pole has no place in the North polar stereographic CRS: its pixel is NaN
    x = np.linspace(-2.4e5, 2.4e5, 65)
    y = np.linspace(2.4e5, -2.4e5, 65)
    exact = source_geometry(x, y, 3031, 3413, exact=True)
    fast = source_geometry(x, y, 3031, 3413)
    assert np.array_equal(np.isnan(fast.cos), np.isnan(exact.cos))
    ok = np.isfinite(exact.cos)
    assert ok.any() and not ok.all()
    assert _angle_diff(fast, exact)[ok].max() < 1e-6
