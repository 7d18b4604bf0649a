"""The cube's Dask graph and its xarray dataset: one task per output block.

:func:`cube_from_plan` turns a :class:`~itslive_dask.cube.plan.CubePlan` into a lazy
``xarray.Dataset`` whose blocks are computed by :func:`itslive_dask.cube.kernel.read_block`;
:func:`cube_template` gives the same dataset without a graph to compute (for Zarr templates).
"""

from __future__ import annotations

import json
import operator
from typing import Any

import dask
import dask.array as da
import numpy as np
import shapely
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from itslive_dask.cube.kernel import BlockConfig, empty_block, read_block, read_block_flagged
from itslive_dask.cube.plan import CubePlan
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.types import StorageOptions

__all__ = ["CONVENTIONS", "COORD_ATTRS", "VARIABLE_ATTRS", "cube_from_plan", "cube_template"]

#: The CF conventions the cube declares. CF-1.9 and later allow 64-bit integers, which the
#: cube needs (``mid_date`` and the acquisition dates are int64 microseconds or
#: milliseconds, ``source_epsg``/``version`` are int64); CF-1.8 does not.
CONVENTIONS = "CF-1.10"

#: Attributes of the data variables. ``standard_name`` only where the CF standard-name table
#: has one (``land_ice_surface_x_velocity``/``_y_velocity``); the others have ``long_name``.
VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "vx": {
        "standard_name": "land_ice_surface_x_velocity",
        "long_name": "velocity component in x direction",
        "description": "ground velocity component along the cube grid's x axis (rotated from the granule's grid)",
        "units": "meter/year",
    },
    "vy": {
        "standard_name": "land_ice_surface_y_velocity",
        "long_name": "velocity component in y direction",
        "description": "ground velocity component along the cube grid's y axis (rotated from the granule's grid)",
        "units": "meter/year",
    },
    "v": {"long_name": "velocity magnitude", "description": "land ice surface speed, hypot(vx, vy)", "units": "meter/year"},
    "v_error": {"long_name": "velocity magnitude error", "description": "error of v, as given by the granule", "units": "meter/year"},
    "chip_size_width": {"long_name": "chip size in x", "units": "m"},
    "chip_size_height": {"long_name": "chip size in y", "units": "m"},
    "interp_mask": {"long_name": "interpolated value mask", "description": "1 where the velocity was interpolated", "units": "1"},
}

#: Attributes of the coordinates (per-layer ones along ``mid_date`` carry the provenance:
#: each layer's granule id and URL).
COORD_ATTRS: dict[str, dict[str, str]] = {
    "mid_date": {"standard_name": "time", "axis": "T", "long_name": "midpoint of the two acquisitions, made unique",
                 "description": "the k-th layer sharing a midpoint with earlier ones is k microseconds later"},
    "x": {"standard_name": "projection_x_coordinate", "axis": "X", "long_name": "x coordinate of projection (pixel centre)", "units": "m"},
    "y": {"standard_name": "projection_y_coordinate", "axis": "Y", "long_name": "y coordinate of projection (pixel centre)", "units": "m"},
    "acquisition_date_img1": {"long_name": "acquisition date and time of image 1"},
    "acquisition_date_img2": {"long_name": "acquisition date and time of image 2"},
    "date_dt": {"long_name": "time separation between the two acquisitions", "units": "days"},
    "satellite_img1": {"long_name": "satellite of image 1"},
    "satellite_img2": {"long_name": "satellite of image 2"},
    "sensor": {"long_name": "sensor family of the image pair"},
    "granule_id": {"long_name": "ITS_LIVE granule id of the layer (provenance)"},
    "granule_url": {"long_name": "URL of the granule the layer was read from (provenance)"},
    "source_epsg": {"long_name": "EPSG code of the granule's grid"},
    "version": {"long_name": "ITS_LIVE granule format version"},
    "percent_valid": {"long_name": "percentage of valid pixels in the granule", "units": "percent"},
    "mapping": {"long_name": "grid mapping of the cube (CF and GDAL forms)"},
}


