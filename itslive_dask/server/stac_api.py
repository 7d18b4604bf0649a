"""STAC API subset (core, collections, features, item-search + filter + query) over a catalog.

Enough of STAC API 1.0 for pystac-client: landing page, conformance, one collection and its
items, ``/search`` (GET and POST) with ``bbox`` (west > east crosses the antimeridian),
``intersects`` (any GeoJSON geometry type), ``datetime`` (instants, closed or open intervals,
any year 1..9999), ``ids``, ``collections``, ``limit`` (default 100; larger values are clamped to
1000), CQL2 ``filter`` (JSON, or text parsed by the ``cql2`` package), the ``query`` extension
and ``next`` links carrying a ``token``. Results are ordered by (mid date, granule id).
Every parameter and body is declared in the OpenAPI document (``/api``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import shapely
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from itslive_dask.discovery.query import SearchQuery
from itslive_dask.discovery.stac import STAC_VERSION, row_to_item
from itslive_dask.errors import InvalidInputError
from itslive_dask.server.cql2 import (
    eval_cql2,
    eval_query_extension,
    parse_cql2_text,
    queryables_schema,
)
from itslive_dask.server.errors import BadRequest, NotFound
from itslive_dask.server.geometry import geojson_parts
from itslive_dask.server.openapi import (
    ERRORS,
    OPENAPI_MEDIA_TYPE,
    SEARCH_BODY,
    SEARCH_PARAMETERS,
)
from itslive_dask.server.state import CatalogState
from itslive_dask.server.times import parse_bound

__all__ = ["CONFORMANCE", "DEFAULT_LIMIT", "MAX_JSON_DEPTH", "MAX_LIMIT", "loads", "stac_router"]

#: Items per page when ``limit`` is not given, and the page size larger limits are clamped to.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Deepest JSON nesting accepted in a body or a JSON parameter.
MAX_JSON_DEPTH = 64

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
]

_GEOJSON = "application/geo+json"
_JSON = "application/json"
_QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _geojson(content: Any) -> JSONResponse:
    return JSONResponse(content=content, media_type=_GEOJSON)


# --------------------------------------------------------------------------- parameters


def _parse_limit(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        n = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"limit must be a positive integer, got {value!r:.50}") from None
    except OverflowError:
        n = MAX_LIMIT
    if n < 1:
        raise BadRequest(f"limit must be a positive integer, got {n}")
    return min(n, MAX_LIMIT)  # STAC API: a limit above the maximum gets the maximum


def _parse_token(value: Any) -> int:
    if value is None or value == "":
        return 0
    text = str(value)
    if not text.startswith("next:") or not text[5:].isdigit():
        raise BadRequest(f"invalid paging token {text!r:.100}")
    return int(text[5:])


def _parse_bbox(value: Any, method: str = "GET") -> shapely.Geometry | None:
    if value is None or value == "":
        return None
    if method == "POST" and not isinstance(value, list):
        raise BadRequest(f"bbox must be an array of 4 (or 6) numbers, got {value!r:.100}")
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple):
        raise BadRequest(f"bbox must be 4 numbers west,south,east,north; got {value!r:.100}")
    try:
        nums = [float(v) for v in parts]
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"bbox must be numbers, got {value!r:.100}") from None
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4 or not np.all(np.isfinite(nums)):
        raise BadRequest(f"bbox must be 4 (or 6) finite numbers, got {value!r:.100}")
    w, s, e, n = nums
    if abs(s) > 90 or abs(n) > 90:
        raise BadRequest(f"bbox latitudes must be within -90..90, got {s}, {n}")
    if abs(w) > 180 or abs(e) > 180:
        raise BadRequest(f"bbox longitudes must be within -180..180, got {w}, {e}")
    if s >= n:
        raise BadRequest(f"bbox south ({s}) must be less than north ({n})")
    if w == e:
        raise BadRequest("bbox has zero width (west == east)")
    east = e + 360.0 if w > e else e  # west > east: the box crosses the antimeridian
    return shapely.segmentize(shapely.box(w, s, east, n), 1.0)


def _json_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, level = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_JSON_DEPTH:
                break
            stack.extend((x, level + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def loads(text: str | bytes, what: str) -> Any:
    """JSON text -> value, or :class:`BadRequest` (invalid, or nested deeper than
    :data:`MAX_JSON_DEPTH`: never a RecursionError)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc!s:.200}") from None
    check_depth(value, what)
    return value


def check_depth(value: Any, what: str) -> None:
    """:class:`BadRequest` when a JSON value is nested deeper than :data:`MAX_JSON_DEPTH`."""
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")


