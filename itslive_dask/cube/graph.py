"""The cube's Dask graph and its xarray dataset: one task per output block that reads.

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

from itslive_dask.cube.kernel import BlockConfig, read_block, read_block_flagged
from itslive_dask.cube.plan import CubePlan, gc_paused
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.io.reader import TableHeaders
from itslive_dask.types import GranuleRef, StorageOptions

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
    "v": {
        "long_name": "velocity magnitude",
        "description": "land ice surface speed, hypot(vx, vy)",
        "units": "meter/year",
    },
    "v_error": {
        "long_name": "velocity magnitude error",
        "description": "error of v, as given by the granule",
        "units": "meter/year",
    },
    "chip_size_width": {"long_name": "chip size in x", "units": "m"},
    "chip_size_height": {"long_name": "chip size in y", "units": "m"},
    "interp_mask": {
        "long_name": "interpolated value mask",
        "description": "1 where the velocity was interpolated",
        "units": "1",
    },
}

#: Attributes of the coordinates (per-layer ones along ``mid_date`` carry the provenance:
#: each layer's granule id and URL).
COORD_ATTRS: dict[str, dict[str, str]] = {
    "mid_date": {
        "standard_name": "time",
        "axis": "T",
        "long_name": "midpoint of the two acquisitions, made unique",
        "description": "the k-th layer sharing a midpoint with earlier ones is k microseconds later",
    },
    "x": {
        "standard_name": "projection_x_coordinate",
        "axis": "X",
        "long_name": "x coordinate of projection (pixel centre)",
        "units": "m",
    },
    "y": {
        "standard_name": "projection_y_coordinate",
        "axis": "Y",
        "long_name": "y coordinate of projection (pixel centre)",
        "units": "m",
    },
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
    """Build the lazy Dataset of a plan: one task per block that reads, shared config once.

    A block that reads granules is one task returning all variables (``(variable, t, y,
    x)``); each variable's chunk of it is picked by a small task. A block that no granule
    touches has no block task: each variable's chunk there is a NaN fill of its own. Block
    tasks carry their granule references and layer positions as compact arrays, made
    from the plan's membership arrays (no per-granule tuples).

    With ``on_error="skip"`` a granule that fails while a block is computed leaves its layer
    NaN in that block, and the lazy per-layer coordinate ``granule_status`` (0 read,
    1 failed) says so; granules left out when planning are listed in
    ``ds.attrs["unreadable_granules"]``. ``retries`` and ``retry_budget`` (seconds per
    granule) bound the reads of each granule (:class:`~itslive_dask.io.fetch.RetryPolicy`).
    """
    import rioxarray  # noqa: F401  (the caller reads the cube's CRS as ds.rio.crs)

    with gc_paused():
        return _cube_from_plan(plan, storage_options, on_error, retries, retry_budget)


def _cube_from_plan(
    plan: CubePlan,
    storage_options: StorageOptions | None,
    on_error: str,
    retries: int,
    retry_budget: float,
) -> xr.Dataset:
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
        # decoded chunks are worth keeping only when some granule (layer) feeds several
        # tiles; a count per layer is linear in the pairs (10^5 granules: ms, not a sort)
        keep_chunks=bool(len(plan.blocks.layers) and np.bincount(plan.blocks.layers).max() > 1),
        # the chunk indexes the granule table carries: those granules' headers are not read
        headers=TableHeaders(plan.headers, scope=token) if plan.headers else None,
    )
    name = f"itslive-blocks-{token}"
    cfg_key = f"itslive-config-{token}"
    status_name = f"itslive-status-{token}"
    var_names = [f"itslive-{v}-{token}" for v in plan.variables]
    tchunks = plan.time_chunks()
    ychunks, xchunks = plan.space_chunks()
    t_lo, y_lo, x_lo = (
        _starts(c, s) for c, s in ((tchunks, plan.t_offset), (ychunks, 0), (xchunks, 0))
    )
    tb0 = plan.t_offset // plan.chunks[0]
    skip = on_error == "skip"

    blocks_dsk: dict = {cfg_key: cfg}
    var_dsk: list[dict] = [{} for _ in plan.variables]
    status: dict = {}
    member = plan.blocks
    keys = member.ids
    has_data = np.zeros((len(tchunks), len(ychunks), len(xchunks)), dtype=bool)
    if len(keys):
        has_data[keys[:, 0] - tb0, keys[:, 1], keys[:, 2]] = True
    # blocks that read: one task each, cut from whole-plan arrays (layer position in its
    # block, granule reference) by the membership's offsets
    ptr = member.ptr.tolist()
    pair_block_t = (
        np.repeat(keys[:, 0] - tb0, np.diff(member.ptr)) if len(keys) else np.empty(0, np.int64)
    )
    positions = (
        member.layers + plan.t_offset - np.asarray(t_lo, dtype=np.int64)[pair_block_t]
    ).astype(np.int32)
    refs = plan.refs
    pair_refs = [refs[k] for k in member.layers.tolist()]
    for row, (tb, iy, ix) in enumerate(keys.tolist()):
        a = tb - tb0
        p0, p1 = ptr[row], ptr[row + 1]
        args = (
            cfg_key,
            positions[p0:p1],
            tuple(pair_refs[p0:p1]),
            (y_lo[iy], y_lo[iy + 1]),
            (x_lo[ix], x_lo[ix + 1]),
            tchunks[a],
        )
        key = (name, a, iy, ix)
        if skip:
            both = (name + "-both", a, iy, ix)
            blocks_dsk[both] = (_read_block_flagged, *args)
            blocks_dsk[key] = (operator.getitem, both, 0)
            status[(status_name, a, iy, ix)] = (operator.getitem, both, 1)
        else:
            blocks_dsk[key] = (_read_block, *args)
        for i, d in enumerate(var_dsk):
            d[(var_names[i], a, iy, ix)] = (operator.getitem, key, i)
    # blocks no granule touches: no block task, a NaN chunk per variable
    for a, iy, ix in np.argwhere(~has_data).tolist():
        shape = (tchunks[a], ychunks[iy], xchunks[ix])
        for i, d in enumerate(var_dsk):
            d[(var_names[i], a, iy, ix)] = (_nan_chunk, shape)
        if skip:
            status[(status_name, a, iy, ix)] = (np.zeros, (shape[0], 1, 1), "int8")

    chunks = (tchunks, ychunks, xchunks)
    meta = np.empty((0, 0, 0), dtype="float32")
    arrays = []
    for i, vname in enumerate(var_names):
        graph = HighLevelGraph({name: blocks_dsk, vname: var_dsk[i]}, {name: set(), vname: {name}})
        arrays.append(da.Array(graph, vname, chunks=chunks, dtype="float32", meta=meta))
    ds = _dataset(plan, arrays)
    if skip:
        layers = HighLevelGraph(
            {name: blocks_dsk, status_name: status}, {name: set(), status_name: {name}}
        )
        flags = da.Array(
            layers, status_name, chunks=(tchunks, (1,) * len(ychunks), (1,) * len(xchunks)),
            dtype="int8", meta=np.empty((0, 0, 0), dtype="int8"),
        )  # fmt: skip
        ds = ds.assign_coords(
            granule_status=(
                "mid_date",
                flags.max(axis=(1, 2)),
                {"flag_values": np.array([0, 1], "int8"), "flag_meanings": "read failed"},
            )
        )
        ds.attrs["unreadable_granules"] = json.dumps(list(plan.unreadable))
    ds.encoding["itslive_dask_plan"] = plan
    return ds


def _starts(sizes: tuple[int, ...], start: int) -> list[int]:
    """Boundaries of consecutive chunks of ``sizes`` beginning at ``start``."""
    return np.concatenate([[start], start + np.cumsum(sizes, dtype=np.int64)]).tolist()


def _refs_at(
    positions: np.ndarray, refs: tuple[GranuleRef, ...]
) -> tuple[tuple[int, GranuleRef], ...]:
    return tuple(zip(positions.tolist(), refs, strict=True))


def _read_block(
    cfg: BlockConfig,
    positions: np.ndarray,
    refs: tuple[GranuleRef, ...],
    rows: tuple[int, int],
    cols: tuple[int, int],
    nt: int,
) -> np.ndarray:
    """:func:`~itslive_dask.cube.kernel.read_block` from a block task's compact arguments."""
    return read_block(cfg, _refs_at(positions, refs), rows, cols, nt)


