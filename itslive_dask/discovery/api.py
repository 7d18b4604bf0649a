"""Search ITS_LIVE granules: STAC API, legacy NSIDC-style API or a local catalog file.

Every backend returns the same granule table (:mod:`itslive_dask.table`), and every
criterion is evaluated the same way (:mod:`itslive_dask.discovery.query`): whatever a server does with
a criterion, the client applies it again, so results do not depend on the backend.

Footprints near the poles and across the antimeridian are intersected in a polar
stereographic frame (EPSG:3031 / EPSG:3413) or in unwrapped longitudes, never through a
lon/lat bounding box (see :mod:`itslive_dask.geo.footprints` for the exact conventions).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import geopandas as gpd

from itslive_dask.discovery.legacy import LegacyAPI
from itslive_dask.discovery.query import SearchQuery, make_query, select
from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.footprints import FootprintIndex
from itslive_dask.geo.region import box_to_geojson, polygon_to_geojson
from itslive_dask.io.urls import is_remote, local_path

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_STAC_URL",
    "LegacyAPI",
    "SearchQuery",
    "box_to_geojson",
    "make_query",
    "polygon_to_geojson",
    "search",
]

logger = logging.getLogger(__name__)

#: The public ITS_LIVE STAC API.
DEFAULT_STAC_URL = "https://stac.itslive.cloud"
#: The granule collection of that API.
DEFAULT_COLLECTION = "itslive-granules"

_CACHE: OrderedDict[tuple, tuple[gpd.GeoDataFrame, FootprintIndex]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2

_CATALOG_SUFFIXES = (".parquet", ".geoparquet", ".pq", ".json", ".geojson", ".ndjson", ".jsonl")


def search(
    geometry: Any = None,
    *,
    bbox: Any = None,
    start: Any = None,
    end: Any = None,
    min_separation: float | None = None,
    max_separation: float | None = None,
    percent_valid_pixels: float | None = None,
    sensors: Iterable[str] | str | None = None,
    version: int | Iterable[int] | None = None,
    catalog: str | os.PathLike | gpd.GeoDataFrame | LegacyAPI = DEFAULT_STAC_URL,
    collection: str = DEFAULT_COLLECTION,
    limit: int | None = None,
    storage_options: dict | None = None,
    progress: Callable[[int, int | None], Any] | None = None,
) -> gpd.GeoDataFrame:
    """Find the granules whose footprint intersects a region, within dates and criteria.

    Parameters
    ----------
    geometry
        Region of interest: GeoJSON (dict or text), shapely geometry, WKT, a list of
        ``(lon, lat)`` pairs, a ``"lon,lat,lon,lat,..."`` string (the legacy API's
        ``polygon``), or a Point. Polygons crossing the antimeridian may be written with
        longitudes jumping from 179 to -179 (edges take the short way).
    bbox
        ``(min_lon, min_lat, max_lon, max_lat)`` instead of ``geometry``. Without either,
        there is no spatial constraint.
    start, end
        Inclusive bounds on the granule mid date: dates, datetimes, or ISO strings.
        ``"YYYY"``, ``"YYYY-MM"`` and ``"YYYY-MM-DD"`` mean whole periods (``end="2019"``
        includes all of 2019).
    min_separation, max_separation
        Inclusive bounds on the separation of the two images, in days (``date_dt``).
    percent_valid_pixels
        Minimum valid-pixel percentage (inclusive).
    sensors
        Sensor families to keep (``"landsat"``, ``"sentinel1"``, ``"sentinel2"``).
    version
        Product version(s) to keep (1, 2).
    catalog
        Where to search:

        * a STAC API URL (default: the public ITS_LIVE API) searched with pystac-client,
        * ``"legacy+http://host:port/prefix"`` or a :class:`LegacyAPI` for the legacy
          NSIDC-style API (``<prefix>/velocities/urls/``),
        * a catalog file (GeoParquet, GeoJSON, STAC items JSON; local path or fsspec URL,
          recognised by its extension) or a granule table, searched in-process.
    collection
        STAC collection id.
    limit
        Return at most this many granules (for remote APIs: the first that the server
        returns and that match).
    storage_options
        fsspec options to read a remote catalog file (e.g. ``{"anon": True}``).
    progress
        Callable ``f(found_so_far, total_or_None)`` called as pages arrive.

    Returns
    -------
    GeoDataFrame
        Granule table ordered by (``mid_date``, ``granule_id``). Rows from the legacy API
        without footprint metadata have ``geometry=None`` and ``epsg=0``.

    Raises
    ------
    InvalidInputError
        Invalid arguments (reversed dates, invalid polygon, latitude beyond 90, unknown
        sensor, ...), or an unreadable catalog file.
    SearchError
        The search service failed or answered something unusable.

    Examples
    --------
    >>> pine_island = [(-101.1555, -74.7387), (-99.1172, -75.0879), (-99.8797, -75.46),
    ...                (-102.425, -74.925)]
    >>> table = search(pine_island, start="2013-01-01", end="2020-01-01",
    ...                percent_valid_pixels=30, min_separation=6, max_separation=120)
    ...                                                                  # doctest: +SKIP
    >>> table = search(bbox=(-50, 69, -48, 70), catalog="granules.parquet")  # doctest: +SKIP
    """
    query = make_query(
        geometry,
        bbox=bbox,
        start=start,
        end=end,
        min_separation=min_separation,
        max_separation=max_separation,
        percent_valid_pixels=percent_valid_pixels,
        sensors=sensors,
        version=version,
        limit=limit,
    )
    return run_query(
        query,
        catalog=catalog,
        collection=collection,
        storage_options=storage_options,
        progress=progress,
    )


def run_query(
    query: SearchQuery,
    *,
    catalog: str | os.PathLike | gpd.GeoDataFrame | LegacyAPI = DEFAULT_STAC_URL,
    collection: str = DEFAULT_COLLECTION,
    storage_options: dict | None = None,
    progress: Callable[[int, int | None], Any] | None = None,
) -> gpd.GeoDataFrame:
    """Run a validated :class:`SearchQuery` on a catalog (see :func:`search` for ``catalog``)."""
    backend, target = resolve_catalog(catalog)
    logger.debug("search backend %s: %s", backend, target if backend != "table" else "<table>")
    if backend == "legacy":
        return target.search(query, progress=progress)
    if backend == "stac":
        from itslive_dask.discovery.stac import search_stac

        return search_stac(target, query, collection=collection, progress=progress)
    if backend == "file":
        table, index = _load_cached(target, storage_options)
    else:
        from itslive_dask.table import validate_granule_table

        table, index = validate_granule_table(target), None
    out = select(table, query, index=index)
    if progress is not None:
        progress(len(out), len(out))
    logger.info("local search: %d of %d granules match", len(out), len(table))
    return out


def _load_cached(
    path: str, storage_options: dict | None
) -> tuple[gpd.GeoDataFrame, FootprintIndex]:
    """Load a catalog file, reusing the table and spatial index of a recent search on the same
    unchanged local file (keyed by path, size and modification time)."""
    from itslive_dask.discovery.catalog import load_catalog

    local = local_path(path)
    stamp = None
    if local is not None:
        try:
            st = os.stat(local)
            stamp = (os.path.abspath(local), st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
    with _CACHE_LOCK:
        hit = _CACHE.get(stamp) if stamp is not None else None
    if hit is not None:
        return hit
    table = load_catalog(path, storage_options=storage_options)
    entry = (table, FootprintIndex(table.geometry.to_numpy()))
    if stamp is not None:
        with _CACHE_LOCK:
            _CACHE[stamp] = entry
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return entry


def resolve_catalog(catalog: Any) -> tuple[str, Any]:
    """Which backend a ``catalog=`` argument selects: ``(kind, target)``.

    ``kind`` is ``"legacy"`` (target a :class:`LegacyAPI`), ``"stac"`` (a URL), ``"file"``
    (a path or URL of a catalog file) or ``"table"`` (a GeoDataFrame).
    """
    if isinstance(catalog, LegacyAPI):
        return "legacy", catalog
    if isinstance(catalog, gpd.GeoDataFrame):
        return "table", catalog
    if isinstance(catalog, os.PathLike):
        return "file", os.fspath(catalog)
    if not isinstance(catalog, str) or not catalog.strip():
        raise InvalidInputError(
            "catalog must be a STAC API URL, 'legacy+http(s)://...', a LegacyAPI, a catalog "
            f"file path/URL or a granule table; got {catalog!r}"
        )
    text = catalog.strip()
    if text.startswith("legacy+"):
        return "legacy", LegacyAPI(text)
    if text.lower().split("?", 1)[0].endswith(_CATALOG_SUFFIXES):
        return "file", text
    if text.startswith(("http://", "https://")):
        return "stac", text
    if is_remote(text):
        raise InvalidInputError(
            f"catalog {text!r}: a remote catalog file must end with .parquet, .geojson, "
            ".json or .ndjson"
        )
    if os.path.isdir(text):
        raise InvalidInputError(
            f"catalog {text!r} is a folder; build a catalog file from it first "
            "(itslive_dask.discovery.catalog.build_catalog) and pass that file"
        )
    return "file", text