def _parse_intersects(value: Any) -> list[shapely.Geometry] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = loads(value, "intersects")
    try:
        return geojson_parts(value, "intersects")
    except InvalidInputError as exc:
        raise BadRequest(str(exc)) from None


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(text: str, what: str) -> str:
    text = text.strip()
    if text in ("", ".."):
        return text
    if not _RFC3339.match(text):
        raise BadRequest(
            f"{what} {text!r:.100} is not an RFC 3339 date-time such as 2020-01-31T00:00:00Z"
        )
    return text


def parse_datetime(value: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None, bool]:
    """STAC ``datetime`` parameter -> inclusive (start, end, nothing-can-match).

    RFC 3339 date-times (``2020-01-31T00:00:00Z``) or intervals of them with ``..`` or an empty
    string for an open end. Any year 1..9999: dates outside pandas' range (before 1677, after
    2262) become open ends or an empty answer, whichever is right.
    """
    if value is None or value == "":
        return None, None, False
    if not isinstance(value, str):
        raise BadRequest(f"datetime must be a string, got {value!r:.100}")
    text = value.strip()
    try:
        if "/" in text:
            a, _, b = text.partition("/")
            if "/" in b:
                raise BadRequest(f"datetime interval {text!r:.100} has more than two parts")
            if a.strip() in ("", "..") and b.strip() in ("", ".."):
                raise BadRequest("datetime interval '../..' is open at both ends")
            a, b = _rfc3339(a, "datetime start"), _rfc3339(b, "datetime end")
            start, e0 = parse_bound(a, "datetime start")
            end, e1 = parse_bound(b, "datetime end", end=True)
            if start is not None and end is not None and start > end:
                raise BadRequest(f"datetime interval {text!r:.100} ends before it starts")
            return start, end, e0 or e1
        if text == "..":
            raise BadRequest("datetime '..' needs the other end of an interval")
        text = _rfc3339(text, "datetime")
        start, e0 = parse_bound(text, "datetime")
        end, e1 = parse_bound(text, "datetime", end=True)
    except BadRequest:
        raise
    except InvalidInputError as exc:
        raise BadRequest(str(exc)) from None
    return start, end, e0 or e1


def _parse_list(value: Any, name: str) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest(f"{name} must be a list of strings")


def _parse_json_param(value: Any, name: str) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return loads(value, name)
    return value


def _parse_filter(value: Any, lang: Any, method: str) -> Any:
    """``filter`` + ``filter-lang`` -> CQL2-JSON (None when absent)."""
    if value is None or value == "":
        return None
    if lang not in (None, "", "cql2-json", "cql2-text"):
        raise BadRequest(f"filter-lang {lang!r:.50} is not supported; use cql2-text or cql2-json")
    if isinstance(value, str):
        text = value.strip()
        as_json = lang == "cql2-json" or (not lang and text.startswith("{"))
        if as_json:
            value = loads(text, "filter")
        else:
            try:
                value = parse_cql2_text(text)
            except InvalidInputError as exc:
                raise BadRequest(str(exc)) from None
    elif lang == "cql2-text":
        raise BadRequest("filter-lang is cql2-text but filter is not a string")
    if not isinstance(value, Mapping | bool):
        raise BadRequest("filter must be a CQL2-JSON object or CQL2 text")
    return value


class _Search:
    """A parsed item search (GET parameters or POST body)."""

    def __init__(self, params: Mapping[str, Any], state: CatalogState, *, method: str):
        self.method = method
        self.limit = _parse_limit(params.get("limit"))
        self.offset = _parse_token(params.get("token"))
        bbox = _parse_bbox(params.get("bbox"), method)
        intersects = _parse_intersects(params.get("intersects"))
        if bbox is not None and intersects is not None:
            raise BadRequest("give bbox or intersects, not both")
        start, end, self.empty = parse_datetime(params.get("datetime"))
        self.query = SearchQuery(region=bbox, start=start, end=end)
        self.regions = intersects
        self.ids = _parse_list(params.get("ids"), "ids")
        self.collections = _parse_list(params.get("collections"), "collections")
        lang = params.get("filter-lang", params.get("filter_lang"))
        self.filter = _parse_filter(params.get("filter"), lang, method)
        self.query_ext = _parse_json_param(params.get("query"), "query")
        if self.query_ext is not None and not isinstance(self.query_ext, Mapping):
            raise BadRequest("query must be an object such as {'date_dt': {'lte': 120}}")
        self.state = state

    def positions(self) -> np.ndarray:
        ids = set(self.ids) if self.ids is not None else None
        flt, qext, cid = self.filter, self.query_ext, self.state.collection
        if flt is not None:  # check the filter (properties, literals) even on an empty answer
            eval_cql2(self.state.table.iloc[:0], flt, collection=cid)
        if qext is not None:
            eval_query_extension(self.state.table.iloc[:0], qext, collection=cid)
        if self.empty or (self.collections is not None and cid not in self.collections):
            return np.zeros(0, dtype=np.int64)

        def extra(sub: pd.DataFrame) -> np.ndarray:
            mask = np.ones(len(sub), dtype=bool)
            if ids is not None:
                mask &= sub["granule_id"].isin(ids).to_numpy()
            if flt is not None:
                mask &= eval_cql2(sub, flt, collection=cid)
            if qext is not None:
                mask &= eval_query_extension(sub, qext, collection=cid)
            return mask

        needs_extra = ids is not None or flt is not None or qext is not None
        return self.state.positions(
            self.query, extra if needs_extra else None, regions=self.regions
        )