def cube_from_plan(
    plan: CubePlan,
    *,
    storage_options: StorageOptions | None = None,
    on_error: str = "raise",
    retries: int = 3,
    retry_budget: float = BlockConfig.budget,
) -> xr.Dataset:
    """Build the lazy Dataset of a plan: one task per output block, shared config once.

    The graph has one task per block of the plan (plus one slicing task per block and
    variable); blocks that no granule touches are cheap fill tasks.

    With ``on_error="skip"`` a granule that fails while a block is computed leaves its layer
    NaN in that block, and the lazy per-layer coordinate ``granule_status`` (0 read,
    1 failed) says so; granules left out when planning are listed in
    ``ds.attrs["unreadable_granules"]``. ``retries`` and ``retry_budget`` (seconds per
    granule) bound the reads of each granule (:class:`~itslive_dask.io.fetch.RetryPolicy`).
    """
    region_wkb = shapely.to_wkb(plan.region)
    # storage options enter the key as a digest only: never in a key name
    token = dask.base.tokenize(
        plan.token, dask.base.tokenize(dict(storage_options or {})), on_error, retries, retry_budget
    )
    cfg = BlockConfig(
        grid=plan.grid,
        variables=plan.variables,
        resampling=plan.resampling,
        region_wkb=region_wkb,
        storage_options=dict(storage_options or {}),
        retries=retries,
        budget=retry_budget,
        session=token,
    )
    name = f"itslive-blocks-{token}"
    cfg_key = f"itslive-config-{token}"
    tchunks = plan.time_chunks()
    ychunks, xchunks = plan.space_chunks()
    nvar = len(plan.variables)
    dsk: dict = {cfg_key: cfg}
    status: dict = {}
    status_name = f"itslive-status-{token}"
    t0 = plan.t_offset // plan.chunks[0]
    for block in plan.block_ids():
        tb, iy, ix = block
        ts, rs, cs = plan.block_slices(block)
        nt, ny, nx = ts.stop - ts.start, rs.stop - rs.start, cs.stop - cs.start
        key = (name, 0, tb - t0, iy, ix)
        refs = plan.block_refs(block)
        window = (cfg_key, refs, (rs.start, rs.stop), (cs.start, cs.stop), nt)
        if not refs:
            dsk[key] = (empty_block, nvar, nt, ny, nx)
            status[(status_name, tb - t0, iy, ix)] = (np.zeros, (nt, 1, 1), "int8")
        elif on_error == "skip":
            dsk[(name + "-both", tb - t0, iy, ix)] = (read_block_flagged, *window)
            dsk[key] = (operator.getitem, (name + "-both", tb - t0, iy, ix), 0)
            status[(status_name, tb - t0, iy, ix)] = (operator.getitem, (name + "-both", tb - t0, iy, ix), 1)
        else:
            dsk[key] = (read_block, *window)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    blocks = da.Array(
        graph,
        name,
        chunks=((nvar,), tchunks, ychunks, xchunks),
        dtype="float32",
        meta=np.empty((0, 0, 0, 0), dtype="float32"),
    )
    ds = _dataset(plan, [blocks[i] for i in range(nvar)])
    if on_error == "skip":
        layers = HighLevelGraph.from_collections(
            status_name, {**dsk, **status}, dependencies=()
        )  # fmt: skip
        flags = da.Array(
            layers, status_name, chunks=(tchunks, (1,) * len(ychunks), (1,) * len(xchunks)),
            dtype="int8", meta=np.empty((0, 0, 0), dtype="int8"),
        )  # fmt: skip
        ds = ds.assign_coords(
            granule_status=("mid_date", flags.max(axis=(1, 2)), {"flag_values": np.array([0, 1], "int8"), "flag_meanings": "read failed"})
        )
        ds.attrs["unreadable_granules"] = json.dumps(list(plan.unreadable))
    ds.encoding["itslive_dask_plan"] = plan
    return ds


def cube_template(plan: CubePlan) -> xr.Dataset:
    """The cube's dataset with placeholder data: every coordinate and attribute of
    :func:`cube_from_plan`, data variables chunked like the blocks but never computed
    (for writing a Zarr template with ``compute=False``)."""
    chunks = (plan.time_chunks(), *plan.space_chunks())
    empty = [da.empty(plan.shape, chunks=chunks, dtype="float32") for _ in plan.variables]
    return _dataset(plan, empty)


def _dataset(plan: CubePlan, arrays: list[Any]) -> xr.Dataset:
    layers = plan.layers
    coords: dict[str, Any] = {
        "mid_date": ("mid_date", layers["mid_date"].to_numpy(), dict(COORD_ATTRS["mid_date"])),
        "y": ("y", plan.grid.y, dict(COORD_ATTRS["y"])),
        "x": ("x", plan.grid.x, dict(COORD_ATTRS["x"])),
    }
    for col in layers.columns:
        if col == "mid_date":
            continue
        values = layers[col].to_numpy()
        if values.dtype == object:
            values = values.astype(str)
        coords[col] = ("mid_date", values, dict(COORD_ATTRS.get(col, {})))
    data_vars = {
        v: (("mid_date", "y", "x"), arrays[i], dict(VARIABLE_ATTRS.get(v, {}), grid_mapping="mapping"))
        for i, v in enumerate(plan.variables)
    }
    ds = xr.Dataset(data_vars, coords=coords)
    for c in ("x", "y"):  # CF: no fill value on coordinate variables (xarray adds NaN on write)
        ds[c].encoding["_FillValue"] = None
    ds = _write_crs(ds, plan.grid)
    ds.attrs.update(
        {
            "title": "ITS_LIVE image-pair velocity cube (itslive_dask)",
            "Conventions": CONVENTIONS,
            "projection": str(plan.grid.epsg),
            "resampling": plan.resampling,
            "region_wkt": shapely.to_wkt(plan.region, rounding_precision=3),
            "chunks": list(plan.chunks),
            "vector_convention": "vx, vy are ground velocities along the cube grid axes, rotated per pixel from each granule's grid",
        }
    )
    return ds


def _write_crs(ds: xr.Dataset, grid: TargetGrid) -> xr.Dataset:
    import rioxarray  # noqa: F401  (registers .rio)

    ds = ds.rio.write_crs(grid.crs, grid_mapping_name="mapping")
    attrs = ds["mapping"].attrs
    if attrs.get("grid_mapping_name") == "polar_stereographic" and "latitude_of_projection_origin" not in attrs:
        # CF requires it (+90 or -90); pyproj's to_cf() leaves it out for variant B, whose
        # standard parallel gives the hemisphere
        lat_ts = float(attrs.get("standard_parallel", attrs.get("latitude_of_projection_origin", 90.0)))
        attrs["latitude_of_projection_origin"] = 90.0 if lat_ts > 0 else -90.0
    ds["mapping"].attrs.update(
        {
            **COORD_ATTRS["mapping"],
            "spatial_epsg": grid.epsg,
            "GeoTransform": " ".join(str(v) for v in (grid.x0, grid.resolution, 0.0, grid.y0, 0.0, -grid.resolution)),
        }
    )
    return ds


