"""The FastAPI application of the local search server."""

from __future__ import annotations

import logging
import os

import geopandas as gpd
from fastapi import FastAPI

from itslive_dask.server.builds import BuildConfig
from itslive_dask.server.errors import install_error_handlers
from itslive_dask.server.guard import MAX_BODY_BYTES, GuardMiddleware
from itslive_dask.server.legacy_api import legacy_router
from itslive_dask.server.map_page import install_map_page
from itslive_dask.server.openapi import install_openapi_route
from itslive_dask.server.stac_api import stac_router
from itslive_dask.server.state import CatalogState

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(
    catalog: str | os.PathLike | gpd.GeoDataFrame,
    *,
    storage_options: dict | None = None,
    collection: str = "itslive-granules",
    root_path: str = "",
    max_body_bytes: int = MAX_BODY_BYTES,
    builds: BuildConfig | None = None,
    tiles_url: str | None = None,
    tiles_attribution: str = "",
) -> FastAPI:
    """Build the search server's FastAPI app over a catalog.

    Parameters
    ----------
    catalog
        A granule table, or the path/URL of a catalog file (see
        :func:`itslive_dask.discovery.catalog.load_catalog`).
    storage_options
        fsspec options to read a remote catalog file.
    collection
        STAC collection id to serve the granules as.
    root_path
        The path prefix the app is served under behind a proxy (e.g. a Jupyter server's
        ``/user/me/proxy/8000``), used in the absolute links of STAC answers.
    max_body_bytes
        Largest request body accepted (413 above).
    builds
        Turn on cube builds from the map page, writing only under
        ``builds.output_root`` (off by default).
    tiles_url, tiles_attribution
        Optional base-map tile URL template (``https://.../{z}/{x}/{y}.png``) for the map page;
        without one the page shows a graticule and the footprints (works offline).

    Returns
    -------
    FastAPI
        Endpoints: the legacy ``/velocities/urls/`` and ``/velocities/coverage/``, and a STAC
        API subset (``/``, ``/conformance``, ``/collections``, ``/collections/{id}``,
        ``/collections/{id}/items``, ``/collections/{id}/queryables``, ``/queryables``,
        ``/search`` GET and POST), the OpenAPI document at ``/api``. Bad requests get a 4xx
        JSON answer; request bodies and query strings are capped (see
        :mod:`itslive_dask.server.guard`). The map page is at ``/map``
        (:mod:`itslive_dask.server.map_page`).

    Examples
    --------
    >>> app = create_app("granules.parquet")  # doctest: +SKIP
    """
    if isinstance(catalog, gpd.GeoDataFrame):
        table = catalog
    else:
        from itslive_dask.discovery.catalog import load_catalog

        table = load_catalog(catalog, storage_options=storage_options)
    state = CatalogState(table, collection=collection)
    app = FastAPI(
        title="itslive_dask search",
        description="ITS_LIVE granule search (legacy NSIDC-style API and a STAC API subset)",
        version="1",
        root_path=root_path,
        openapi_url=None,  # served by install_openapi_route with its own media type
        docs_url=None,  # the interactive docs load scripts from a CDN: not offline
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body=max_body_bytes)
    app.include_router(legacy_router(state))
    app.include_router(stac_router(state))
    install_map_page(
        app, state, builds=builds, tiles_url=tiles_url, tiles_attribution=tiles_attribution
    )
    install_openapi_route(app)
    app.state.catalog = state
    logger.info("search app over %d granules", len(state))
    return app
