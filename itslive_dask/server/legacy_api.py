"""The legacy NSIDC-style endpoints: ``/velocities/urls/`` and ``/velocities/coverage/``.

Parameters as the retired NSIDC service took them: ``polygon`` ("lon,lat,lon,lat,...") or
``bbox`` ("min_lon,min_lat,max_lon,max_lat"), ``start``, ``end`` (dates or ISO date-times,
inclusive, on the mid date), ``min_interval``, ``max_interval`` (days), ``percent_valid_pixels``
(minimum), ``serialization`` (``json``, ``html`` or ``text``).

``json`` answers a list of objects: ``url`` (as the real service) plus the granule-table
metadata (``granule_id``, ``https_url``, ``mid_date``, ``acquisition_date_img1/2``, ``date_dt``,
``satellite_img1/2``, ``sensor``, ``epsg``, ``percent_valid``, ``version``, ``resolution``,
``geometry`` as GeoJSON). Results are paged: ``offset`` (default 0) and ``limit`` (default and
maximum :data:`MAX_RESULTS`); when more results exist the answer carries a
``Link: <url>; rel="next"`` header, and always ``X-Total-Count``.
"""

from __future__ import annotations

import html
import math
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import shapely.geometry
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from itslive_dask.discovery.query import make_query
from itslive_dask.errors import InvalidInputError
from itslive_dask.server.errors import BadRequest
from itslive_dask.server.openapi import ERRORS, LEGACY_PARAMETERS
from itslive_dask.server.state import CatalogState
from itslive_dask.server.times import parse_bounds

__all__ = ["MAX_RESULTS", "legacy_router"]

#: Largest page of ``/velocities/urls/`` (and its default size).
MAX_RESULTS = 10_000

_SERIALIZATIONS = ("json", "html", "text")


def _int_param(value: str | None, name: str, default: int, lo: int, hi: int | None) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be an integer, got {value!r:.50}") from None
    if n < lo or (hi is not None and n > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise BadRequest(f"{name} must be in {rng}, got {n}")
    return n


def _num_param(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be a number, got {value!r:.50}") from None
    if not math.isfinite(f):
        raise BadRequest(f"{name} must be a finite number, got {value!r:.50}")
    return f


def _positions(state: CatalogState, request: Request) -> np.ndarray:
    p = request.query_params
    polygon, bbox = p.get("polygon") or None, p.get("bbox") or None
    if polygon is not None and bbox is not None:
        raise BadRequest("give polygon or bbox, not both")
    try:
        # any year 1..9999: out-of-range bounds become open ends or an empty answer
        times = parse_bounds(p.get("start") or None, p.get("end") or None)
        query = make_query(
            polygon,
            bbox=bbox,
            start=times.start,
            end=times.end,
            min_separation=_num_param(p.get("min_interval"), "min_interval"),
            max_separation=_num_param(p.get("max_interval"), "max_interval"),
            percent_valid_pixels=_num_param(p.get("percent_valid_pixels"), "percent_valid_pixels"),
        )
    except BadRequest:
        raise
    except InvalidInputError as exc:
        raise BadRequest(str(exc)) from None
    if times.empty:
        return np.zeros(0, dtype=np.int64)
    return state.positions(query)


def _iso(v: Any) -> str:
    return pd.Timestamp(v).isoformat()


def _objects(state: CatalogState, pos: np.ndarray) -> list[dict[str, Any]]:
    sub = state.table.iloc[pos]
    out = []
    for row in sub.to_dict("records"):
        geom = row["geometry"]
        out.append(
            {
                "url": row["url"],
                "granule_id": row["granule_id"],
                "https_url": row["https_url"],
                "mid_date": _iso(row["mid_date"]),
                "acquisition_date_img1": _iso(row["acquisition_date_img1"]),
                "acquisition_date_img2": _iso(row["acquisition_date_img2"]),
                "date_dt": float(row["date_dt"]),
                "satellite_img1": row["satellite_img1"],
                "satellite_img2": row["satellite_img2"],
                "sensor": row["sensor"],
                "epsg": int(row["epsg"]),
                "percent_valid": float(row["percent_valid"]),
                "version": int(row["version"]),
                "resolution": None if pd.isna(row["resolution"]) else float(row["resolution"]),
                "geometry": shapely.geometry.mapping(geom)
                if geom is not None and not geom.is_empty
                else None,
            }
        )
    return out


def legacy_router(state: CatalogState) -> APIRouter:
    """FastAPI router of the legacy endpoints over ``state``."""
    router = APIRouter()

    def urls(request: Request) -> Response:
        p = request.query_params
        serialization = (p.get("serialization") or "json").lower()
        if serialization not in _SERIALIZATIONS:
            raise BadRequest(
                f"unknown serialization {p.get('serialization')!r:.50}; use json, html or text"
            )
        offset = _int_param(p.get("offset"), "offset", 0, 0, None)
        limit = _int_param(p.get("limit"), "limit", MAX_RESULTS, 1, MAX_RESULTS)
        pos = _positions(state, request)
        page = pos[offset : offset + limit]
        headers = {"X-Total-Count": str(len(pos))}
        if offset + limit < len(pos):
            params = [(k, v) for k, v in p.multi_items() if k not in ("offset", "limit")]
            params += [("offset", str(offset + limit)), ("limit", str(limit))]
            nxt = f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(params)}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        if serialization == "json":
            return JSONResponse(_objects(state, page), headers=headers)
        page_urls = state.table["url"].to_numpy()[page].tolist()
        if serialization == "text":
            return PlainTextResponse(
                "\n".join(page_urls) + ("\n" if page_urls else ""), headers=headers
            )
        items = "\n".join(
            f'<li><a href="{html.escape(u)}">{html.escape(u)}</a></li>' for u in page_urls
        )
        body = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>ITS_LIVE granules</title>"
            f"</head><body><p>{len(pos)} granules</p><ul>\n{items}\n</ul></body></html>"
        )
        return HTMLResponse(body, headers=headers)

    def coverage(request: Request) -> JSONResponse:
        pos = _positions(state, request)
        years = state.table["mid_date"].dt.year.to_numpy()[pos]
        uniq, counts = np.unique(years, return_counts=True)
        return JSONResponse(
            [{"count": int(c), "year": int(y)} for y, c in zip(uniq, counts, strict=True)]
        )

    for path in ("/velocities/urls/", "/velocities/urls"):
        router.add_api_route(
            path, urls, methods=["GET"], tags=["legacy"], include_in_schema=path.endswith("/"),
            responses=ERRORS, openapi_extra={"parameters": LEGACY_PARAMETERS},
        )  # fmt: skip
    for path in ("/velocities/coverage/", "/velocities/coverage"):
        router.add_api_route(
            path, coverage, methods=["GET"], tags=["legacy"], include_in_schema=path.endswith("/"),
            responses=ERRORS, openapi_extra={"parameters": LEGACY_PARAMETERS[:7]},
        )  # fmt: skip
    return router
