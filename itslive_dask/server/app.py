"""The FastAPI application of the local search server."""

from __future__ import annotations

import logging
import os

import geopandas as gpd
from fastapi import FastAPI

from itslive_dask.server.errors import install_error_handlers
from itslive_dask.server.legacy_api import legacy_router
from itslive_dask.server.stac_api import stac_router
from itslive_dask.server.state import CatalogState

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(
    catalog: str | os.PathLike | gpd.GeoDataFrame,
    *,
    storage_options: dict | None = None,
    collection: str = "itslive-granules",
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

    Returns
    -------
    FastAPI
        Endpoints: the legacy ``/velocities/urls/`` and ``/velocities/coverage/``, and a STAC
        API subset (``/``, ``/conformance``, ``/collections``, ``/collections/{id}``,
        ``/collections/{id}/items``, ``/collections/{id}/queryables``, ``/queryables``,
        ``/search`` GET and POST). Bad requests get a 4xx JSON answer.

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
    )
    install_error_handlers(app)
    app.include_router(legacy_router(state))
    app.include_router(stac_router(state))
    app.state.catalog = state
    logger.info("search app over %d granules", len(state))
    return app
