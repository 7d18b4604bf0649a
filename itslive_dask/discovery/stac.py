"""STAC backend: ITS_LIVE granule items <-> granule-table rows, and the pystac-client search.

Items follow the public ``itslive-granules`` collection (as written by ASF's item generator):
``id`` = file name without ``.nc``; properties ``datetime`` (= mid date), ``start_datetime``,
``end_datetime``, ``date_dt``, ``percent_valid_pixels``, ``platform``, ``proj:code``,
``scene_1_id``, ``scene_2_id``, ``version`` ...; asset ``data`` (https href, with
``alternate.s3.href``). The public API's queryables call the separation ``dt_days`` while items
carry ``date_dt``.

Items served from a catalog that keeps chunk indexes (``itslive-dask serve`` over a catalog
made by :func:`~itslive_dask.discovery.build_catalog`) also carry each granule's header record
in the property :data:`CHUNK_INDEX_PROPERTY`; a search keeps it in the table's
``chunk_index`` column, so a first build from that search reads no header either. The public
API's items have none.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pandas as pd
import shapely
import shapely.geometry

from itslive_dask.discovery.query import SearchQuery, select
from itslive_dask.errors import InvalidInputError, SearchError
from itslive_dask.geo.footprints import to_rfc7946
from itslive_dask.granule.names import parse_granule_name, sensor_of_satellite
from itslive_dask.table import (
    chunk_index_record,
    chunk_index_text,
    empty_granule_table,
    granule_table,
    validate_granule_table,
)

__all__ = ["CHUNK_INDEX_PROPERTY", "item_to_record", "items_to_table", "row_to_item", "search_stac"]

logger = logging.getLogger(__name__)

STAC_VERSION = "1.0.0"
ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
    "https://stac-extensions.github.io/version/v1.2.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
]
_PAGE_SIZE = 500
#: Item property with the granule's grid and chunk index (the ``chunk_index`` column's record,
#: as a JSON object): present only in items of a catalog that keeps them.
CHUNK_INDEX_PROPERTY = "itslive:chunk_index"


# --------------------------------------------------------------------------- items -> rows


def item_to_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """One granule-table record from a STAC item dict.

    Values come from the item's properties when present, otherwise from the granule name
    (``id``); ``url`` is the ``data`` asset's ``alternate.s3.href`` when present (else its
    href), ``https_url`` the asset's http(s) href.

    Raises
    ------
    SearchError
        When the item lacks what a granule row needs (an id, dates) and its name cannot be
        parsed either.
    """
    gid = str(item.get("id") or "")
    if gid.endswith(".nc"):
        gid = gid[:-3]
    props = item.get("properties") or {}
    assets = item.get("assets") or {}
    data = assets.get("data") or {}
    href = str(data.get("href") or "")
    s3 = ((data.get("alternate") or {}).get("s3") or {}).get("href")
    url = str(s3 or href or "")
    https = href if href.startswith(("http://", "https://")) else ""
    try:
        name = parse_granule_name(gid or url)
    except InvalidInputError:
        name = None
    if not gid and name is not None:
        gid = name.granule_id
    if not gid:
        raise SearchError("STAC item without an id")
    if not url:
        raise SearchError(f"STAC item {gid!r} has no 'data' asset href")

    def prop_time(*keys: str) -> pd.Timestamp | None:
        for k in keys:
            v = props.get(k)
            if v:
                try:
                    ts = pd.Timestamp(v)
                except (ValueError, TypeError):
                    continue
                return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
        return None

    mid = prop_time("mid_datetime", "datetime")
    t1 = prop_time("start_datetime")
    t2 = prop_time("end_datetime")
    if name is not None:
        t1 = t1 if t1 is not None else pd.Timestamp(name.acquisition_date_img1)
        t2 = t2 if t2 is not None else pd.Timestamp(name.acquisition_date_img2)
        mid = mid if mid is not None else pd.Timestamp(name.mid_date)
    if mid is None and t1 is not None and t2 is not None:
        mid = t1 + (t2 - t1) / 2
    if mid is None or t1 is None or t2 is None:
        raise SearchError(f"STAC item {gid!r} has no usable dates and an unparsable name")
    dt = _num(props.get("date_dt", props.get("dt_days")))
    if dt is None:
        dt = name.date_dt if name is not None else abs((t2 - t1).total_seconds()) / 86400.0
    pct = _num(props.get("percent_valid_pixels"))
    if pct is None:
        pct = name.percent_valid if name is not None else float("nan")
    platform = str(props.get("platform") or "")
    sat1 = name.satellite_img1 if name is not None else platform
    sat2 = name.satellite_img2 if name is not None else platform
    sensor = name.sensor if name is not None else (sensor_of_satellite(platform) or "")
    version = name.version if name is not None else _version(props.get("version"))
    resolution = name.resolution if name is not None else float("nan")
    geom = item.get("geometry")
    footprint = shapely.geometry.shape(geom) if geom else None
    record = {
        "granule_id": gid,
        "url": url,
        "https_url": https,
        "mid_date": mid,
        "acquisition_date_img1": t1,
        "acquisition_date_img2": t2,
        "date_dt": float(dt),
        "satellite_img1": sat1,
        "satellite_img2": sat2,
        "sensor": sensor,
        "epsg": _epsg(props),
        "percent_valid": float(pct),
        "version": int(version),
        "resolution": float(resolution),
        "geometry": footprint,
    }
    index = props.get(CHUNK_INDEX_PROPERTY)
    if isinstance(index, Mapping):  # an item of a catalog that keeps chunk indexes
        record["chunk_index"] = chunk_index_text(index)
    return record


def items_to_table(items: list[Mapping[str, Any]]):
    """A granule table from STAC item dicts (duplicates by id keep the first)."""
    seen: set[str] = set()
    records = []
    for item in items:
        rec = item_to_record(item)
        if rec["granule_id"] in seen:
            continue
        seen.add(rec["granule_id"])
        records.append(rec)
    return granule_table(records) if records else empty_granule_table()


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _version(v: Any) -> int:
    try:
        return int(str(v).lstrip("Vv"))
    except (TypeError, ValueError):
        return 0


def _epsg(props: Mapping[str, Any]) -> int:
    code = props.get("proj:code")
    if isinstance(code, str):
        m = re.fullmatch(r"\s*EPSG:(\d+)\s*", code, flags=re.IGNORECASE)
        if m:
            return int(m[1])
    epsg = props.get("proj:epsg")
    try:
        return int(epsg) if epsg is not None else 0
    except (TypeError, ValueError):
        return 0


# --------------------------------------------------------------------------- rows -> items


def _iso(ts: Any) -> str:
    t = pd.Timestamp(ts)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond or t.nanosecond:
        text += f".{t.microsecond:06d}"
    return text + "Z"


def item_bbox(geom: shapely.Geometry | None) -> list[float] | None:
    """STAC bbox of a footprint: ``[w, s, e, n]``; ``w > e`` across the antimeridian."""
    if geom is None or geom.is_empty:
        return None
    rfc = to_rfc7946(geom)
    minx, miny, maxx, maxy = rfc.bounds
    parts = list(getattr(rfc, "geoms", [rfc]))
    if minx <= -180.0 + 1e-9 and maxx >= 180.0 - 1e-9 and len(parts) > 1:
        # split at the antimeridian: west edge = smallest lon of the eastern parts
        east = [p.bounds[0] for p in parts if p.bounds[0] >= 0]
        west = [p.bounds[2] for p in parts if p.bounds[2] <= 0]
        if east and west:
            return [min(east), miny, max(west), maxy]
    return [minx, miny, maxx, maxy]


def row_to_item(row: Mapping[str, Any], *, collection: str = "itslive-granules") -> dict[str, Any]:
    """A STAC item dict (shaped like the public ``itslive-granules`` items) from a table row."""
    gid = str(row["granule_id"])
    geom = row.get("geometry")
    url = str(row["url"])
    https = str(row.get("https_url") or "")
    data: dict[str, Any] = {
        "href": https or url,
        "type": "application/netcdf",
        "roles": ["data"],
        "title": f"{gid}.nc",
    }
    if url.startswith("s3://"):
        data["alternate"] = {"s3": {"href": url, "alternate:name": "S3"}}
    try:
        name = parse_granule_name(gid)
        scene_1, scene_2 = name.scene_1_id, name.scene_2_id
    except InvalidInputError:
        scene_1 = scene_2 = ""
    mid = pd.Timestamp(row["mid_date"])
    centroid = None
    if geom is not None and not geom.is_empty:
        centroid = geom.representative_point()
    props: dict[str, Any] = {
        "datetime": _iso(mid),
        "mid_datetime": _iso(mid),
        "start_datetime": _iso(row["acquisition_date_img1"]),
        "end_datetime": _iso(row["acquisition_date_img2"]),
        "date_dt": float(row["date_dt"]),
        "percent_valid_pixels": float(row["percent_valid"]),
        "platform": str(row["satellite_img1"]),
        "scene_1_id": scene_1,
        "scene_2_id": scene_2,
        "proj:code": f"EPSG:{int(row['epsg'])}" if int(row["epsg"]) else None,
        "version": f"{int(row['version']):03d}",
        "itslive:sensor": str(row["sensor"]),
        "itslive:satellite_img2": str(row["satellite_img2"]),
        "itslive:resolution": None if pd.isna(row["resolution"]) else float(row["resolution"]),
    }
    if centroid is not None:
        props["longitude"] = round(float(centroid.x), 4)
        props["latitude"] = round(float(centroid.y), 4)
    record = chunk_index_record(row.get("chunk_index"))
    if record is not None:
        props[CHUNK_INDEX_PROPERTY] = record
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(ITEM_EXTENSIONS),
        "id": gid,
        "collection": collection,
        "geometry": shapely.geometry.mapping(geom)
        if geom is not None and not geom.is_empty
        else None,
        "bbox": item_bbox(geom),
        "properties": props,
        "assets": {"data": data},
        "links": [],
    }


# --------------------------------------------------------------------------- client


def _interval(query: SearchQuery) -> str | None:
    if query.start is None and query.end is None:
        return None
    a = _iso(query.start) if query.start is not None else ".."
    b = _iso(query.end) if query.end is not None else ".."
    return f"{a}/{b}"


def _cql2(query: SearchQuery, separation_name: str) -> dict[str, Any] | None:
    args: list[dict[str, Any]] = []
    if query.min_separation is not None:
        args.append({"op": ">=", "args": [{"property": separation_name}, query.min_separation]})
    if query.max_separation is not None:
        args.append({"op": "<=", "args": [{"property": separation_name}, query.max_separation]})
    if query.min_percent_valid is not None:
        args.append(
            {"op": ">=", "args": [{"property": "percent_valid_pixels"}, query.min_percent_valid]}
        )
    if not args:
        return None
    return args[0] if len(args) == 1 else {"op": "and", "args": args}


def _query_ext(query: SearchQuery) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    sep: dict[str, float] = {}
    if query.min_separation is not None:
        sep["gte"] = query.min_separation
    if query.max_separation is not None:
        sep["lte"] = query.max_separation
    if sep:
        out["date_dt"] = sep
    if query.min_percent_valid is not None:
        out["percent_valid_pixels"] = {"gte": query.min_percent_valid}
    return out or None


def search_stac(
    url: str,
    query: SearchQuery,
    *,
    collection: str = "itslive-granules",
    headers: Mapping[str, str] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
):
    """Search a STAC API with pystac-client and return a granule table.

    Region and dates are always sent to the server. Separation and coverage are sent as a
    CQL2-JSON filter when the API conforms to the filter extension (the separation property
    named as its queryables name it: ``dt_days`` or ``date_dt``), else through the query
    extension when it conforms to that. Every criterion is applied again on the client, so the
    result is right whatever the server does with them.
    """
    import pystac_client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError

    try:
        client = pystac_client.Client.open(url, headers=dict(headers or {}))
    except APIError as exc:
        raise SearchError(f"STAC API {url}: {exc}") from None
    except Exception as exc:  # requests/pystac errors: unreachable or not a STAC API
        raise SearchError(f"cannot open the STAC API {url}: {type(exc).__name__}: {exc}") from None

    kwargs: dict[str, Any] = {
        "collections": [collection],
        "datetime": _interval(query),
        "limit": min(_PAGE_SIZE, query.limit) if query.limit else _PAGE_SIZE,
    }
    if query.region is not None:
        kwargs["intersects"] = shapely.geometry.mapping(to_rfc7946(query.region))
    if client.conforms_to(ConformanceClasses.FILTER):
        name = _separation_queryable(client, collection)
        flt = _cql2(query, name)
        if flt is not None:
            kwargs["filter"] = flt
            kwargs["filter_lang"] = "cql2-json"
    elif client.conforms_to(ConformanceClasses.QUERY):
        q = _query_ext(query)
        if q is not None:
            kwargs["query"] = q
    logger.debug("STAC search %s %s", url, {k: v for k, v in kwargs.items() if k != "intersects"})

    n_items = 0
    seen: set[str] = set()
    parts = []
    n_rows = 0
    unlimited = replace(query, limit=None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search = client.search(**kwargs)
            for page in search.pages_as_dicts():
                features = [f for f in page.get("features", []) if str(f.get("id")) not in seen]
                n_items += len(features)
                seen.update(str(f.get("id")) for f in features)
                matched = select(items_to_table(features), unlimited)
                parts.append(matched)
                n_rows += len(matched)
                if progress is not None:
                    progress(n_rows, None)
                if query.limit is not None and n_rows >= query.limit:
                    break
    except APIError as exc:
        raise SearchError(f"STAC API {url} refused the search: {exc}") from None
    except SearchError:
        raise
    except Exception as exc:  # network errors mid-paging
        raise SearchError(f"STAC search at {url} failed: {type(exc).__name__}: {exc}") from None
    parts = [p for p in parts if len(p)]
    rows = (
        validate_granule_table(pd.concat(parts, ignore_index=True))
        if parts
        else empty_granule_table()
    )
    if query.limit is not None:
        rows = rows.iloc[: query.limit].reset_index(drop=True)
    logger.info("STAC search %s: %d items, %d granules match", url, n_items, len(rows))
    return rows


def _separation_queryable(client: Any, collection: str) -> str:
    try:
        queryables = client.get_merged_queryables([collection])
        props = queryables.get("properties", {})
    except Exception:  # queryables are optional; fall back to the item property name
        return "date_dt"
    if "dt_days" in props and "date_dt" not in props:
        return "dt_days"
    return "date_dt"