def _item_links(item: dict[str, Any], base: str, collection: str) -> dict[str, Any]:
    item["links"] = [
        {
            "rel": "self",
            "href": f"{base}/collections/{collection}/items/{item['id']}",
            "type": _GEOJSON,
        },
        {"rel": "parent", "href": f"{base}/collections/{collection}", "type": _JSON},
        {"rel": "collection", "href": f"{base}/collections/{collection}", "type": _JSON},
        {"rel": "root", "href": f"{base}/", "type": _JSON},
    ]
    return item


def _self_href(request: Request, base: str, path: str) -> str:
    query = request.url.query
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def _page(
    state: CatalogState,
    search: _Search,
    request: Request,
    body: Mapping[str, Any] | None,
    path: str,
) -> dict[str, Any]:
    base = _base(request)
    pos = search.positions()
    page = pos[search.offset : search.offset + search.limit]
    rows = state.table.iloc[page].to_dict("records")
    features = [
        _item_links(row_to_item(r, collection=state.collection), base, state.collection)
        for r in rows
    ]
    links: list[dict[str, Any]] = [
        {"rel": "root", "href": f"{base}/", "type": _JSON},
        {"rel": "self", "href": _self_href(request, base, path), "type": _GEOJSON},
    ]
    if path.startswith("/collections/"):
        links.append({"rel": "collection", "href": f"{base}/collections/{state.collection}",
                      "type": _JSON})  # fmt: skip
    nxt = search.offset + search.limit
    if nxt < len(pos):
        token = f"next:{nxt}"
        if search.method == "POST":
            links.append(
                {
                    "rel": "next",
                    "href": f"{base}{path}",
                    "type": _GEOJSON,
                    "method": "POST",
                    "body": {**(body or {}), "token": token},
                    "merge": False,
                }
            )
        else:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            params.append(("token", token))
            links.append(
                {
                    "rel": "next",
                    "href": f"{base}{path}?{urlencode(params)}",
                    "type": _GEOJSON,
                    "method": "GET",
                }
            )
    return {
        "type": "FeatureCollection",
        "features": features,
        "links": links,
        "numberMatched": len(pos),
        "numberReturned": len(features),
        "context": {"limit": search.limit, "matched": len(pos), "returned": len(features)},
    }


# --------------------------------------------------------------------------- router


