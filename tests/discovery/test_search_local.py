"""Local-catalog search against an independent brute force, polar and antimeridian cases.

The catalog is built here from random granule boxes drawn in each granule's own projected CRS
(EPSG:3031, EPSG:3413, UTM zones), including boxes around both poles and across 180 degrees.
Footprints are stored in lon/lat the way catalogs write them (points along the box outline,
either the raw short-way ring or the RFC 7946 form split at +-180 / closed along the pole).

The truth is computed independently: the region is projected into each granule's own CRS and
intersected with the granule's box there. Results must match it exactly, except for granules
within TOL metres of the region boundary (the lon/lat footprint is a polyline approximation of
the box, so a grazing contact is ambiguous by construction); those are checked to lie between
the box shrunk and grown by TOL.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod, Transformer
from realdata import REAL

from itslive_dask.discovery.api import search
from itslive_dask.discovery.catalog import load_catalog, save_catalog
from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.footprints import to_rfc7946
from itslive_dask.table import granule_table

TOL = 2_000.0  # metres
POINTS_PER_SIDE = 4  # like the ITS_LIVE STAC item generator: corners + 3 points per side
GEOD = Geod(ellps="WGS84")

# (name, epsg, native centre sampler) clusters of granules
SATS = {"landsat": ("LC08", "LC09"), "sentinel2": ("S2A", "S2B"), "sentinel1": ("S1A", "S1B")}


@dataclass
class Case:
    """A synthetic catalog and, per granule, its native box for the brute force."""

    table: pd.DataFrame
    epsg: np.ndarray
    boxes: np.ndarray  # (n, 4) xmin, ymin, xmax, ymax in the native CRS
    centre_lonlat: np.ndarray  # (n, 2)
    radius_m: np.ndarray  # half-diagonal of the box (m)


@functools.lru_cache(maxsize=32)
def _tr(src, dst) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def _box_ring(b, n=POINTS_PER_SIDE) -> np.ndarray:
    xmin, ymin, xmax, ymax = b
    t = np.linspace(0.0, 1.0, n, endpoint=False)
    xs = np.concatenate(
        [xmin + t * (xmax - xmin), np.full(n, xmax), xmax - t * (xmax - xmin), np.full(n, xmin)]
    )
    ys = np.concatenate(
        [np.full(n, ymin), ymin + t * (ymax - ymin), np.full(n, ymax), ymax - t * (ymax - ymin)]
    )
    return np.column_stack([np.append(xs, xs[0]), np.append(ys, ys[0])])


def _granule_name(
    sensor: str, sat1: str, sat2: str, t1: pd.Timestamp, t2: pd.Timestamp, pct: int, k: int
) -> str:
    if sensor == "landsat":
        s1 = f"{sat1}_L1GT_{k % 233:03d}{k % 248:03d}_{t1:%Y%m%d}_{t1:%Y%m%d}_02_T2"
        s2 = f"{sat2}_L1GT_{k % 233:03d}{k % 248:03d}_{t2:%Y%m%d}_{t2:%Y%m%d}_02_T2"
    elif sensor == "sentinel2":
        s1 = f"{sat1}_MSIL1C_{t1:%Y%m%dT%H%M%S}_N0208_R{k % 143:03d}_T19FDV_{t1:%Y%m%dT%H%M%S}"
        s2 = f"{sat2}_MSIL1C_{t2:%Y%m%dT%H%M%S}_N0208_R{k % 143:03d}_T19FDV_{t2:%Y%m%dT%H%M%S}"
    else:
        s1 = f"{sat1}_IW_SLC__1SSH_{t1:%Y%m%dT%H%M%S}_{t1:%Y%m%dT%H%M%S}_015387_0193F6_{k % 65536:04X}"
        s2 = f"{sat2}_IW_SLC__1SSH_{t2:%Y%m%dT%H%M%S}_{t2:%Y%m%dT%H%M%S}_004491_007D11_{k % 65536:04X}"
    return f"{s1}_X_{s2}_G0120V02_P{pct:03d}"


def _centres(rng, n) -> list[tuple[int, float, float, float]]:
    """(epsg, x, y, half_size) native box centres for every cluster."""
    out = []
    p3031 = _tr(4326, 3031)
    p3413 = _tr(4326, 3413)

    def polar(tr, epsg, lon, lat, half):
        x, y = tr.transform(lon, lat)
        out.append((epsg, float(x), float(y), half))

    for _ in range(n // 4):  # Antarctica
        r = rng.uniform(0, 2.6e6)
        a = rng.uniform(0, 2 * np.pi)
        out.append((3031, r * np.cos(a), r * np.sin(a), rng.uniform(2.5e4, 1.5e5)))
    for _ in range(n // 20):  # south pole
        out.append((3031, rng.uniform(-8e4, 8e4), rng.uniform(-8e4, 8e4), rng.uniform(1e5, 2.5e5)))
    for _ in range(n // 10):  # Antarctica across 180
        polar(p3031, 3031, rng.uniform(175, 185), rng.uniform(-86, -72), rng.uniform(3e4, 1.5e5))
    for _ in range(n // 6):  # Greenland / Arctic
        polar(p3413, 3413, rng.uniform(-75, -15), rng.uniform(60, 83), rng.uniform(2.5e4, 1.5e5))
    for _ in range(n // 20):  # north pole
        out.append((3413, rng.uniform(-8e4, 8e4), rng.uniform(-8e4, 8e4), rng.uniform(1e5, 2.5e5)))
    for _ in range(n // 10):  # Arctic across 180 (Chukchi, Wrangel)
        polar(p3413, 3413, rng.uniform(176, 184), rng.uniform(66, 84), rng.uniform(3e4, 1.5e5))
    utm = [  # (epsg, lon range, lat range)
        (32606, (-150, -144), (59, 62)),  # Alaska, straddles 60N
        (32632, (6, 12), (45, 47.5)),  # Alps
        (32718, (-76, -72), (-52, -47)),  # Patagonia
        (32645, (84, 90), (27, 30)),  # Himalaya
        (32660, (178.5, 181.5), (54, 57)),  # zone 60N across 180
    ]
    per = (n - len(out)) // len(utm)
    for epsg, (lo0, lo1), (la0, la1) in utm:
        tr = _tr(4326, epsg)
        for _ in range(per):
            polar(tr, epsg, rng.uniform(lo0, lo1), rng.uniform(la0, la1), rng.uniform(1.5e4, 8e4))
    return out


def make_case(n: int = 3000, seed: int = 7) -> Case:
    """A random granule catalog of about ``n`` granules (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    records, epsgs, boxes, centres, radii = [], [], [], [], []
    for k, (epsg, x, y, half) in enumerate(_centres(rng, n)):
        hx, hy = half, half * rng.uniform(0.6, 1.4)
        b = (x - hx, y - hy, x + hx, y + hy)
        ring = _box_ring(b)
        lon, lat = _tr(epsg, 4326).transform(ring[:, 0], ring[:, 1])
        raw = shapely.Polygon(np.column_stack([lon, lat]))
        footprint = raw if k % 2 else to_rfc7946(raw)  # both conventions in one catalog
        clon, clat = _tr(epsg, 4326).transform(x, y)
        sensor = ("landsat", "sentinel2", "sentinel1")[k % 3]
        sat1, sat2 = SATS[sensor][k % 2], SATS[sensor][(k // 2) % 2]
        t1 = pd.Timestamp("2013-01-01") + pd.Timedelta(days=int(rng.integers(0, 3650)))
        dt = int(rng.choice([5, 6, 12, 16, 32, 64, 120, 121, 365, 500]))
        t2 = t1 + pd.Timedelta(days=dt)
        pct = int(rng.integers(0, 101))
        gid = _granule_name(sensor, sat1, sat2, t1, t2, pct, k)
        records.append(
            {
                "granule_id": gid,
                "url": f"s3://test-bucket/granules/{gid}.nc",
                "mid_date": t1 + (t2 - t1) / 2,
                "acquisition_date_img1": t1,
                "acquisition_date_img2": t2,
                "date_dt": float(dt),
                "satellite_img1": sat1,
                "satellite_img2": sat2,
                "sensor": sensor,
                "epsg": epsg,
                "percent_valid": float(pct),
                "version": 2,
                "resolution": 120.0,
                "geometry": footprint,
            }
        )
        epsgs.append(epsg)
        boxes.append(b)
        centres.append((clon, clat))
        radii.append(math.hypot(hx, hy))
    table = granule_table(records)
    order = {r["granule_id"]: i for i, r in enumerate(records)}
    idx = np.array([order[g] for g in table["granule_id"]])
    return Case(
        table,
        np.array(epsgs)[idx],
        np.array(boxes)[idx],
        np.array(centres)[idx],
        np.array(radii)[idx],
    )


# --------------------------------------------------------------------------- brute force


def truth(
    case: Case, region_ll: shapely.Geometry, mask: np.ndarray | None = None
) -> tuple[set, set]:
    """(inner, outer) sets of granule ids: boxes shrunk / grown by TOL intersect the region.

    ``region_ll`` is given with continuous longitudes (may exceed 180) and straight lon/lat
    edges; it is densified and projected into each granule's CRS.
    """
    dense = shapely.segmentize(region_ll, 0.01)
    pts = shapely.get_coordinates(dense)
    # geodesic prefilter: region centre and radius
    c = shapely.centroid(region_ll)
    rc_lon, rc_lat = c.x, c.y
    if pts[:, 1].min() <= -89.0:
        rc_lon, rc_lat = 0.0, -90.0
    elif pts[:, 1].max() >= 89.0:
        rc_lon, rc_lat = 0.0, 90.0
    _, _, d = GEOD.inv(np.full(len(pts), rc_lon), np.full(len(pts), rc_lat), pts[:, 0], pts[:, 1])
    r_region = float(np.max(d))
    n = len(case.table)
    _, _, dist = GEOD.inv(
        np.full(n, rc_lon), np.full(n, rc_lat), case.centre_lonlat[:, 0], case.centre_lonlat[:, 1]
    )
    near = dist <= r_region + case.radius_m + 50_000.0
    if mask is not None:
        near &= mask
    inner, outer = set(), set()
    ids = case.table["granule_id"].to_numpy()
    for epsg in np.unique(case.epsg[near]):
        sel = np.flatnonzero(near & (case.epsg == epsg))
        tr = _tr(4326, int(epsg))
        if region_ll.geom_type == "Point":
            x, y = tr.transform(region_ll.x, region_ll.y)
            reg = shapely.Point(x, y)
        else:
            reg = shapely.transform(
                dense, lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
            )
            reg = shapely.make_valid(reg)
        b = case.boxes[sel]
        grown = shapely.box(b[:, 0] - TOL, b[:, 1] - TOL, b[:, 2] + TOL, b[:, 3] + TOL)
        shrunk = shapely.box(b[:, 0] + TOL, b[:, 1] + TOL, b[:, 2] - TOL, b[:, 3] - TOL)
        inner.update(ids[sel[shapely.intersects(shrunk, reg)]])
        outer.update(ids[sel[shapely.intersects(grown, reg)]])
    return inner, outer


def attribute_mask(
    case: Case, start=None, end=None, min_sep=None, max_sep=None, pct=None, sensors=None
):
    """Independent attribute check (inclusive bounds on mid_date, date_dt, percent_valid)."""
    t = case.table
    m = np.ones(len(t), bool)
    if start is not None:
        m &= (t["mid_date"] >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        m &= (t["mid_date"] <= pd.Timestamp(end)).to_numpy()
    if min_sep is not None:
        m &= (t["date_dt"] >= min_sep).to_numpy()
    if max_sep is not None:
        m &= (t["date_dt"] <= max_sep).to_numpy()
    if pct is not None:
        m &= (t["percent_valid"] >= pct).to_numpy()
    if sensors is not None:
        m &= t["sensor"].isin(sensors).to_numpy()
    return m


def _wrap(geom: shapely.Geometry) -> shapely.Geometry:
    """Longitudes back into [-180, 180] vertex by vertex (the raw short-way form)."""
    return shapely.transform(
        geom, lambda xy: np.column_stack([(xy[:, 0] + 180) % 360 - 180, xy[:, 1]])
    )


def regions() -> list[tuple[str, dict, shapely.Geometry]]:
    """(label, search kwargs giving the region, the region with continuous longitudes)."""
    out = []
    rng = np.random.default_rng(11)

    def box_case(label, w, s, e, n, as_bbox=False):
        ext = shapely.box(w, s, e, n)
        if as_bbox:
            out.append((label, {"bbox": (w, s, e, n)}, shapely.segmentize(ext, 1.0)))
        else:
            out.append((label, {"geometry": _wrap(ext)}, ext))

    box_case("south pole cap", -180, -90, 180, -88.5, as_bbox=True)
    box_case("near south pole", 30, -89.6, 60, -89.0)
    box_case("antarctic across 180", 178, -80, 183, -77)
    box_case("antarctic 180 east side", -179.0, -82, -177, -80)
    box_case("north pole cap", -180, 88.8, 180, 90, as_bbox=True)
    box_case("arctic across 180", 179, 72, 182, 74)
    box_case("alaska straddling 60N", -148, 59.5, -146, 60.5)
    box_case("alps", 8, 45.5, 10, 46.5, as_bbox=True)
    box_case("patagonia", -74, -50, -73, -49)
    box_case("zone 60 across 180", 179.5, 55, 180.8, 56)
    box_case("greenland", -50, 68, -47, 70, as_bbox=True)
    # pole-encircling region written as a raw ring (short-way edges, winding 360 degrees)
    lon = np.linspace(-180, 180, 13)[:-1]
    ring = shapely.Polygon(np.column_stack([lon, np.full(lon.size, -88.0)]))
    cap = shapely.Polygon([(-180, -88), (180, -88), (180, -90), (-180, -90)])
    out.append(("south pole raw ring", {"geometry": ring}, shapely.segmentize(cap, 1.0)))
    for k in range(10):  # random boxes in random clusters
        lon0, lat0 = [(-100, -75), (0, -70), (140, -68), (-40, 72), (-60, 78), (9, 46), (88, 28)][
            k % 7
        ]
        w = lon0 + rng.uniform(-5, 5)
        s = lat0 + rng.uniform(-2, 2)
        box_case(
            f"random {k}",
            w,
            s,
            w + rng.uniform(0.2, 4),
            s + rng.uniform(0.1, 1.5),
            as_bbox=bool(k % 2),
        )
    out.append(
        (
            "point south pole",
            {"geometry": shapely.Point(0, -90 + 1e-9)},
            shapely.Point(0, -90 + 1e-9),
        )
    )
    out.append(
        ("point across 180", {"geometry": shapely.Point(-179.9, -78)}, shapely.Point(180.1, -78))
    )
    return out


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def case() -> Case:
    return make_case()


@pytest.fixture(scope="module")
def catalog_file(case, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "granules.parquet"
    save_catalog(case.table, path)
    return path


def check(found: set, inner: set, outer: set, label: str) -> None:
    missing = inner - found
    extra = found - outer
    assert not missing, f"{label}: {len(missing)} granules missing, e.g. {sorted(missing)[:2]}"
    assert not extra, f"{label}: {len(extra)} granules wrongly returned, e.g. {sorted(extra)[:2]}"


# --------------------------------------------------------------------------- tests


def test_case_has_polar_and_antimeridian_footprints(case):
    lat = np.array([shapely.get_coordinates(g)[:, 1].min() for g in case.table.geometry])
    assert (case.epsg == 3031).sum() > 500 and (case.epsg == 3413).sum() > 500
    # boxes containing a pole and boxes crossing 180
    contains_pole = (
        (case.boxes[:, 0] < 0)
        & (case.boxes[:, 2] > 0)
        & (case.boxes[:, 1] < 0)
        & (case.boxes[:, 3] > 0)
    )
    assert (
        contains_pole[case.epsg == 3031].sum() >= 50
        and contains_pole[case.epsg == 3413].sum() >= 50
    )
    assert (lat < -89).sum() >= 50
    multi = sum(g.geom_type == "MultiPolygon" for g in case.table.geometry)
    assert multi >= 100  # antimeridian footprints split the RFC 7946 way


def test_spatial_search_matches_brute_force(case, catalog_file):
    total_inner = 0
    for label, kwargs, region_ll in regions():
        inner, outer = truth(case, region_ll)
        found = set(search(**kwargs, catalog=str(catalog_file))["granule_id"])
        check(found, inner, outer, label)
        assert len(outer - inner) <= max(3, 0.1 * len(outer)), f"{label}: tolerance band too wide"
        total_inner += len(inner)
        if label in ("south pole cap", "north pole cap", "antarctic across 180", "arctic across 180",
                     "south pole raw ring", "point south pole", "point across 180", "zone 60 across 180"):  # fmt: skip
            assert inner, f"{label}: the case should have matches"
    assert total_inner > 300


def test_attribute_criteria_match_brute_force(case, catalog_file):
    combos = [
        {"start": "2015-03-01", "end": "2017-06-30", "min_separation": 6, "max_separation": 120},
        {"percent_valid_pixels": 60, "sensors": ["sentinel1", "sentinel2"]},
        {"min_separation": 121, "percent_valid_pixels": 10, "end": "2016"},
    ]
    picked = [
        r
        for r in regions()
        if r[0] in ("south pole cap", "antarctic across 180", "greenland", "alps")
    ]
    for kw in combos:
        end = kw.get("end")
        end_ts = None
        if end is not None:
            end_ts = pd.Timestamp(end) + (
                pd.DateOffset(years=1) if len(end) == 4 else pd.DateOffset(days=1)
            )
            end_ts = end_ts - pd.Timedelta(1, "ns")
        m = attribute_mask(
            case, kw.get("start"), end_ts, kw.get("min_separation"), kw.get("max_separation"),
            kw.get("percent_valid_pixels"), kw.get("sensors"),
        )  # fmt: skip
        for label, rkw, region_ll in picked:
            inner, outer = truth(case, region_ll, m)
            found = set(search(**rkw, **kw, catalog=str(catalog_file))["granule_id"])
            check(found, inner, outer, f"{label} {kw}")
        # no region: attributes only, exact
        found = set(search(**kw, catalog=case.table)["granule_id"])
        assert found == set(case.table["granule_id"][m])


def test_catalog_formats_give_the_same_answer(case, tmp_path):
    sub = case.table.iloc[::7].reset_index(drop=True)
    _, kw, _ = regions()[2]  # antarctic across 180
    expected = set(search(**kw, catalog=sub)["granule_id"])
    assert expected
    for name in ("c.parquet", "c.geojson", "c.json", "c.ndjson"):
        save_catalog(sub, tmp_path / name)
        loaded = load_catalog(tmp_path / name)
        assert list(loaded["granule_id"]) == list(sub["granule_id"])
        assert (loaded["mid_date"] == sub["mid_date"]).all()
        assert set(search(**kw, catalog=str(tmp_path / name))["granule_id"]) == expected, name


def test_limit_returns_the_first_granules_in_table_order(case, catalog_file):
    full = search(bbox=(-180, -90, 180, -60), catalog=str(catalog_file))
    few = search(bbox=(-180, -90, 180, -60), catalog=str(catalog_file), limit=5)
    assert list(few["granule_id"]) == list(full["granule_id"][:5])
    assert few["mid_date"].is_monotonic_increasing


# --------------------------------------------------------------------------- conventions


def _footprint_3031(xmin, ymin, xmax, ymax, n=1) -> shapely.Polygon:
    ring = _box_ring((xmin, ymin, xmax, ymax), n)
    lon, lat = _tr(3031, 4326).transform(ring[:, 0], ring[:, 1])
    return shapely.Polygon(np.column_stack([lon, lat]))


def _one(geom) -> pd.DataFrame:
    t0 = pd.Timestamp("2020-01-01")
    gid = "LC08_L1GT_001113_20200101_20200101_02_T2_X_LC08_L1GT_001113_20200117_20200117_02_T2_G0120V02_P050"
    return granule_table([{
        "granule_id": gid, "url": f"/x/{gid}.nc", "mid_date": t0, "acquisition_date_img1": t0,
        "acquisition_date_img2": t0 + pd.Timedelta(days=16), "date_dt": 16.0, "satellite_img1": "LC08",
        "satellite_img2": "LC08", "sensor": "landsat", "epsg": 3031, "percent_valid": 50.0, "version": 2,
        "resolution": 120.0, "geometry": geom,
    }])  # fmt: skip


def _box_3031_region(x0, y0, x1, y1) -> shapely.Polygon:
    # a tiny region given in lon/lat at a known place of the 3031 plane
    return _footprint_3031(x0, y0, x1, y1, n=8)


def test_polar_footprint_edges_are_straight_in_the_polar_crs():
    # a 400 km square around the south pole given by its 4 corners only
    t = _one(_footprint_3031(-2e5, -2e5, 2e5, 2e5))
    inside = _box_3031_region(-5e3, 1.90e5, 5e3, 1.95e5)
    outside = _box_3031_region(-5e3, 2.05e5, 5e3, 2.10e5)  # inside the lon/lat "circle" reading
    assert len(search(inside, catalog=t)) == 1
    assert len(search(outside, catalog=t)) == 0


def test_antimeridian_footprint_is_not_read_as_spanning_the_globe():
    x, y = _tr(4326, 3031).transform(180.0, -75.0)
    fp = _footprint_3031(x - 1e5, y - 1e5, x + 1e5, y + 1e5)
    assert fp.bounds[0] < -170 and fp.bounds[2] > 170  # its naive lon/lat bbox spans the globe
    t = _one(fp)
    assert len(search(bbox=(-10, -76, 10, -74), catalog=t)) == 0  # far away, inside that bbox
    assert len(search(bbox=(179.0, -75.5, 179.9, -74.5), catalog=t)) == 1
    assert len(search(bbox=(-179.9, -75.5, -179.0, -74.5), catalog=t)) == 1
    assert len(search(bbox=(-179.9, -75.5, -179.0, -74.5), catalog=_one(to_rfc7946(fp)))) == 1


def test_pole_cap_footprint_forms_agree():
    fp = _footprint_3031(-1.5e5, -1e5, 1.2e5, 2e5, n=4)
    for geom in (fp, to_rfc7946(fp)):
        t = _one(geom)
        assert len(search(bbox=(-180, -90, 180, -89.9), catalog=t)) == 1
        assert len(search(shapely.Point(45, -89.5), catalog=t)) == 1
        assert len(search(bbox=(0, -80, 10, -79), catalog=t)) == 0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"start": "2020-01-01", "end": "2019-01-01"}, "after end"),
        ({"bbox": (0, 0, 10, 95)}, "90"),
        ({"geometry": "0,0,1,1,0,1,1,0"}, "valid"),
        ({"start": "not a date"}, "start"),
        ({"sensors": ["landsat", "modis"]}, "landsat, sentinel1, sentinel2"),
        ({"min_separation": 10, "max_separation": 5}, "min_separation"),
        ({"percent_valid_pixels": 150}, "percent_valid_pixels"),
        ({"limit": 0}, "limit"),
        ({"bbox": (0, 0, 1, 1), "geometry": shapely.box(0, 0, 1, 1)}, "not both"),
    ],
)
def test_invalid_inputs_raise(kwargs, fragment, case):
    with pytest.raises(InvalidInputError, match=fragment):
        search(catalog=case.table.iloc[:10], **kwargs)


def test_missing_catalog_file_raises(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        search(bbox=(0, 0, 1, 1), catalog=str(tmp_path / "nope.parquet"))
    with pytest.raises(InvalidInputError, match="folder"):
        search(bbox=(0, 0, 1, 1), catalog=str(tmp_path))


# --------------------------------------------------------------------------- item / legacy rows

REAL_CATALOG = REAL / "catalog"


def test_stac_item_fields_become_a_row():
    from itslive_dask.discovery.stac import item_to_record, row_to_item

    gid = "LC08_L1GT_232113_20201213_20201219_02_T2_X_LC08_L1GT_232113_20201229_20210308_02_T2_G0120V02_P073"
    key = f"velocity_image_pair/landsatOLI/v02/S70W070/{gid}.nc"
    item = {  # fields as written by the ITS_LIVE item generator (see the catalog README)
        "type": "Feature", "id": gid, "collection": "itslive-granules",
        "geometry": {"type": "Polygon", "coordinates": [[[-70, -70], [-69, -70], [-69, -69], [-70, -69], [-70, -70]]]},
        "properties": {
            "datetime": "2020-12-21T14:10:00Z", "start_datetime": "2020-12-13T14:09:56Z",
            "end_datetime": "2020-12-29T14:09:56Z", "date_dt": 16.0, "percent_valid_pixels": 71,
            "platform": "LC08", "proj:code": "EPSG:3031", "version": "002",
        },
        "assets": {"data": {"href": f"https://its-live-data.s3.amazonaws.com/{key}",
                            "alternate": {"s3": {"href": f"s3://its-live-data/{key}"}}}},
    }  # fmt: skip
    rec = item_to_record(item)
    assert rec["url"] == f"s3://its-live-data/{key}"
    assert rec["https_url"] == f"https://its-live-data.s3.amazonaws.com/{key}"
    assert rec["epsg"] == 3031 and rec["version"] == 2 and rec["resolution"] == 120.0
    assert rec["percent_valid"] == 71.0  # the item's property wins over the name's P073
    assert rec["mid_date"] == pd.Timestamp("2020-12-21T14:10:00")
    assert rec["acquisition_date_img1"] == pd.Timestamp("2020-12-13T14:09:56")
    assert rec["sensor"] == "landsat" and rec["satellite_img2"] == "LC08"
    back = item_to_record(row_to_item(rec))
    for k in (
        "granule_id",
        "url",
        "https_url",
        "mid_date",
        "date_dt",
        "epsg",
        "percent_valid",
        "version",
    ):
        assert back[k] == rec[k], k


def test_real_legacy_answers_become_rows():
    from itslive_dask.discovery.legacy import legacy_record

    for name in ("nsidc_itslive-search_urls_response_2020-06-29_first10.json",
                 "nsidc_itslive-search_urls_response_2020-11_first10.json"):  # fmt: skip
        objs = json.loads((REAL_CATALOG / name).read_text())
        t = granule_table([legacy_record(o) for o in objs])
        assert len(t) == 10
        assert t.geometry.isna().all()
        assert set(t["epsg"]) <= {32623, 32627, 32628}
        assert (t["version"] == 1).all() and (t["resolution"] == 240.0).all()
    first = legacy_record(
        json.loads(
            (
                REAL_CATALOG / "nsidc_itslive-search_urls_response_2020-06-29_first10.json"
            ).read_text()
        )[0]
    )
    # LC08 ... 20130926 _X_ LE07 ... 20120814: 408 days apart, P045
    assert first["date_dt"] == 408.0 and first["percent_valid"] == 45.0
    assert first["satellite_img1"] == "LC08" and first["satellite_img2"] == "LE07"
    assert first["mid_date"] == pd.Timestamp("2013-03-06")


def test_dates_outside_pandas_range_give_the_right_set(case, catalog_file):
    """Defect: ``end="9999-12-31"`` raised a raw OverflowError; dates past 2262-04-11 or
    before 1677 must behave as open or empty bounds."""
    n = len(case.table)
    assert len(search(end="9999-12-31", catalog=str(catalog_file))) == n
    assert len(search(end="2262", catalog=str(catalog_file))) == n
    assert len(search(start="1500-01-01", catalog=str(catalog_file))) == n
    assert len(search(start="2300", catalog=str(catalog_file))) == 0
    assert len(search(end="1600-06", catalog=str(catalog_file))) == 0
    with pytest.raises(InvalidInputError, match="not a valid date"):
        search(end="2021-02-30", catalog=str(catalog_file))
