"""Regions of interest: parse what users type into one lon/lat shapely geometry.

Accepted forms (everywhere a ``geometry=``/``polygon=``/``bbox=`` is taken): a GeoJSON dict
(Polygon, MultiPolygon, Feature, FeatureCollection) or its JSON text, a shapely geometry, WKT,
a list of ``(lon, lat)`` pairs (the tutorial's ``polygon_to_geojson`` input), the legacy API's
``"lon,lat,lon,lat,..."`` string, or a bbox ``(min_lon, min_lat, max_lon, max_lat)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
import shapely.geometry
import shapely.wkt
from pyproj import CRS

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.transform import transformer

__all__ = [
    "box_to_geojson",
    "default_crs",
    "parse_bbox",
    "parse_region",
    "polygon_to_geojson",
    "to_crs",
]

from itslive_dask.types import Region


def box_to_geojson(bbox: Sequence[float]) -> dict:
    """GeoJSON Polygon of a lon/lat box ``[min_lon, min_lat, max_lon, max_lat]``.

    Examples
    --------
    >>> box_to_geojson([-49.79, 69.06, -48.55, 69.25])["type"]
    'Polygon'
    """
    return shapely.geometry.mapping(shapely.geometry.box(*parse_bbox(bbox)))


def polygon_to_geojson(coords: Sequence[Sequence[float]]) -> dict:
    """GeoJSON Polygon from a list of ``(lon, lat)`` pairs (closed or not)."""
    return shapely.geometry.mapping(_polygon_from_pairs(coords))


def parse_bbox(bbox: Any) -> tuple[float, float, float, float]:
    """Validate a lon/lat bbox given as 4 numbers or a ``"a,b,c,d"`` string."""
    if isinstance(bbox, str):
        parts = [p for p in bbox.replace(" ", ",").split(",") if p]
    else:
        parts = list(bbox) if bbox is not None else []
    try:
        vals = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"bbox must be 4 numbers min_lon,min_lat,max_lon,max_lat; got {bbox!r}"
        ) from None
    if len(vals) != 4 or not all(np.isfinite(vals)):
        raise InvalidInputError(
            f"bbox must be 4 numbers min_lon,min_lat,max_lon,max_lat; got {bbox!r}"
        )
    w, s, e, n = vals
    _check_lonlat(np.array([w, e]), np.array([s, n]), what="bbox")
    if not (w < e and s < n):
        raise InvalidInputError(
            f"bbox must have min_lon < max_lon and min_lat < max_lat; got {bbox!r}"
        )
    return w, s, e, n


def parse_region(geometry: Region | None = None, bbox: Any = None) -> shapely.Geometry:
    """Turn a user region into a valid lon/lat shapely (Multi)Polygon.

    Parameters
    ----------
    geometry
        GeoJSON dict or text, shapely geometry, WKT, ``[(lon, lat), ...]`` or
        ``"lon,lat,lon,lat,..."``.
    bbox
        ``(min_lon, min_lat, max_lon, max_lat)``; used when ``geometry`` is None.

    Raises
    ------
    InvalidInputError
        Neither or both given, unreadable input, latitudes beyond +-90, a polygon with fewer
        than 3 distinct points, a self-intersecting polygon, or zero area.
    """
    if geometry is None and bbox is None:
        raise InvalidInputError(
            "give a region: geometry (GeoJSON, WKT, list of (lon, lat)) or bbox"
        )
    if geometry is not None and bbox is not None:
        raise InvalidInputError("give either geometry or bbox, not both")
    if bbox is not None:
        return shapely.geometry.box(*parse_bbox(bbox))
    geom = _to_shapely(geometry)
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidInputError(f"region must be a Polygon or MultiPolygon, got {geom.geom_type}")
    if geom.is_empty:
        raise InvalidInputError("region is empty")
    coords = shapely.get_coordinates(geom)
    _check_lonlat(coords[:, 0], coords[:, 1], what="region")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise InvalidInputError(f"region polygon is not valid ({reason}); check the vertex order")
    if geom.area <= 0:
        raise InvalidInputError("region polygon has zero area")
    return geom


def default_crs(region: shapely.Geometry) -> CRS:
    """EPSG:3031 for a region south of the equator, EPSG:3413 otherwise (ITS_LIVE's grids)."""
    lat = region.centroid.y
    return CRS.from_epsg(3031 if lat < 0 else 3413)


def to_crs(
    region: shapely.Geometry, crs: Any, *, max_segment_deg: float = 0.01
) -> shapely.Geometry:
    """Project a lon/lat region into ``crs``, densifying edges first so they bend correctly."""
    dense = shapely.segmentize(region, max_segment_deg)
    tr = transformer(4326, crs)
    return shapely.transform(dense, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def _to_shapely(geometry: Region) -> shapely.Geometry:
    if isinstance(geometry, shapely.Geometry):
        return geometry
    if isinstance(geometry, str):
        text = geometry.strip()
        if text.startswith("{"):
            try:
                return _to_shapely(json.loads(text))
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"region is not valid GeoJSON: {exc}") from None
        if text[:1].isalpha():
            try:
                return shapely.wkt.loads(text)
            except shapely.errors.ShapelyError as exc:
                raise InvalidInputError(f"region is not valid WKT: {exc}") from None
        try:
            vals = [float(v) for v in text.replace(" ", ",").split(",") if v]
        except ValueError:
            raise InvalidInputError(f"cannot read region {geometry[:80]!r}") from None
        if len(vals) % 2:
            raise InvalidInputError("polygon string must have an even number of values lon,lat,...")
        return _polygon_from_pairs(list(zip(vals[::2], vals[1::2], strict=True)))
    if isinstance(geometry, Mapping):
        gtype = geometry.get("type")
        if gtype == "Feature":
            return _to_shapely(geometry.get("geometry") or {})
        if gtype == "FeatureCollection":
            parts = [_to_shapely(f) for f in geometry.get("features", [])]
            if not parts:
                raise InvalidInputError("region FeatureCollection has no features")
            return shapely.union_all(parts)
        try:
            return shapely.geometry.shape(geometry)
        except Exception as exc:  # shapely raises several types for bad GeoJSON
            raise InvalidInputError(f"region is not a valid GeoJSON geometry: {exc}") from None
    if isinstance(geometry, Sequence):
        return _polygon_from_pairs(geometry)  # type: ignore[arg-type]
    raise InvalidInputError(f"cannot use {type(geometry).__name__} as a region")


def _polygon_from_pairs(coords: Sequence[Sequence[float]]) -> shapely.Polygon:
    try:
        arr = np.asarray(coords, dtype="float64")
    except (TypeError, ValueError):
        raise InvalidInputError("polygon must be a list of (lon, lat) pairs") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidInputError("polygon must be a list of (lon, lat) pairs")
    if len(np.unique(arr, axis=0)) < 3:
        raise InvalidInputError("polygon needs at least 3 distinct (lon, lat) points")
    _check_lonlat(arr[:, 0], arr[:, 1], what="polygon")
    return shapely.Polygon(arr)


def _check_lonlat(lon: np.ndarray, lat: np.ndarray, *, what: str) -> None:
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise InvalidInputError(f"{what} has non-finite coordinates")
    if np.any(np.abs(lat) > 90):
        raise InvalidInputError(
            f"{what} has latitudes beyond +-90 degrees (is it lat,lon instead of lon,lat?)"
        )
    if np.any(np.abs(lon) > 360):
        raise InvalidInputError(f"{what} has longitudes beyond +-360 degrees")
