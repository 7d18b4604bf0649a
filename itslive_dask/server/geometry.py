"""GeoJSON geometries of requests (``intersects``): every RFC 7946 type, bounded in size.

Polygons go through :func:`itslive_dask.discovery.query.region_from_input` (short-way
antimeridian rings, rings around a pole). Points, lines and their multi-forms are taken
literally in lon/lat. A GeometryCollection is split into its members: an item matches when
its footprint intersects any of them. The spatial test itself is the package's polar- and
antimeridian-safe :class:`itslive_dask.geo.footprints.FootprintIndex`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely
import shapely.geometry

from itslive_dask.discovery.query import region_from_input
from itslive_dask.errors import InvalidInputError

__all__ = ["GEOMETRY_TYPES", "MAX_GEOMETRY_PARTS", "MAX_VERTICES", "geojson_parts"]

GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)
#: Largest number of vertices accepted in one request geometry.
MAX_VERTICES = 100_000
#: Largest number of members of a GeometryCollection (nested collections included).
MAX_GEOMETRY_PARTS = 1_000


def _positions(coords: Any, depth: int, what: str) -> np.ndarray:
    """Nested coordinate arrays of a fixed depth -> (n, 2) float array, validated."""

    def flat(value: Any, level: int) -> list:
        if level == 0:
            if (
                not isinstance(value, list | tuple)
                or not 2 <= len(value) <= 3
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            ):
                raise InvalidInputError(f"{what}: a position must be [lon, lat], got {value!r:.80}")
            return [value[:2]]
        if not isinstance(value, list | tuple):
            raise InvalidInputError(f"{what}: coordinates are not nested {depth} deep")
        out: list = []
        for v in value:
            out.extend(flat(v, level - 1))
            if len(out) > MAX_VERTICES:
                raise InvalidInputError(f"{what} has more than {MAX_VERTICES} vertices")
        return out

    try:
        arr = np.asarray(flat(coords, depth), dtype="float64").reshape(-1, 2)
    except OverflowError:
        raise InvalidInputError(f"{what}: coordinates must be finite numbers") from None
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{what}: coordinates must be finite numbers")
    if np.any(np.abs(arr[:, 1]) > 90) or np.any(np.abs(arr[:, 0]) > 180):
        raise InvalidInputError(f"{what}: coordinates must be lon -180..180, lat -90..90")
    return arr


_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2}


def geojson_parts(value: Mapping[str, Any], what: str = "intersects") -> list[shapely.Geometry]:
    """A GeoJSON geometry -> lon/lat shapely geometries whose union is the region.

    Raises
    ------
    InvalidInputError
        Unknown types, malformed or non-finite coordinates, latitudes beyond 90, invalid
        polygons, more than :data:`MAX_VERTICES` vertices or :data:`MAX_GEOMETRY_PARTS` parts.
    """
    out: list[shapely.Geometry] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        geom, level = stack.pop()
        if not isinstance(geom, Mapping):
            raise InvalidInputError(f"{what} must be a GeoJSON geometry object")
        kind = geom.get("type")
        if kind not in GEOMETRY_TYPES:
            raise InvalidInputError(
                f"{what}: unknown geometry type {kind!r:.50}; use one of {', '.join(GEOMETRY_TYPES)}"
            )
        if kind == "GeometryCollection":
            members = geom.get("geometries")
            if not isinstance(members, list) or level > 8:
                raise InvalidInputError(f"{what}: a GeometryCollection needs a 'geometries' list")
            if len(out) + len(stack) + len(members) > MAX_GEOMETRY_PARTS:
                raise InvalidInputError(f"{what} has more than {MAX_GEOMETRY_PARTS} parts")
            stack.extend((m, level + 1) for m in members)
            continue
        coords = geom.get("coordinates")
        if kind in _DEPTH:
            arr = _positions(coords, _DEPTH[kind], what)
            if kind == "Point":
                out.append(shapely.Point(arr[0]))
            elif kind == "MultiPoint":
                if len(arr) == 0:
                    raise InvalidInputError(f"{what}: empty MultiPoint")
                out.append(shapely.MultiPoint(arr))
            elif kind == "LineString":
                if len(arr) < 2:
                    raise InvalidInputError(f"{what}: a LineString needs 2 or more positions")
                out.append(shapely.LineString(arr))
            else:
                lines = []
                for line in coords or ():  # validated by _positions above
                    part = _positions(line, 1, what)
                    if len(part) < 2:
                        raise InvalidInputError(f"{what}: a LineString needs 2 or more positions")
                    lines.append(shapely.LineString(part))
                if not lines:
                    raise InvalidInputError(f"{what}: empty MultiLineString")
                out.append(shapely.MultiLineString(lines))
            continue
        # polygons: validate the coordinates here, the ring rules in region_from_input
        _positions(coords, 2 if kind == "Polygon" else 3, what)
        try:
            region = region_from_input({"type": kind, "coordinates": coords})
        except InvalidInputError as exc:
            raise InvalidInputError(f"{what}: {exc}") from None
        if region is None or region.is_empty:
            raise InvalidInputError(f"{what}: empty {kind}")
        out.append(region)
    if not out:
        raise InvalidInputError(f"{what}: empty GeometryCollection")
    return out
