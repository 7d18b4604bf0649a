"""The lazy cube: granules -> plan -> Dask graph -> ``xarray.Dataset``.

:func:`open_cube` is the entry point. Nothing is read while the graph is built when the
granules come as a search result (footprints, CRS and dates are in the table); bare paths or
URLs have their headers read once, in parallel, first.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import xarray as xr

from itslive_dask.cube.graph import cube_from_plan
from itslive_dask.cube.plan import CubePlan, fit_chunks, plan_cube
from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.io.fetch import DEFAULT_RETRY_BUDGET, RetryPolicy, retry_policy
from itslive_dask.io.listing import list_granules
from itslive_dask.spec import CubeSpec
from itslive_dask.table import granule_table, validate_granule_table
from itslive_dask.types import BBox, Chunks, CRSLike, Granules, Region, Resampling, StorageOptions

__all__ = ["granule_sources", "make_plan", "open_cube", "resolve_granules"]

log = logging.getLogger(__name__)


def open_cube(
    granules: Granules,
    geometry: Region | None = None,
    *,
    spec: CubeSpec | None = None,
    bbox: BBox | None = None,
    crs: CRSLike | None = None,
    resolution: float | None = None,
    variables: Sequence[str] | None = None,
    chunks: Chunks | None = None,
    resampling: Resampling | None = None,
    storage_options: StorageOptions | None = None,
    on_error: str = "raise",
    retries: int = 3,
    retry_budget: float = DEFAULT_RETRY_BUDGET,
) -> xr.Dataset:
    """Open a lazy, reprojected, clipped, time-stacked velocity cube.

    Parameters
    ----------
    granules
        A search result (granule table from :func:`itslive_dask.search`), a list of paths or
        fsspec URLs (local, ``s3://``, ``https://``), or a folder or glob of downloaded
        granules.
    geometry
        Clip region in lon/lat (GeoJSON dict, shapely geometry, WKT or list of (lon, lat)).
        With neither ``geometry`` nor ``bbox``, the union of the granule footprints.
    spec
        The cube's settings as one :class:`~itslive_dask.spec.CubeSpec`; the keyword
        arguments below override its fields.
    bbox
        ``(min_lon, min_lat, max_lon, max_lat)`` instead of ``geometry``.
    crs
        Target CRS; default EPSG:3031 for southern regions, EPSG:3413 for northern ones.
    resolution
        Pixel size in metres (default 120). The grid is aligned with the ITS_LIVE
        production grid.
    variables
        Data variables to build (default ``vx``, ``vy``, ``v``, ``v_error``).
    chunks
        Block shape ``(mid_date, y, x)`` as a tuple or dict; default ``(16, 512, 512)``;
        ``y`` and ``x`` no larger than the grid (:func:`~itslive_dask.cube.plan.fit_chunks`).
        The values are the same, bit for bit, for any chunking.
    resampling
        ``"nearest"`` (default; agrees with GDAL's nearest) or ``"bilinear"`` (NaN-aware).
    storage_options
        fsspec options for reading granules (e.g. ``{"anon": True}`` for the public bucket).
    on_error
        ``"raise"`` (default): a granule that cannot be read fails the planning or the
        computation with :class:`~itslive_dask.GranuleError`. ``"skip"``: granules whose
        header cannot be read are left out and listed in ``ds.attrs["unreadable_granules"]``
        (JSON); a granule that fails while blocks are computed leaves its layer NaN there and
        is flagged in the lazy coordinate ``granule_status`` (0 read, 1 failed).
        :func:`itslive_dask.write_cube` always records failures in its ledger.
    retries
        Extra attempts of a granule read after a transient error (network, 5xx, timeouts);
        missing, forbidden and corrupt objects are not retried.
    retry_budget
        Seconds one granule may spend on failed attempts and back-off, header and windows
        together (default 8): no new attempt starts when it would pass this. A granule that
        keeps failing then costs about this long (a stalled connection adds one attempt's
        timeouts, 3 s + 3 s). Applies to the header reads of bare paths/URLs too.

    Returns
    -------
    xarray.Dataset
        Lazy (Dask-backed) dataset with dims ``(mid_date, y, x)``; float32 variables with NaN
        for no data; per-layer coordinates; CRS readable with ``ds.rio.crs``.

    Examples
    --------
    >>> from itslive_dask import search, open_cube                  # doctest: +SKIP
    >>> granules = search(bbox=[-101.2, -75.5, -99.1, -74.7], start="2018-01-01")  # doctest: +SKIP
    >>> cube = open_cube(granules, bbox=[-101.2, -75.5, -99.1, -74.7])  # doctest: +SKIP
    >>> cube.v.groupby("mid_date.year").mean().compute()    # doctest: +SKIP
    """
    if on_error not in ON_ERROR:
        raise InvalidInputError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    spec = CubeSpec.build(
        spec, geometry=geometry, bbox=bbox, crs=crs, resolution=resolution,
        variables=variables, chunks=chunks, resampling=resampling,
    )  # fmt: skip
    policy = retry_policy(retries, retry_budget)
    plan = make_plan(
        granules, spec=spec, storage_options=storage_options, on_error=on_error,
        retries=retries, retry_budget=retry_budget,
    )  # fmt: skip
    return cube_from_plan(
        plan, storage_options=storage_options, on_error=on_error, retries=policy.retries,
        retry_budget=policy.budget,
    )  # fmt: skip


def make_plan(
    granules: Granules,
    geometry: Region | None = None,
    *,
    spec: CubeSpec | None = None,
    bbox: BBox | None = None,
    crs: CRSLike | None = None,
    resolution: float | None = None,
    variables: Sequence[str] | None = None,
    chunks: Chunks | None = None,
    resampling: Resampling | None = None,
    storage_options: StorageOptions | None = None,
    t_offset: int = 0,
    on_error: str = "raise",
    retries: int = 3,
    retry_budget: float = DEFAULT_RETRY_BUDGET,
) -> CubePlan:
    """Resolve the granules and the spec into a :class:`~itslive_dask.cube.plan.CubePlan`.

    Same parameters as :func:`open_cube`; useful to inspect a cube before building it
    (``make_plan(...).summary()``). Granules given as a table are not read; bare
    paths/URLs have their headers read. The planning itself (:func:`plan_cube`) is pure.
    With ``on_error="skip"``, granules whose header cannot be read are left out and listed
    in the plan's ``unreadable``; ``retries`` and ``retry_budget`` bound each header read.
    """
    policy = retry_policy(retries, retry_budget)
    spec = CubeSpec.build(
        spec, geometry=geometry, bbox=bbox, crs=crs, resolution=resolution,
        variables=variables, chunks=chunks, resampling=resampling,
    )  # fmt: skip
    table, unreadable = resolve_and_report(
        granules, storage_options=storage_options, on_error=on_error, policy=policy
    )
    grid, region_t = spec.grid_and_region(table.geometry.values)
    plan = plan_cube(
        table, grid, region_t, chunks=fit_chunks(spec.chunks, grid), variables=spec.variables,
        resampling=spec.resampling, t_offset=t_offset,
    )  # fmt: skip
    return dataclasses.replace(plan, unreadable=tuple(unreadable)) if unreadable else plan


#: What to do with a granule that cannot be read: fail, or leave it out and report it.
ON_ERROR = ("raise", "skip")


def resolve_granules(
    granules: Granules,
    *,
    storage_options: StorageOptions | None = None,
    max_workers: int = 16,
    on_error: str = "raise",
) -> gpd.GeoDataFrame:
    """Turn what users pass as ``granules`` into a complete granule table.

    A granule table is validated; rows without footprint or EPSG (e.g. from the legacy API)
    and bare paths/URLs have their headers read (few bytes each, in parallel threads, with
    retries of transient errors).

    Parameters
    ----------
    on_error
        ``"raise"``: a header that cannot be read raises :class:`GranuleError`.
        ``"skip"``: such granules are left out and listed in ``table.attrs["unreadable"]``
        (``{"url", "error", "attempts"}`` each).
    """
    table, unreadable = resolve_and_report(
        granules, storage_options=storage_options, max_workers=max_workers, on_error=on_error
    )
    table.attrs["unreadable"] = unreadable
    return table


def resolve_and_report(
    granules: Granules,
    *,
    storage_options: StorageOptions | None = None,
    max_workers: int = 16,
    on_error: str = "raise",
    policy: RetryPolicy | None = None,
) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]]]:
    """:func:`resolve_granules`, returning the unreadable granules beside the table;
    ``policy`` bounds each header read (default :class:`~itslive_dask.io.fetch.RetryPolicy`)."""
    if on_error not in ON_ERROR:
        raise InvalidInputError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if isinstance(granules, gpd.GeoDataFrame):
        table = validate_granule_table(granules)
        missing = table.geometry.isna() | (table["epsg"] <= 0)
        if not missing.any():
            return table, []
        import pandas as pd

        filled, unreadable = _header_table(
            list(table.loc[missing, "url"]), storage_options, max_workers, on_error, policy
        )
        known = table.loc[~missing]
        both = pd.concat([known, filled], ignore_index=True) if len(known) else filled
        return (
            validate_granule_table(gpd.GeoDataFrame(both, geometry="geometry", crs="EPSG:4326")),
            unreadable,
        )
    sources = granule_sources(granules, storage_options)
    assert sources is not None
    return _header_table(sources, storage_options, max_workers, on_error, policy)


def granule_sources(
    granules: Granules, storage_options: StorageOptions | None = None
) -> list[str] | None:
    """The paths/URLs of ``granules`` given as a list, a folder or a glob (None for a
    granule table, whose rows need no listing).

    Raises
    ------
    InvalidInputError
        For anything else, or when a folder or glob holds no granule.
    """
    if isinstance(granules, gpd.GeoDataFrame):
        return None
    if isinstance(granules, str | os.PathLike):
        _, sources = list_granules(granules, storage_options)
    elif isinstance(granules, Sequence):
        sources = [str(g) for g in granules]
    else:
        raise InvalidInputError(
            f"granules must be a search result, a list of paths/URLs, a folder or a glob; got {type(granules).__name__}"
        )
    if not sources:
        raise InvalidInputError(f"no granules found in {granules!r}")
    return sources


def _header_table(
    sources: list[str],
    storage_options: StorageOptions | None,
    max_workers: int,
    on_error: str,
    policy: RetryPolicy | None = None,
) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]]]:
    from itslive_dask.io.listing import scan_headers

    scan = scan_headers(sources, storage_options, max_workers=max_workers, policy=policy)
    failures = scan.failures
    if failures and on_error == "raise":
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise GranuleError(first["url"], f"{first['error']}{more}", first["attempts"])
    # each row keeps the chunk index read with its header: the build need not read it again
    return granule_table(scan.row(s) for s in sources if s in scan.infos), failures
