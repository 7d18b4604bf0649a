"""The map page (``/map``), its static files and the build endpoints behind it.

The page (``static/map.html`` + ``map.js``) uses only relative URLs, so it works at the root
and under any path prefix (a Jupyter server proxy, a hub's service prefix). Its JavaScript
libraries are vendored in ``static/vendor`` (see the README there): no CDN.

Endpoints: ``GET /map`` (the page), ``GET /static/...``, ``GET /map/config`` (collection,
suggested projection, limits, whether builds are on), and, when the app has a
:class:`~itslive_dask.server.builds.BuildConfig`: ``POST /builds`` (validate and queue),
``GET /builds``, ``GET /builds/{id}`` (progress, ledger, preview link), ``POST
/builds/{id}/cancel``, ``GET /builds/{id}/preview.png``. With builds off, ``POST /builds``
answers 403.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from itslive_dask.server.builds import BuildConfig, BuildManager
from itslive_dask.server.errors import NotFound
from itslive_dask.server.openapi import ERRORS
from itslive_dask.server.state import CatalogState

__all__ = ["STATIC_DIR", "install_map_page"]

STATIC_DIR = Path(str(resources.files("itslive_dask.server") / "static"))

_BUILD_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["name", "region"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
                    "region": {"type": "object", "description": "GeoJSON Polygon/MultiPolygon"},
                    "start": {"type": "string"},
                    "end": {"type": "string"},
                    "min_separation": {"type": "number", "minimum": 0},
                    "max_separation": {"type": "number", "minimum": 0},
                    "percent_valid_pixels": {"type": "number", "minimum": 0, "maximum": 100},
                    "sensors": {"type": "array", "items": {"type": "string"}},
                    "resolution": {"type": "number"},
                },
            }
        }
    },
}


class _Forbidden(Exception):
    pass


def _suggested_crs(state: CatalogState) -> str:
    bbox, _ = state.extent()
    mid_lat = (bbox[1] + bbox[3]) / 2.0
    if mid_lat >= 55:
        return "EPSG:3413"
    if mid_lat <= -55:
        return "EPSG:3031"
    return "EPSG:3857"


def install_map_page(
    app: FastAPI,
    state: CatalogState,
    *,
    builds: BuildConfig | None = None,
    tiles_url: str | None = None,
    tiles_attribution: str = "",
) -> BuildManager | None:
    """Add the map page, its static files and the build endpoints to ``app``.

    Returns the :class:`BuildManager` when builds are on (``app.state.builds``).
    """
    from itslive_dask.server.stac_api import loads

    manager = BuildManager(builds, state) if builds is not None else None
    router = APIRouter()
    page = (STATIC_DIR / "map.html").read_text(encoding="utf-8")

    @router.get("/map", include_in_schema=False)
    def map_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @router.get("/map/config", tags=["map"])
    def map_config() -> JSONResponse:
        bbox, interval = state.extent()
        sensors = sorted(str(s) for s in state.table["sensor"].unique())
        return JSONResponse(
            {
                "collection": state.collection,
                "n_granules": len(state),
                "bbox": bbox,
                "interval": interval,
                "sensors": sensors,
                "suggested_crs": _suggested_crs(state),
                "tiles_url": tiles_url,
                "tiles_attribution": tiles_attribution,
                "builds_enabled": manager is not None,
                "limits": manager.config.limits() if manager is not None else None,
                "dashboard": manager.dashboard() if manager is not None else None,
            }
        )

    def need_manager() -> BuildManager:
        if manager is None:
            raise _Forbidden(
                "builds are off on this server; start it with --enable-builds --output-root DIR"
            )
        return manager

    def find(build_id: str) -> Any:
        m = need_manager()
        build = m.builds.get(build_id)
        if build is None:
            raise NotFound(f"build {build_id!r:.40} not found")
        return m, build

    @router.post("/builds", tags=["map"], responses={**ERRORS, 403: {"description": "builds off"}},
                 openapi_extra={"requestBody": _BUILD_BODY})  # fmt: skip
    async def start_build(request: Request) -> JSONResponse:
        m = need_manager()
        raw = await request.body()
        body = loads(raw, "the build request") if raw.strip() else None
        build = m.submit(body)
        return JSONResponse(build.to_json(m.dashboard()), status_code=202)

    @router.get("/builds", tags=["map"])
    def list_builds() -> JSONResponse:
        if manager is None:
            return JSONResponse({"enabled": False, "builds": []})
        dash = manager.dashboard()
        items = sorted(manager.builds.values(), key=lambda b: b.created, reverse=True)
        return JSONResponse({"enabled": True, "builds": [b.to_json(dash) for b in items]})

    @router.get("/builds/{build_id}", tags=["map"], responses=ERRORS)
    def get_build(build_id: str) -> JSONResponse:
        m, build = find(build_id)
        return JSONResponse(build.to_json(m.dashboard()))

    @router.post("/builds/{build_id}/cancel", tags=["map"], responses=ERRORS)
    def cancel_build(build_id: str) -> JSONResponse:
        m, build = find(build_id)
        m.cancel(build_id)
        return JSONResponse(build.to_json(m.dashboard()))

    @router.get("/builds/{build_id}/preview.png", tags=["map"], responses=ERRORS)
    def preview(build_id: str) -> FileResponse:
        _, build = find(build_id)
        if not build.preview.exists():
            raise NotFound(f"build {build_id!r:.40} has no preview (yet)")
        return FileResponse(build.preview, media_type="image/png")

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(_Forbidden)
    async def _forbidden(request: Request, exc: _Forbidden) -> JSONResponse:
        msg = str(exc)
        return JSONResponse({"code": "Forbidden", "description": msg, "detail": msg}, 403)

    app.state.builds = manager  # closed by serve() / LocalSearchServer.stop()
    return manager
