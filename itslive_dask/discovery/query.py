"""A validated search query and its evaluation on a granule table (shared by every backend).

The search backends (STAC API, legacy API, local catalog file) and the local search server all
turn their inputs into one :class:`SearchQuery` and use :func:`match_query` to decide, on a
granule table, which rows satisfy it. Results are therefore the same whoever evaluates them.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.geometry

from itslive_dask.discovery.filters import check_percent, check_sensors, check_separation
from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.footprints import FootprintIndex, short_way_polygon_ok
from itslive_dask.geo.region import parse_bbox, parse_region

__all__ = ["SearchQuery", "make_query", "match_query", "parse_time", "region_from_input"]

_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


@dataclass(frozen=True)
class SearchQuery:
    """A validated search: every field is optional (None = no constraint).

    Attributes
    ----------
    region
        Lon/lat shapely geometry (Polygon, MultiPolygon or Point) the footprints must intersect.
    start, end
        Inclusive bounds on ``mid_date`` (naive UTC timestamps).
    min_separation, max_separation
        Inclusive bounds on ``date_dt`` (days).
    min_percent_valid
        Minimum ``percent_valid`` (inclusive).
    sensors
        Sensor families to keep.
    versions
        Product versions to keep.
    limit
        Maximum number of granules returned.
    """

    region: shapely.Geometry | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    min_separation: float | None = None
    max_separation: float | None = None
    min_percent_valid: float | None = None
    sensors: tuple[str, ...] | None = None
    versions: tuple[int, ...] | None = None
    limit: int | None = None

    def params(self) -> dict[str, Any]:
        """A JSON-friendly summary (for manifests and logs)."""
        out: dict[str, Any] = {}
        if self.region is not None:
            out["region"] = shapely.geometry.mapping(self.region)
        for key in ("start", "end"):
            v = getattr(self, key)
            if v is not None:
                out[key] = v.isoformat()
        for key in ("min_separation", "max_separation", "min_percent_valid", "limit"):
            v = getattr(self, key)
            if v is not None:
                out[key] = v
        if self.sensors is not None:
            out["sensors"] = list(self.sensors)
        if self.versions is not None:
            out["versions"] = list(self.versions)
        return out


def make_query(
    geometry: Any = None,
    *,
    bbox: Any = None,
    start: Any = None,
    end: Any = None,
    min_separation: Any = None,
    max_separation: Any = None,
    percent_valid_pixels: Any = None,
    sensors: Any = None,
    version: Any = None,
    limit: Any = None,
) -> SearchQuery:
    """Validate user inputs into a :class:`SearchQuery` (see :func:`itslive_dask.discovery.api`).

    Raises
    ------
    InvalidInputError
        For any invalid argument, with a message naming it.
    """
    region = region_from_input(geometry, bbox)
    t0 = parse_time(start, "start")
    t1 = parse_time(end, "end", end=True)
    if t0 is not None and t1 is not None and t0 > t1:
        raise InvalidInputError(f"start ({t0.isoformat()}) is after end ({t1.isoformat()})")
    lo, hi = check_separation(min_separation, max_separation)
    pmin = check_percent(percent_valid_pixels, "percent_valid_pixels")
    sensor_list = check_sensors(sensors)
    versions = _check_versions(version)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
            raise InvalidInputError(f"limit must be a positive integer or None, got {limit!r}")
        limit = int(limit)
    return SearchQuery(
        region=region,
        start=t0,
        end=t1,
        min_separation=lo,
        max_separation=hi,
        min_percent_valid=pmin,
        sensors=tuple(sensor_list) if sensor_list is not None else None,
        versions=versions,
        limit=limit,
    )


def region_from_input(geometry: Any = None, bbox: Any = None) -> shapely.Geometry | None:
    """A lon/lat search region from user input, or None when neither is given.

    Accepts everything :func:`itslive_dask.geo.region.parse_region` accepts, plus a GeoJSON or
    shapely Point, and polygons written with the short-way antimeridian convention (including
    rings around a pole). A ``bbox`` is densified (1 degree) so its edges stay lon/lat lines.
    """
    if geometry is None and bbox is None:
        return None
    if geometry is not None and bbox is not None:
        raise InvalidInputError("give either geometry or bbox, not both")
    if bbox is not None:
        return shapely.segmentize(shapely.box(*parse_bbox(bbox)), 1.0)
    point = _as_point(geometry)
    if point is not None:
        return point
    try:
        return parse_region(geometry)
    except InvalidInputError as first:
        geom = _loose_shape(geometry)
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            raise
        coords = shapely.get_coordinates(geom)
        if not np.all(np.isfinite(coords)) or np.any(np.abs(coords[:, 1]) > 90):
            raise
        if not short_way_polygon_ok(geom):
            raise first from None
        return geom


def _as_point(geometry: Any) -> shapely.Point | None:
    if isinstance(geometry, shapely.Point):
        point = geometry
    elif isinstance(geometry, Mapping) and geometry.get("type") == "Point":
        try:
            point = shapely.geometry.shape(geometry)
        except Exception as exc:  # shapely raises several types for bad GeoJSON
            raise InvalidInputError(f"region is not a valid GeoJSON Point: {exc}") from None
    else:
        return None
    if point.is_empty or not np.all(np.isfinite(point.coords[0][:2])):
        raise InvalidInputError("region point is empty or not finite")
    lon, lat = point.coords[0][:2]
    if abs(lat) > 90 or abs(lon) > 360:
        raise InvalidInputError(f"region point ({lon}, {lat}) is outside lon/lat range")
    return shapely.Point(lon, lat)


def _loose_shape(geometry: Any) -> shapely.Geometry | None:
    try:
        if isinstance(geometry, shapely.Geometry):
            return geometry
        if isinstance(geometry, str) and geometry.strip().startswith("{"):
            geometry = json.loads(geometry)
        if isinstance(geometry, Mapping):
            if geometry.get("type") == "Feature":
                geometry = geometry.get("geometry") or {}
            return shapely.geometry.shape(geometry)
        if isinstance(geometry, str):
            vals = [float(v) for v in geometry.replace(" ", ",").split(",") if v]
            if len(vals) >= 6 and len(vals) % 2 == 0:
                return shapely.Polygon(list(zip(vals[::2], vals[1::2], strict=True)))
            return None
        arr = np.asarray(geometry, dtype="float64")
        if arr.ndim == 2 and arr.shape[1] == 2 and len(arr) >= 3:
            return shapely.Polygon(arr)
    except Exception:  # anything unreadable: the original parse error is reported
        return None
    return None


def parse_time(value: Any, name: str, *, end: bool = False) -> pd.Timestamp | None:
    """A user date/time -> naive UTC :class:`pandas.Timestamp` in nanoseconds (None stays None).

    Strings ``YYYY``, ``YYYY-MM`` and ``YYYY-MM-DD`` (and :class:`datetime.date`) denote a whole
    period: as a start they mean its first instant, as an ``end`` its last instant, so that
    ``end="2019"`` includes all of 2019. Other strings are ISO 8601 date-times. Dates outside
    1677-09-21 .. 2262-04-11 (the nanosecond range) are clamped to its ends: no granule lies
    beyond them, so the search answers the same set.
    """
    ts = _parse_time(value, name, end=end)
    if ts is None:
        return None
    try:
        return ts.as_unit("ns")
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError):
        return _clamped(ts.year)


def _parse_time(value: Any, name: str, *, end: bool = False) -> pd.Timestamp | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        m = _PERIOD.match(text)
        if m:
            try:
                _dt.date(int(m[1]), int(m[2] or 1), int(m[3] or 1))
            except ValueError:
                raise InvalidInputError(f"{name}: {value!r} is not a valid date") from None
            try:
                first = pd.Timestamp(year=int(m[1]), month=int(m[2] or 1), day=int(m[3] or 1))
            except (ValueError, OverflowError):  # a real date outside pandas' 1677..2262
                return _clamped(int(m[1]))
            if not end:
                return first
            step = (
                pd.DateOffset(days=1)
                if m[3]
                else pd.DateOffset(months=1)
                if m[2]
                else pd.DateOffset(years=1)
            )
            try:
                return first + step - pd.Timedelta(1, "ns")
            except (OverflowError, ValueError):  # the period lies outside pandas' range
                return _clamped(int(m[1]))
        try:
            ts = pd.Timestamp(text)
        except pd.errors.OutOfBoundsDatetime:
            return _clamped(int(text.lstrip("+")[:4]) if text[:4].isdigit() else 9999)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInputError(
                f"{name}: cannot read {value!r} as a date (use YYYY-MM-DD or an ISO 8601 date-time)"
            ) from None
    elif isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        if not _PANDAS_YEARS[0] < value.year < _PANDAS_YEARS[1]:
            return _clamped(value.year)
        ts = pd.Timestamp(value)
        if end:
            ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        return ts
    else:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise InvalidInputError(f"{name}: cannot read {value!r} as a date") from None
    if ts is pd.NaT or pd.isna(ts):
        raise InvalidInputError(f"{name}: {value!r} is not a date")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


#: Years fully inside the range of :class:`pandas.Timestamp` lie strictly between these.
_PANDAS_YEARS = (1677, 2262)


def _clamped(year: int) -> pd.Timestamp:
    """A date outside pandas' range, as the nearest representable instant: no granule lies
    beyond either end, so the search answers the same set as with the exact date."""
    return pd.Timestamp.min if year <= _PANDAS_YEARS[0] else pd.Timestamp.max


def _check_versions(version: Any) -> tuple[int, ...] | None:
    if version is None:
        return None
    items = [version] if isinstance(version, int | np.integer | str) else list(version)
    out = []
    for v in items:
        try:
            n = int(str(v).lstrip("Vv"))
        except ValueError:
            raise InvalidInputError(
                f"version must be an integer such as 1 or 2, got {v!r}"
            ) from None
        if n < 1:
            raise InvalidInputError(f"version must be a positive integer, got {v!r}")
        out.append(n)
    if not out:
        raise InvalidInputError("version is empty")
    return tuple(sorted(set(out)))


def match_query(
    table: gpd.GeoDataFrame,
    query: SearchQuery,
    *,
    index: FootprintIndex | None = None,
    spatial_unknown: bool = True,
) -> np.ndarray:
    """Boolean mask of the rows of ``table`` that satisfy ``query`` (``limit`` not applied).

    Parameters
    ----------
    table
        A granule table.
    query
        The query.
    index
        A :class:`FootprintIndex` built on ``table.geometry`` (built here when None).
    spatial_unknown
        Whether rows without a footprint (geometry None/empty) pass the spatial test.
    """
    n = len(table)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    mid = table["mid_date"].to_numpy()
    if query.start is not None:
        keep &= mid >= query.start.to_datetime64()
    if query.end is not None:
        keep &= mid <= query.end.to_datetime64()
    dt = table["date_dt"].to_numpy()
    if query.min_separation is not None:
        keep &= dt >= query.min_separation
    if query.max_separation is not None:
        keep &= dt <= query.max_separation
    if query.min_percent_valid is not None:
        keep &= table["percent_valid"].to_numpy() >= query.min_percent_valid
    if query.sensors is not None:
        keep &= table["sensor"].isin(query.sensors).to_numpy()
    if query.versions is not None:
        keep &= table["version"].isin(query.versions).to_numpy()
    if query.region is not None and keep.any():
        geoms = table.geometry.to_numpy()
        known = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        if index is None:
            index = FootprintIndex(geoms)
        spatial = np.zeros(n, dtype=bool)
        spatial[index.query(query.region)] = True
        if spatial_unknown:
            spatial |= ~known
        keep &= spatial
    return keep


def select(
    table: gpd.GeoDataFrame, query: SearchQuery, *, index: FootprintIndex | None = None
) -> gpd.GeoDataFrame:
    """Rows of a (validated, ordered) granule table matching ``query``, ``limit`` applied."""
    out = table[match_query(table, query, index=index)]
    if query.limit is not None:
        out = out.iloc[: query.limit]
    return out.reset_index(drop=True)


def iter_unique(values: Iterable[str]) -> list[str]:
    """Values in first-seen order, without duplicates."""
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