def stac_router(state: CatalogState, *, title: str = "itslive_dask local search") -> APIRouter:
    """FastAPI router of the STAC API subset over ``state``."""
    router = APIRouter()
    cid = state.collection

    @router.get("/", tags=["STAC"])
    def landing(request: Request) -> JSONResponse:
        base = _base(request)
        links = [
            {"rel": "self", "href": f"{base}/", "type": _JSON},
            {"rel": "root", "href": f"{base}/", "type": _JSON},
            {"rel": "conformance", "href": f"{base}/conformance", "type": _JSON},
            {"rel": "data", "href": f"{base}/collections", "type": _JSON},
            {"rel": "child", "href": f"{base}/collections/{cid}", "type": _JSON},
            {"rel": "search", "href": f"{base}/search", "type": _GEOJSON, "method": "GET"},
            {"rel": "search", "href": f"{base}/search", "type": _GEOJSON, "method": "POST"},
            {"rel": _QUERYABLES_REL, "href": f"{base}/queryables", "type": "application/schema+json"},
            {"rel": "service-desc", "href": f"{base}/api", "type": OPENAPI_MEDIA_TYPE},
            {"rel": "service-doc", "href": f"{base}/api.html", "type": "text/html"},
        ]  # fmt: skip
        return JSONResponse(
            {
                "type": "Catalog",
                "id": "itslive-dask-local",
                "title": title,
                "description": "ITS_LIVE granule search over a local catalog (itslive_dask)",
                "stac_version": STAC_VERSION,
                "conformsTo": CONFORMANCE,
                "links": links,
            }
        )

    @router.get("/conformance", tags=["STAC"])
    def conformance() -> JSONResponse:
        return JSONResponse({"conformsTo": CONFORMANCE})

    def collection_doc(base: str) -> dict[str, Any]:
        bbox, interval = state.extent()
        codes = sorted({f"EPSG:{int(c)}" for c in state.table["epsg"].unique() if int(c)})
        return {
            "type": "Collection",
            "id": cid,
            "stac_version": STAC_VERSION,
            "stac_extensions": [
                "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
            ],
            "title": "ITS_LIVE Glacier Velocity Pairs",
            "description": "ITS_LIVE image-pair velocity granules (local catalog)",
            "license": "CC-BY-4.0",
            "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
            "summaries": {"proj:code": codes},
            "links": [
                {
                    "rel": "self",
                    "href": f"{base}/collections/{cid}",
                    "type": _JSON,
                    "title": "This collection",
                },
                {"rel": "root", "href": f"{base}/", "type": _JSON, "title": "Landing page"},
                {"rel": "parent", "href": f"{base}/", "type": _JSON, "title": "Landing page"},
                {
                    "rel": "items",
                    "href": f"{base}/collections/{cid}/items",
                    "type": _GEOJSON,
                    "title": "Granules",
                },
                {
                    "rel": _QUERYABLES_REL,
                    "href": f"{base}/collections/{cid}/queryables",
                    "type": "application/schema+json",
                    "title": "Queryables",
                },
            ],
        }

    @router.get("/collections", tags=["STAC"])
    def collections(request: Request) -> JSONResponse:
        base = _base(request)
        return JSONResponse(
            {
                "collections": [collection_doc(base)],
                "links": [
                    {"rel": "self", "href": f"{base}/collections", "type": _JSON},
                    {"rel": "root", "href": f"{base}/", "type": _JSON},
                ],
            }
        )

    def check_collection(collection_id: str) -> None:
        if collection_id != cid:
            raise NotFound(f"collection {collection_id!r} not found; this server has {cid!r}")

    @router.get("/collections/{collection_id}", tags=["STAC"])
    def collection(collection_id: str, request: Request) -> JSONResponse:
        check_collection(collection_id)
        return JSONResponse(collection_doc(_base(request)))

    @router.get("/queryables", tags=["STAC"])
    def queryables(request: Request) -> JSONResponse:
        return JSONResponse(
            queryables_schema(f"{_base(request)}/queryables"), media_type="application/schema+json"
        )

    @router.get("/collections/{collection_id}/queryables", tags=["STAC"])
    def collection_queryables(collection_id: str, request: Request) -> JSONResponse:
        check_collection(collection_id)
        url = f"{_base(request)}/collections/{cid}/queryables"
        return JSONResponse(queryables_schema(url), media_type="application/schema+json")

    @router.get(
        "/collections/{collection_id}/items",
        tags=["STAC"],
        responses=ERRORS,
        openapi_extra={"parameters": [p for p in SEARCH_PARAMETERS if p["name"] != "collections"]},
    )
    def items(collection_id: str, request: Request) -> JSONResponse:
        check_collection(collection_id)
        params = dict(request.query_params)
        params.pop("collections", None)
        search = _Search(params, state, method="GET")
        return _geojson(_page(state, search, request, None, f"/collections/{cid}/items"))

    @router.get("/collections/{collection_id}/items/{item_id}", tags=["STAC"])
    def item(collection_id: str, item_id: str, request: Request) -> JSONResponse:
        check_collection(collection_id)
        pos = state.position_of(item_id)
        if pos is None:
            raise NotFound(f"item {item_id!r} not found in {cid!r}")
        row = state.table.iloc[pos].to_dict()
        return _geojson(_item_links(row_to_item(row, collection=cid), _base(request), cid))

    @router.get(
        "/search", tags=["STAC"], responses=ERRORS, openapi_extra={"parameters": SEARCH_PARAMETERS}
    )
    def search_get(request: Request) -> JSONResponse:
        search = _Search(dict(request.query_params), state, method="GET")
        return _geojson(_page(state, search, request, None, "/search"))

    @router.post(
        "/search", tags=["STAC"], responses=ERRORS, openapi_extra={"requestBody": SEARCH_BODY}
    )
    async def search_post(request: Request) -> JSONResponse:
        raw = await request.body()
        body = loads(raw, "the search body") if raw.strip() else {}
        if not isinstance(body, dict):
            raise BadRequest("the search body must be a JSON object")

        def run() -> dict[str, Any]:
            search = _Search(body, state, method="POST")
            return _page(state, search, request, body, "/search")

        return _geojson(await run_in_threadpool(run))

    return router
