"""Footprint / region intersection that stays right at the poles and across 180 degrees.

Granule footprints are lon/lat polygons (EPSG:4326), but the granules themselves live in a
polar stereographic or UTM grid. A lon/lat polygon of a granule around a pole, or of one that
straddles the antimeridian, is not a sensible planar polygon in lon/lat, so intersection tests
are done in a *test frame* chosen from the search region:

* EPSG:3031 when the region lies in the southern hemisphere and reaches south of -60 deg,
* EPSG:3413 when it lies in the northern hemisphere and reaches north of 60 deg,
* otherwise lon/lat, with longitudes unwrapped (no jump at +-180) and the region repeated
  at -720, -360, 0, +360 and +720 deg.

How coordinates are read (the convention of the ITS_LIVE STAC item generator, which
transforms points of the granule's projected outline to lon/lat):

* An edge between consecutive vertices takes the *short way* in longitude: an edge from
  179 deg to -179 deg crosses the antimeridian (2 deg long), it does not go around the globe.
  A ring whose unwrapped longitudes end 360 deg away from where they started encircles the
  pole on the side of its mean latitude.
* Exceptions, written the RFC 7946 way: edges whose two ends are both on the +-180 meridian,
  and edges touching a pole (latitude +-90), are taken literally (a cap polygon
  ``[-180, -90] ... [180, -85] ... [-180, -85]`` is the cap south of -85 deg).
* Footprint edges are straight lines in the test frame (exact for a granule in the polar CRS
  given by points of its outline); region edges are straight lines in lon/lat (followed every
  0.05 deg before projection, as :func:`itslive_dask.geo.region.to_crs` does for clipping).

Footprints with every vertex in the other hemisphere are never matched in a polar frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from pyproj import Transformer

from itslive_dask.geo.transform import transformer

__all__ = [
    "FootprintIndex",
    "choose_frame",
    "lonlat_unwrapped",
    "polar_footprint",
    "short_way_polygon_ok",
    "to_rfc7946",
]

logger = logging.getLogger(__name__)

POLAR_LATITUDE = 60.0
SOUTH_EPSG = 3031
NORTH_EPSG = 3413
_SHIFTS = (-720.0, -360.0, 0.0, 360.0, 720.0)
#: Region edges are followed in lon/lat at this step before projection to a polar frame
#: (a chord error below 1 m).
REGION_STEP_DEG = 0.05


# --------------------------------------------------------------------------- frames


def choose_frame(region: shapely.Geometry) -> int | None:
    """EPSG code of the polar test frame for ``region`` (lon/lat), or None for lon/lat.

    Examples
    --------
    >>> import shapely
    >>> choose_frame(shapely.box(-100, -76, -98, -74)), choose_frame(shapely.box(5, 45, 6, 46))
    (3031, None)
    """
    lat = shapely.get_coordinates(region)[:, 1]
    if lat.size == 0:
        return None
    if lat.max() < 0 and lat.min() <= -POLAR_LATITUDE:
        return SOUTH_EPSG
    if lat.min() > 0 and lat.max() >= POLAR_LATITUDE:
        return NORTH_EPSG
    return None


# --------------------------------------------------------------------------- rings


def _literal_edges(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Edges (i -> i+1) written the RFC 7946 way: along the 180 meridian or touching a pole."""
    on_180 = np.abs(np.abs(lon) - 180.0) <= 1e-9
    at_pole = np.abs(np.abs(lat) - 90.0) <= 1e-9
    return (on_180[:-1] & on_180[1:]) | at_pole[:-1] | at_pole[1:]