def _read_block_flagged(
    cfg: BlockConfig,
    positions: np.ndarray,
    refs: tuple[GranuleRef, ...],
    rows: tuple[int, int],
    cols: tuple[int, int],
    nt: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~itslive_dask.cube.kernel.read_block_flagged` from compact arguments."""
    return read_block_flagged(cfg, _refs_at(positions, refs), rows, cols, nt)


def _nan_chunk(shape: tuple[int, int, int]) -> np.ndarray:
    """One variable's chunk of a block no granule touches."""
    return np.full(shape, np.nan, dtype="float32")


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
        v: (
            ("mid_date", "y", "x"),
            arrays[i],
            dict(VARIABLE_ATTRS.get(v, {}), grid_mapping="mapping"),
        )
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
    """``ds`` with the CF grid mapping variable ``mapping`` of ``grid``: pyproj's ``to_cf()``
    attributes (what rioxarray's ``write_crs`` writes), GDAL's ``spatial_ref`` and
    ``GeoTransform``, and ITS_LIVE's ``spatial_epsg``. Written with pyproj alone: rioxarray
    would import rasterio (and GDAL, boto3) in the driver only for this, a quarter of a
    second of each process's first build."""
    from pyproj.enums import WktVersion

    crs = grid.crs
    attrs = dict(crs.to_cf())  # with crs_wkt in WKT2, as CF asks
    attrs["spatial_ref"] = crs.to_wkt(WktVersion.WKT1_GDAL)  # what GDAL reads first
    if (
        attrs.get("grid_mapping_name") == "polar_stereographic"
        and "latitude_of_projection_origin" not in attrs
    ):
        # CF requires it (+90 or -90); pyproj's to_cf() leaves it out for variant B, whose
        # standard parallel gives the hemisphere
        lat_ts = float(attrs.get("standard_parallel", 90.0))
        attrs["latitude_of_projection_origin"] = 90.0 if lat_ts > 0 else -90.0
    attrs.update(
        {
            **COORD_ATTRS["mapping"],
            "spatial_epsg": grid.epsg,
            "GeoTransform": " ".join(
                str(v) for v in (grid.x0, grid.resolution, 0.0, grid.y0, 0.0, -grid.resolution)
            ),
        }
    )
    return ds.assign_coords(mapping=xr.Variable((), np.int64(0), attrs))
