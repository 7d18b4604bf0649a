"""STAC API subset (core, collections, features, item-search + filter + query) over a catalog.

Enough of STAC API 1.0 for pystac-client: landing page, conformance, one collection and its
items, ``/search`` (GET and POST) with ``bbox`` (west > east crosses the antimeridian),
``intersects``, ``datetime`` (instants, closed or open intervals), ``ids``, ``collections``,
``limit`` (default 100, at most 1000), CQL2-JSON ``filter``, the ``query`` extension and
``next`` links carrying a ``token``. Results are ordered by (mid date, granule id).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import shapely
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from itslive_dask.discovery.query import SearchQuery, parse_time, region_from_input
from itslive_dask.discovery.stac import STAC_VERSION, row_to_item
from itslive_dask.errors import InvalidInputError
from itslive_dask.server.cql2 import eval_cql2, eval_query_extension, queryables_schema
from itslive_dask.server.errors import BadRequest, NotFound
from itslive_dask.server.state import CatalogState

__all__ = ["CONFORMANCE", "DEFAULT_LIMIT", "MAX_LIMIT", "stac_router"]

#: Items per page when ``limit`` is not given, and the largest ``limit`` accepted.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

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
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
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
        raise BadRequest(f"limit must be an integer 1-{MAX_LIMIT}, got {value!r}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {n}")
    return n


def _parse_token(value: Any) -> int:
    if value is None or value == "":
        return 0
    text = str(value)
    if not text.startswith("next:") or not text[5:].isdigit():
        raise BadRequest(f"invalid paging token {text!r:.100}")
    return int(text[5:])


def _parse_bbox(value: Any) -> shapely.Geometry | None:
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple):
        raise BadRequest(f"bbox must be 4 numbers west,south,east,north; got {value!r:.100}")
    try:
        nums = [float(v) for v in parts]
    except (TypeError, ValueError):
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


def _parse_intersects(value: Any) -> shapely.Geometry | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"intersects is not valid JSON: {exc}") from None
    if not isinstance(value, Mapping) or "type" not in value:
        raise BadRequest("intersects must be a GeoJSON geometry object")
    if value.get("type") not in ("Polygon", "MultiPolygon", "Point"):
        raise BadRequest(
            f"intersects must be a Polygon, MultiPolygon or Point, got {value.get('type')!r}"
        )
    try:
        return region_from_input(value)
    except InvalidInputError as exc:
        raise BadRequest(f"intersects: {exc}") from None


def parse_datetime(value: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """STAC ``datetime`` parameter -> inclusive (start, end); open ends are None."""
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        raise BadRequest(f"datetime must be a string, got {value!r:.100}")
    text = value.strip()
    if "/" in text:
        a, _, b = text.partition("/")
        if "/" in b:
            raise BadRequest(f"datetime interval {text!r} has more than two parts")
        try:
            start = None if a in ("", "..") else parse_time(a, "datetime start")
            end = None if b in ("", "..") else parse_time(b, "datetime end", end=True)
        except InvalidInputError as exc:
            raise BadRequest(str(exc)) from None
        if start is not None and end is not None and start > end:
            raise BadRequest(f"datetime interval {text!r} ends before it starts")
        return start, end
    try:
        start = parse_time(text, "datetime")
        end = parse_time(text, "datetime", end=True)
    except InvalidInputError as exc:
        raise BadRequest(str(exc)) from None
    return start, end


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
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"{name} is not valid JSON: {exc}") from None
    return value


class _Search:
    """A parsed item search (GET parameters or POST body)."""

    def __init__(self, params: Mapping[str, Any], state: CatalogState, *, method: str):
        self.method = method
        self.limit = _parse_limit(params.get("limit"))
        self.offset = _parse_token(params.get("token"))
        bbox = _parse_bbox(params.get("bbox"))
        intersects = _parse_intersects(params.get("intersects"))
        if bbox is not None and intersects is not None:
            raise BadRequest("give bbox or intersects, not both")
        start, end = parse_datetime(params.get("datetime"))
        self.query = SearchQuery(
            region=bbox if bbox is not None else intersects, start=start, end=end
        )
        self.ids = _parse_list(params.get("ids"), "ids")
        self.collections = _parse_list(params.get("collections"), "collections")
        lang = params.get("filter-lang", params.get("filter_lang"))
        self.filter = _parse_json_param(params.get("filter"), "filter")
        if self.filter is not None and lang not in (None, "cql2-json"):
            raise BadRequest(f"filter-lang {lang!r} is not supported; use cql2-json")
        if self.filter is not None and not isinstance(self.filter, Mapping):
            raise BadRequest("filter must be a CQL2-JSON object")
        self.query_ext = _parse_json_param(params.get("query"), "query")
        self.state = state

    def positions(self) -> np.ndarray:
        if self.collections is not None and self.state.collection not in self.collections:
            return np.zeros(0, dtype=np.int64)
        ids = set(self.ids) if self.ids is not None else None
        flt, qext = self.filter, self.query_ext

        def extra(sub: pd.DataFrame) -> np.ndarray:
            mask = np.ones(len(sub), dtype=bool)
            if ids is not None:
                mask &= sub["granule_id"].isin(ids).to_numpy()
            if flt is not None:
                mask &= eval_cql2(sub, flt)
            if qext is not None:
                mask &= eval_query_extension(sub, qext)
            return mask

        needs_extra = ids is not None or flt is not None or qext is not None
        return self.state.positions(self.query, extra if needs_extra else None)


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
    links: list[dict[str, Any]] = [{"rel": "root", "href": f"{base}/", "type": _JSON}]
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
            {"rel": "service-desc", "href": f"{base}/openapi.json",
             "type": "application/vnd.oai.openapi+json;version=3.0"},
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
                {"rel": "self", "href": f"{base}/collections/{cid}", "type": _JSON},
                {"rel": "root", "href": f"{base}/", "type": _JSON},
                {"rel": "parent", "href": f"{base}/", "type": _JSON},
                {"rel": "items", "href": f"{base}/collections/{cid}/items", "type": _GEOJSON},
                {
                    "rel": _QUERYABLES_REL,
                    "href": f"{base}/collections/{cid}/queryables",
                    "type": "application/schema+json",
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

    @router.get("/collections/{collection_id}/items", tags=["STAC"])
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

    @router.get("/search", tags=["STAC"])
    def search_get(request: Request) -> JSONResponse:
        search = _Search(dict(request.query_params), state, method="GET")
        return _geojson(_page(state, search, request, None, "/search"))

    @router.post("/search", tags=["STAC"])
    async def search_post(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the search body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the search body must be a JSON object")

        def run() -> dict[str, Any]:
            search = _Search(body, state, method="POST")
            return _page(state, search, request, body, "/search")

        return _geojson(await run_in_threadpool(run))

    return router
