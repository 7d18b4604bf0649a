"""The lazy cube: granules -> plan -> Dask graph -> ``xarray.Dataset``.

:func:`open_cube` is the entry point. Nothing is read while the graph is built when the
granules come as a search result (footprints, CRS and dates are in the table); bare paths or
URLs have their headers read once, in parallel, first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from itslive_dask.cube.kernel import BlockConfig, empty_block, read_block
from itslive_dask.cube.plan import CubePlan, plan_cube
from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.geo.grid import PRODUCTION_ANCHOR, TargetGrid
from itslive_dask.geo.region import default_crs, parse_region, to_crs
from itslive_dask.io.listing import list_granules
from itslive_dask.table import granule_table, validate_granule_table

__all__ = ["cube_from_plan", "make_plan", "open_cube", "resolve_granules"]

log = logging.getLogger(__name__)

VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "vx": {
        "standard_name": "land_ice_surface_x_velocity",
        "description": "ground velocity component along the cube grid's x axis (rotated from the granule's grid)",
        "units": "meter/year",
    },
    "vy": {
        "standard_name": "land_ice_surface_y_velocity",
        "description": "ground velocity component along the cube grid's y axis (rotated from the granule's grid)",
        "units": "meter/year",
    },
    "v": {"standard_name": "land_ice_surface_velocity", "description": "velocity magnitude", "units": "meter/year"},
    "v_error": {"standard_name": "velocity_error", "description": "velocity magnitude error", "units": "meter/year"},
    "chip_size_width": {"description": "chip size in x", "units": "m"},
    "chip_size_height": {"description": "chip size in y", "units": "m"},
    "interp_mask": {"description": "1 where the velocity was interpolated", "units": "1"},
}


def open_cube(
    granules: Any,
    geometry: Any = None,
    *,
    bbox: Any = None,
    crs: Any = None,
    resolution: float = 120,
    variables: Sequence[str] = ("vx", "vy", "v", "v_error"),
    chunks: Any = None,
    resampling: str = "nearest",
    storage_options: dict | None = None,
    on_error: str = "raise",
) -> xr.Dataset:
    """Open a lazy, reprojected, clipped, time-stacked velocity cube.

    Parameters
    ----------
    granules
        A search result (granule table from :func:`itslive_dask.discovery.api`), a list of paths or
        fsspec URLs (local, ``s3://``, ``https://``), or a folder or glob of downloaded
        granules.
    geometry
        Clip region in lon/lat (GeoJSON dict, shapely geometry, WKT or list of (lon, lat)).
        With neither ``geometry`` nor ``bbox``, the union of the granule footprints.
    bbox
        ``(min_lon, min_lat, max_lon, max_lat)`` instead of ``geometry``.
    crs
        Target CRS; default EPSG:3031 for southern regions, EPSG:3413 for northern ones.
    resolution
        Pixel size in metres. The grid is aligned with the ITS_LIVE production grid.
    variables
        Data variables to build.
    chunks
        Block shape ``(mid_date, y, x)`` as a tuple or dict; default ``(16, 512, 512)``.
        The values are the same, bit for bit, for any chunking.
    resampling
        ``"nearest"`` (default; agrees with GDAL's nearest) or ``"bilinear"`` (NaN-aware).
    storage_options
        fsspec options for reading granules (e.g. ``{"anon": True}`` for the public bucket).
    on_error
        ``"raise"``: a granule that cannot be read fails the computation with
        :class:`~itslive_dask.GranuleError`. (To keep going and record failures in a ledger,
        use :func:`itslive_dask.write_cube`.)

    Returns
    -------
    xarray.Dataset
        Lazy (Dask-backed) dataset with dims ``(mid_date, y, x)``; float32 variables with NaN
        for no data; per-layer coordinates; CRS readable with ``ds.rio.crs``.

    Examples
    --------
    >>> from itslive_dask.discovery import api as search, open_cube          # doctest: +SKIP
    >>> granules = search(bbox=[-101.2, -75.5, -99.1, -74.7], start="2018-01-01")  # doctest: +SKIP
    >>> cube = open_cube(granules, bbox=[-101.2, -75.5, -99.1, -74.7])  # doctest: +SKIP
    >>> cube.v.groupby("mid_date.year").mean().compute()    # doctest: +SKIP
    """
    if on_error != "raise":
        raise InvalidInputError("open_cube supports on_error='raise'; write_cube records failures in a ledger")
    plan = make_plan(
        granules,
        geometry,
        bbox=bbox,
        crs=crs,
        resolution=resolution,
        variables=variables,
        chunks=chunks,
        resampling=resampling,
        storage_options=storage_options,
    )
    return cube_from_plan(plan, storage_options=storage_options)


def make_plan(
    granules: Any,
    geometry: Any = None,
    *,
    bbox: Any = None,
    crs: Any = None,
    resolution: float = 120,
    variables: Sequence[str] = ("vx", "vy", "v", "v_error"),
    chunks: Any = None,
    resampling: str = "nearest",
    storage_options: dict | None = None,
    anchor: tuple[float, float] = PRODUCTION_ANCHOR,
    t_offset: int = 0,
) -> CubePlan:
    """Resolve the granules and region and make the :class:`~itslive_dask.cube.plan.CubePlan`.

    Same parameters as :func:`open_cube`; useful to inspect a cube before building it
    (``make_plan(...).summary()``).
    """
    table = resolve_granules(granules, storage_options=storage_options)
    if geometry is None and bbox is None:
        if len(table) == 0:
            raise InvalidInputError("no granules and no region: nothing to build")
        region_ll = shapely.union_all(table.geometry.values)
    else:
        region_ll = parse_region(geometry, bbox)
    target_crs = default_crs(region_ll) if crs is None else crs
    grid0 = TargetGrid.from_bounds((0, 0, 1, 1), target_crs, resolution, anchor)  # validates crs/res
    region_t = to_crs(region_ll, grid0.epsg)
    if region_t.is_empty or not np.all(np.isfinite(region_t.bounds)):
        raise InvalidInputError(f"region cannot be projected to EPSG:{grid0.epsg}")
    grid = TargetGrid.from_bounds(region_t.bounds, grid0.epsg, resolution, anchor)
    if grid.width * grid.height > 2**34:
        raise InvalidInputError(f"grid of {grid.height}x{grid.width} pixels is too large; check the region and resolution")
    return plan_cube(
        table, grid, region_t, chunks=chunks, variables=variables, resampling=resampling, t_offset=t_offset
    )


def resolve_granules(granules: Any, *, storage_options: dict | None = None, max_workers: int = 16) -> gpd.GeoDataFrame:
    """Turn what users pass as ``granules`` into a complete granule table.

    A granule table is validated; rows without footprint or EPSG (e.g. from the legacy API)
    and bare paths/URLs have their headers read (few bytes each, in parallel threads).
    """
    if isinstance(granules, gpd.GeoDataFrame):
        table = validate_granule_table(granules)
        missing = table.geometry.isna() | (table["epsg"] <= 0)
        if not missing.any():
            return table
        import pandas as pd

        filled = _header_table(list(table.loc[missing, "url"]), storage_options, max_workers)
        known = table.loc[~missing]
        both = pd.concat([known, filled], ignore_index=True) if len(known) else filled
        return validate_granule_table(gpd.GeoDataFrame(both, geometry="geometry", crs="EPSG:4326"))
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
    return _header_table(sources, storage_options, max_workers)


def cube_from_plan(plan: CubePlan, *, storage_options: dict | None = None) -> xr.Dataset:
    """Build the lazy Dataset of a plan: one task per output block, shared config once.

    The graph has one task per block of the plan (plus one slicing task per block and
    variable); blocks that no granule touches are cheap fill tasks.
    """
    region_wkb = shapely.to_wkb(plan.region)
    token = dask.base.tokenize(
        plan.grid,
        plan.chunks,
        plan.variables,
        plan.resampling,
        region_wkb,
        plan.t_offset,
        _refs_digest(plan),
        sorted(_safe_items(dict(storage_options or {}))),
    )
    cfg = BlockConfig(
        grid=plan.grid,
        variables=plan.variables,
        resampling=plan.resampling,
        region_wkb=region_wkb,
        storage_options=dict(storage_options or {}),
        session=token,
    )
    name = f"itslive-blocks-{token}"
    cfg_key = f"itslive-config-{token}"
    tchunks = plan.time_chunks()
    ychunks, xchunks = plan.space_chunks()
    nvar = len(plan.variables)
    dsk: dict = {cfg_key: cfg}
    t0 = plan.t_offset // plan.chunks[0]
    for block in plan.block_ids():
        tb, iy, ix = block
        ts, rs, cs = plan.block_slices(block)
        nt, ny, nx = ts.stop - ts.start, rs.stop - rs.start, cs.stop - cs.start
        key = (name, 0, tb - t0, iy, ix)
        refs = plan.block_refs(block)
        if refs:
            dsk[key] = (read_block, cfg_key, refs, (rs.start, rs.stop), (cs.start, cs.stop), nt)
        else:
            dsk[key] = (empty_block, nvar, nt, ny, nx)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    blocks = da.Array(
        graph,
        name,
        chunks=((nvar,), tchunks, ychunks, xchunks),
        dtype="float32",
        meta=np.empty((0, 0, 0, 0), dtype="float32"),
    )
    layers = plan.layers
    coords: dict[str, Any] = {
        "mid_date": ("mid_date", layers["mid_date"].to_numpy(), {"description": "midpoint of the two acquisitions, made unique"}),
        "y": ("y", plan.grid.y, {"standard_name": "projection_y_coordinate", "units": "m"}),
        "x": ("x", plan.grid.x, {"standard_name": "projection_x_coordinate", "units": "m"}),
    }
    for col in layers.columns:
        if col == "mid_date":
            continue
        values = layers[col].to_numpy()
        if values.dtype == object:
            values = values.astype(str)
        coords[col] = ("mid_date", values)
    data_vars = {
        v: (("mid_date", "y", "x"), blocks[i], dict(VARIABLE_ATTRS.get(v, {}), grid_mapping="mapping"))
        for i, v in enumerate(plan.variables)
    }
    ds = xr.Dataset(data_vars, coords=coords)
    ds = _write_crs(ds, plan.grid)
    ds.attrs.update(
        {
            "title": "ITS_LIVE image-pair velocity cube (itslive_dask)",
            "Conventions": "CF-1.8",
            "projection": str(plan.grid.epsg),
            "resampling": plan.resampling,
            "region_wkt": shapely.to_wkt(plan.region, rounding_precision=3),
            "chunks": list(plan.chunks),
            "vector_convention": "vx, vy are ground velocities along the cube grid axes, rotated per pixel from each granule's grid",
        }
    )
    ds.encoding["itslive_dask_plan"] = plan
    return ds


def _write_crs(ds: xr.Dataset, grid: TargetGrid) -> xr.Dataset:
    import rioxarray  # noqa: F401  (registers .rio)

    ds = ds.rio.write_crs(grid.crs, grid_mapping_name="mapping")
    ds["mapping"].attrs.update(
        {
            "spatial_epsg": grid.epsg,
            "GeoTransform": " ".join(str(v) for v in (grid.x0, grid.resolution, 0.0, grid.y0, 0.0, -grid.resolution)),
        }
    )
    return ds


def _refs_digest(plan: CubePlan) -> str:
    """A fast digest of the granule references (dask's tokenize is slow on 10^5 tuples)."""
    import hashlib

    h = hashlib.sha256()
    for r in plan.refs:
        h.update(f"{r.granule_id}\x00{r.url}\x00{r.epsg}\n".encode())
    return h.hexdigest()


def _safe_items(options: dict) -> list[tuple[str, str]]:
    # storage options go into the token as a digest only: never in a key name
    return [(str(k), dask.base.tokenize(v)) for k, v in options.items()]


def _header_table(sources: list[str], storage_options: dict | None, max_workers: int) -> gpd.GeoDataFrame:
    from itslive_dask.io.listing import read_headers

    infos, failures = read_headers(sources, storage_options, max_workers=max_workers)
    if failures:
        first = failures[0]
        raise GranuleError(first["url"], first["error"])
    return granule_table(infos[s].to_record(s) for s in sources)
