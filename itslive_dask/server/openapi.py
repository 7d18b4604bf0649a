"""What the OpenAPI document declares: query parameters and request bodies of every endpoint.

The routes read their inputs themselves (to answer 400 with a message that names the field),
so the declarations are written here and attached with ``openapi_extra``. Clients, validators
and fuzzers (schemathesis) learn the API from them. The document is OpenAPI 3.1, served at
``/api`` and ``/openapi.json`` as ``application/vnd.oai.openapi+json;version=3.1``.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

__all__ = [
    "LEGACY_PARAMETERS",
    "OPENAPI_MEDIA_TYPE",
    "SEARCH_BODY",
    "SEARCH_PARAMETERS",
    "install_openapi_route",
]

OPENAPI_MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.1"

_NUMBER = {"type": "number"}
_POSITION = {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 3}
_LINE = {"type": "array", "items": _POSITION, "minItems": 2}
_RING = {"type": "array", "items": _POSITION, "minItems": 4}


def _geom(kind: str, coords: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "coordinates"],
        "properties": {"type": {"type": "string", "enum": [kind]}, "coordinates": coords},
    }


_SIMPLE = [
    _geom("Point", _POSITION),
    _geom("MultiPoint", {"type": "array", "items": _POSITION}),
    _geom("LineString", _LINE),
    _geom("MultiLineString", {"type": "array", "items": _LINE}),
    _geom("Polygon", {"type": "array", "items": _RING}),
    _geom("MultiPolygon", {"type": "array", "items": {"type": "array", "items": _RING}}),
]
GEOMETRY = {
    "description": "GeoJSON geometry (RFC 7946), lon/lat",
    "oneOf": [
        *_SIMPLE,
        {
            "type": "object",
            "required": ["type", "geometries"],
            "properties": {
                "type": {"type": "string", "enum": ["GeometryCollection"]},
                "geometries": {"type": "array", "items": {"oneOf": _SIMPLE}},
            },
        },
    ],
}

_STRINGS = {"type": "array", "items": {"type": "string"}}


def _q(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


_LIST = {"style": "form", "explode": False}

#: Query parameters of ``GET /search`` and ``GET /collections/{id}/items``.
SEARCH_PARAMETERS: list[dict[str, Any]] = [
    _q("limit", {"type": "integer", "minimum": 1},
       "Items per page (default 100; values above the maximum, 1000, are clamped)"),
    _q("bbox", {"type": "array", "items": _NUMBER, "minItems": 4, "maxItems": 6},
       "west,south,east,north (west > east crosses the antimeridian)", **_LIST),
    _q("intersects", {"type": "string"}, "GeoJSON geometry (JSON text)"),
    _q("datetime", {"type": "string"},
       "RFC 3339 instant or interval 'start/end' ('..' or empty: open)"),
    _q("ids", _STRINGS, "Item ids", **_LIST),
    _q("collections", _STRINGS, "Collection ids", **_LIST),
    _q("filter", {"type": "string"}, "CQL2 filter (text, or JSON with filter-lang=cql2-json)"),
    _q("filter-lang", {"type": "string", "enum": ["cql2-text", "cql2-json"]},
       "Language of filter (default: cql2-text, or cql2-json when filter is a JSON object)"),
    _q("query", {"type": "string"}, "Query extension object (JSON text)"),
    _q("token", {"type": "string"}, "Paging token from a 'next' link"),
]  # fmt: skip

#: Body of ``POST /search``.
SEARCH_BODY: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "minimum": 1},
                    "bbox": {"type": "array", "items": _NUMBER, "minItems": 4, "maxItems": 6},
                    "intersects": GEOMETRY,
                    "datetime": {"type": "string"},
                    "ids": _STRINGS,
                    "collections": _STRINGS,
                    "filter": {
                        "description": "CQL2-JSON object (or CQL2 text)",
                        "oneOf": [{"type": "object"}, {"type": "string"}, {"type": "boolean"}],
                    },
                    "filter-lang": {"type": "string", "enum": ["cql2-json", "cql2-text"]},
                    "query": {
                        "type": "object",
                        "additionalProperties": {"type": "object"},
                    },
                    "token": {"type": "string"},
                },
            }
        }
    },
}

#: Query parameters of the legacy ``/velocities/urls/`` and ``/velocities/coverage/``.
LEGACY_PARAMETERS: list[dict[str, Any]] = [
    _q("polygon", {"type": "string"}, "lon,lat,lon,lat,... (closed ring)"),
    _q("bbox", {"type": "string"}, "min_lon,min_lat,max_lon,max_lat"),
    _q("start", {"type": "string"}, "First mid date (YYYY-MM-DD or ISO date-time)"),
    _q("end", {"type": "string"}, "Last mid date (inclusive)"),
    _q("min_interval", _NUMBER, "Minimum separation (days)"),
    _q("max_interval", _NUMBER, "Maximum separation (days)"),
    _q("percent_valid_pixels", _NUMBER, "Minimum valid-pixel percentage"),
    _q("serialization", {"type": "string", "enum": ["json", "html", "text"]}, "Answer format"),
    _q("offset", {"type": "integer", "minimum": 0}, "First result"),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "Results per page"),
]  # fmt: skip

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad request (JSON: code, description)"},
    404: {"description": "Not found"},
    413: {"description": "Request body too large"},
    414: {"description": "Query string too long"},
}


def _service_doc(doc: dict[str, Any]) -> str:
    """A plain HTML page of the operations and their parameters (no script, no CDN)."""
    esc = html.escape
    rows = []
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            params = ", ".join(f"<code>{esc(p['name'])}</code>" for p in op.get("parameters", []))
            if "requestBody" in op:
                params += (", " if params else "") + "JSON body"
            summary = esc(op.get("summary") or "")
            rows.append(
                f"<tr><td>{esc(method.upper())}</td><td><code>{esc(path)}</code></td>"
                f"<td>{summary}</td><td>{params}</td></tr>"
            )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>itslive_dask search API</title>"
        "<style>body{font:14px sans-serif;margin:1em}td,th{border-bottom:1px solid #ddd;"
        "padding:3px 8px;text-align:left}</style></head><body>"
        f"<h1>{esc(doc.get('info', {}).get('title', 'API'))}</h1>"
        f"<p>{esc(doc.get('info', {}).get('description', ''))}. The OpenAPI document: "
        "<a href='api'>api</a>. The map page: <a href='map'>map</a>.</p>"
        "<table><tr><th>method</th><th>path</th><th></th><th>parameters</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def install_openapi_route(app: FastAPI) -> None:
    """Serve the app's OpenAPI document at ``/api`` and ``/openapi.json`` with its media type,
    and a plain HTML list of the operations at ``/api.html`` (the ``service-doc``)."""

    def document(request: Request) -> JSONResponse:
        doc = app.openapi()
        root = request.scope.get("root_path") or ""
        if root:
            doc = {**doc, "servers": [{"url": root}]}
        return JSONResponse(doc, media_type=OPENAPI_MEDIA_TYPE)

    for path in ("/api", "/openapi.json"):
        app.add_api_route(path, document, methods=["GET"], include_in_schema=False)

    def service_doc() -> HTMLResponse:
        return HTMLResponse(_service_doc(app.openapi()))

    app.add_api_route("/api.html", service_doc, methods=["GET"], include_in_schema=False)