def _jumps(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Edges that cross the antimeridian the short way (|dlon| > 180, not literal)."""
    d = np.diff(lon)
    return (np.abs(d) > 180.0) & ~_literal_edges(lon, lat)


def _unwrap_ring(coords: np.ndarray) -> tuple[np.ndarray, float]:
    """Unwrapped ring coordinates and the total longitude winding (0 or +-360)."""
    lon, lat = coords[:, 0], coords[:, 1]
    d = np.diff(lon)
    jump = _jumps(lon, lat)
    if not jump.any():
        return coords, 0.0
    d = np.where(jump, d - 360.0 * np.round(d / 360.0), d)
    lon_u = np.concatenate([[lon[0]], lon[0] + np.cumsum(d)])
    winding = float(lon_u[-1] - lon_u[0])
    return np.column_stack([lon_u, lat]), winding


def _ring_polygon_lonlat(coords: np.ndarray) -> shapely.Polygon:
    """Exterior ring -> polygon in unwrapped lon/lat (a cap when it encircles a pole)."""
    ring, winding = _unwrap_ring(coords)
    if abs(winding) < 1.0:
        if abs(ring[-1, 0] - ring[0, 0]) > 1e-9:  # not closed after unwrapping
            ring = np.vstack([ring, ring[:1]])
        return shapely.Polygon(ring)
    pole = 90.0 if np.mean(ring[:, 1]) > 0 else -90.0
    end, start = ring[-1, 0], ring[0, 0]
    cap = np.vstack([ring, [[end, pole], [start, pole], ring[0]]])
    return shapely.Polygon(cap)


def _polygons(geom: shapely.Geometry) -> list[shapely.Polygon]:
    if geom is None or geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom]
    if geom.geom_type in ("MultiPolygon", "GeometryCollection"):
        out: list[shapely.Polygon] = []
        for part in geom.geoms:
            out.extend(_polygons(part))
        return out
    return []


def _valid(geom: shapely.Geometry) -> shapely.Geometry:
    if geom.is_valid:
        return geom
    fixed = shapely.make_valid(geom)
    parts = _polygons(fixed)
    if parts:
        return shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0]
    return fixed


def lonlat_unwrapped(geom: shapely.Geometry) -> shapely.Geometry:
    """A lon/lat geometry with continuous longitudes (may leave [-180, 180]).

    Antimeridian-crossing rings are unwrapped, rings encircling a pole become a cap; points and
    lines are returned unchanged. The result is a valid planar geometry in "lon/lat with
    unwrapped longitude".
    """
    if geom is None or geom.is_empty:
        return geom
    if geom.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return geom
    parts = []
    for poly in _polygons(geom):
        shell = _ring_polygon_lonlat(np.asarray(poly.exterior.coords)[:, :2])
        holes = []
        lo, hi = shell.bounds[0], shell.bounds[2]
        for interior in poly.interiors:
            ring, _ = _unwrap_ring(np.asarray(interior.coords)[:, :2])
            shift = 360.0 * np.round((lo + hi) / 2.0 / 360.0 - ring[:, 0].mean() / 360.0)
            holes.append(ring + np.array([shift, 0.0]))
        parts.append(
            _valid(shapely.Polygon(shell.exterior.coords, holes)) if holes else _valid(shell)
        )
    flat = [p for part in parts for p in _polygons(part)]
    if not flat:
        return shapely.Polygon()
    return flat[0] if len(flat) == 1 else _valid(shapely.MultiPolygon(flat))


def short_way_polygon_ok(geom: shapely.Geometry) -> bool:
    """True when ``geom`` only makes sense read the short way: some ring crosses the
    antimeridian (|dlon| > 180) and, unwrapped, every part is a valid polygon of positive area.
    """
    polys = _polygons(geom)
    if not polys:
        return False
    crossing = False
    for poly in polys:
        rings = [np.asarray(r.coords)[:, :2] for r in (poly.exterior, *poly.interiors)]
        crossing |= any(bool(_jumps(r[:, 0], r[:, 1]).any()) for r in rings)
        shell = _ring_polygon_lonlat(rings[0])
        if not shell.is_valid or shell.area <= 0:
            return False
    return crossing


def _densify_literal(coords: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Insert points along literal +-180-to-+-180 parallels so they survive projection."""
    lon, lat = coords[:, 0], coords[:, 1]
    d = np.abs(np.diff(lon))
    on_180 = np.abs(np.abs(lon) - 180.0) <= 1e-9
    long_edges = np.flatnonzero(on_180[:-1] & on_180[1:] & (d >= 180.0))
    if long_edges.size == 0:
        return coords
    out = [coords[: long_edges[0] + 1]]
    prev = long_edges[0]
    for k, i in enumerate(long_edges):
        if k:
            out.append(coords[prev + 1 : i + 1])
        n = int(np.ceil(d[i] / step))
        t = np.linspace(0.0, 1.0, n + 1)[1:-1]
        out.append(
            np.column_stack(
                [lon[i] + t * (lon[i + 1] - lon[i]), lat[i] + t * (lat[i + 1] - lat[i])]
            )
        )
        prev = i
    out.append(coords[prev + 1 :])
    return np.vstack(out)


def polar_footprint(geom: shapely.Geometry, epsg: int) -> shapely.Geometry:
    """Project a lon/lat footprint to a polar frame, edges straight in that frame."""
    tr = _from_lonlat(epsg)
    parts = []
    for poly in _polygons(geom):
        rings = []
        for ring in (poly.exterior, *poly.interiors):
            c = _densify_literal(np.asarray(ring.coords)[:, :2])
            x, y = tr.transform(c[:, 0], c[:, 1])
            rings.append(np.column_stack([x, y]))
        if not np.isfinite(rings[0]).all():
            continue
        parts.append(
            _valid(shapely.Polygon(rings[0], [r for r in rings[1:] if np.isfinite(r).all()]))
        )
    flat = [p for part in parts for p in _polygons(part)]
    if not flat:
        return shapely.Polygon()
    return flat[0] if len(flat) == 1 else _valid(shapely.MultiPolygon(flat))


def region_in_frame(region: shapely.Geometry, frame: int | None) -> shapely.Geometry:
    """The search region in a test frame (edges straight in lon/lat, densified)."""
    unwrapped = lonlat_unwrapped(region)
    if frame is None:
        shifted = [shapely.affinity.translate(unwrapped, xoff=s) for s in _SHIFTS]
        return shapely.union_all(shifted)
    dense = shapely.segmentize(unwrapped, REGION_STEP_DEG)
    tr = _from_lonlat(frame)
    projected = shapely.transform(
        dense, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    return _valid(projected)


def to_rfc7946(geom: shapely.Geometry) -> shapely.Geometry:
    """Cut a lon/lat geometry at the antimeridian into parts within [-180, 180] (RFC 7946).

    Used to send a region to a server that compares geometries in plain lon/lat.
    """
    unwrapped = lonlat_unwrapped(geom)
    minx, _, maxx, _ = unwrapped.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return unwrapped
    parts = []
    for k in range(-2, 3):
        window = shapely.box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0)
        piece = unwrapped.intersection(window)
        if not piece.is_empty:
            parts.extend(_polygons(shapely.affinity.translate(piece, xoff=-360.0 * k)))
    parts = [p for p in parts if p.area > 0]
    if len(parts) == 1:
        return parts[0]
    return shapely.MultiPolygon(parts)


# --------------------------------------------------------------------------- index


class FootprintIndex:
    """Spatial index of footprints, answering polar- and antimeridian-safe intersections.

    Parameters
    ----------
    footprints
        Lon/lat footprints (None or empty for "unknown"; those never match).

    Notes
    -----
    Projected footprints and one STRtree are built lazily per test frame and reused, so a
    server answers many searches on the same catalog cheaply.
    """

    def __init__(self, footprints: Sequence[shapely.Geometry | None]):
        geoms = np.empty(len(footprints), dtype=object)
        geoms[:] = list(footprints)
        self._geoms = geoms
        self._frames: dict[int | None, tuple[shapely.STRtree, np.ndarray]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._geoms)

    def _known(self) -> np.ndarray:
        g = self._geoms
        return np.flatnonzero(~(shapely.is_missing(g) | shapely.is_empty(g)))

    def _build(self, frame: int | None) -> tuple[shapely.STRtree, np.ndarray]:
        pos = self._known()
        geoms = self._geoms[pos]
        if frame is None:
            out = _lonlat_frame(geoms)
        else:
            coords, idx = shapely.get_coordinates(geoms, return_index=True)
            lat = coords[:, 1]
            if frame == SOUTH_EPSG:
                keep = np.zeros(len(geoms), bool)
                np.logical_or.at(keep, idx, lat < 0)
            else:
                keep = np.zeros(len(geoms), bool)
                np.logical_or.at(keep, idx, lat > 0)
            pos, geoms = pos[keep], geoms[keep]
            out = _polar_frame(geoms, frame)
        good = ~shapely.is_empty(out)
        pos, out = pos[good], out[good]
        logger.debug("footprint index: %d footprints in frame %s", len(pos), frame or "lon/lat")
        return shapely.STRtree(out), pos

    def frame(self, frame: int | None) -> tuple[shapely.STRtree, np.ndarray]:
        """(STRtree, positions) of the footprints in a test frame (built once, thread-safe)."""
        with self._lock:
            if frame not in self._frames:
                self._frames[frame] = self._build(frame)
            return self._frames[frame]

    def query(self, region: shapely.Geometry) -> np.ndarray:
        """Sorted positions of the footprints that intersect ``region`` (lon/lat)."""
        if len(self._geoms) == 0:
            return np.zeros(0, dtype=np.int64)
        frame = choose_frame(region)
        target = region_in_frame(region, frame)
        tree, pos = self.frame(frame)
        hits = tree.query(target, predicate="intersects")
        return np.unique(pos[hits]).astype(np.int64)


def _lonlat_frame(geoms: np.ndarray) -> np.ndarray:
    out = np.array(geoms, dtype=object)
    if len(geoms) == 0:
        return out
    coords, idx = shapely.get_coordinates(geoms, return_index=True)
    lon, lat = coords[:, 0], coords[:, 1]
    same = idx[:-1] == idx[1:]
    flag = np.zeros(len(geoms), dtype=bool)
    np.logical_or.at(flag, idx[:-1], same & _jumps(lon, lat))
    for i in np.flatnonzero(flag):
        out[i] = lonlat_unwrapped(geoms[i])
    bad = ~shapely.is_valid(out)
    for i in np.flatnonzero(bad):
        out[i] = _valid(out[i])
    return out


def _polar_frame(geoms: np.ndarray, epsg: int) -> np.ndarray:
    if len(geoms) == 0:
        return np.array([], dtype=object)
    coords, idx = shapely.get_coordinates(geoms, return_index=True)
    lon, lat = coords[:, 0], coords[:, 1]
    on_180 = np.abs(np.abs(lon) - 180.0) <= 1e-9
    same = idx[:-1] == idx[1:]
    special = same & on_180[:-1] & on_180[1:] & (np.abs(np.diff(lon)) >= 180.0)
    flag = np.zeros(len(geoms), dtype=bool)
    np.logical_or.at(flag, idx[:-1], special)
    x, y = _from_lonlat(epsg).transform(lon, lat)
    out = shapely.set_coordinates(np.array(geoms, dtype=object), np.column_stack([x, y]))
    finite = np.ones(len(geoms), dtype=bool)
    np.logical_and.at(finite, idx, np.isfinite(x) & np.isfinite(y))
    for i in np.flatnonzero(flag | ~finite):
        out[i] = polar_footprint(geoms[i], epsg)
    bad = ~shapely.is_valid(out)
    for i in np.flatnonzero(bad):
        out[i] = _valid(out[i])
    return out


def _from_lonlat(epsg: int) -> Transformer:
    return transformer(4326, epsg)


# --------------------------------------------------------------------------- granule boxes

#: Points per edge when a granule's projected box is turned into a lon/lat footprint.
FOOTPRINT_POINTS_PER_EDGE = 100


def box_to_lonlat(bounds: tuple[float, float, float, float], epsg: int) -> Any:
    """A projected box (pixel-edge bounds) as a lon/lat geometry.

    Edges are densified (:data:`FOOTPRINT_POINTS_PER_EDGE` points each) before the
    transform so they bend as they do on the ground. A box around a pole reaches the pole;
    a box across the antimeridian is split at +-180 degrees (RFC 7946).

    Raises
    ------
    ValueError
        When part of the box is outside the valid area of ``epsg``.
    """
    import shapely.affinity

    xmin, ymin, xmax, ymax = bounds
    n = FOOTPRINT_POINTS_PER_EDGE
    t = np.linspace(0.0, 1.0, n, endpoint=False)
    xs = np.concatenate(
        [xmin + t * (xmax - xmin), np.full(n, xmax), xmax - t * (xmax - xmin), np.full(n, xmin)]
    )
    ys = np.concatenate(
        [np.full(n, ymin), ymin + t * (ymax - ymin), np.full(n, ymax), ymax - t * (ymax - ymin)]
    )
    lon, lat = transformer(epsg, 4326).transform(xs, ys)
    lon, lat = np.asarray(lon), np.asarray(lat)
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise ValueError(f"the grid box {bounds} is outside the valid area of EPSG:{epsg}")

    for pole in (-90.0, 90.0):
        px, py = transformer(4326, epsg).transform(0.0, pole)
        if np.isfinite(px) and np.isfinite(py) and xmin <= px <= xmax and ymin <= py <= ymax:
            return _polar_cap(lon, lat, pole)

    ulon = np.degrees(np.unwrap(np.radians(lon)))
    poly = shapely.Polygon(np.column_stack([ulon, lat]))
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    if ulon.min() >= -180.0 and ulon.max() <= 180.0:
        return poly
    parts = []
    for shift in (-360.0, 0.0, 360.0):
        piece = poly.intersection(shapely.box(-180.0 + shift, -90.0, 180.0 + shift, 90.0))
        if not piece.is_empty and piece.area > 0:
            parts.extend(_box_parts(shapely.affinity.translate(piece, xoff=-shift)))
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _polar_cap(lon: np.ndarray, lat: np.ndarray, pole: float) -> Any:
    """Polygon of a ring that circles a pole: longitudes sorted, closed along the pole."""

    order = np.argsort(lon, kind="stable")
    lon_s, lat_s = lon[order], lat[order]
    # latitude where the ring crosses +-180 (between the last and first sorted points)
    span = (lon_s[0] + 360.0) - lon_s[-1]
    frac = (180.0 - lon_s[-1]) / span if span > 0 else 0.0
    lat_180 = lat_s[-1] + frac * (lat_s[0] - lat_s[-1])
    ring = [
        (-180.0, lat_180),
        *zip(lon_s, lat_s, strict=True),
        (180.0, lat_180),
        (180.0, pole),
        (-180.0, pole),
    ]
    poly = shapely.Polygon(ring)
    return poly if poly.is_valid else shapely.make_valid(poly)


def _box_parts(geom: Any) -> list[Any]:
    if geom.geom_type == "Polygon":
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and g.area > 0]
