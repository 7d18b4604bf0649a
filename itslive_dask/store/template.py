"""The Zarr template of a cube: metadata and coordinates written before any block.

The template's data variables are chunked exactly like the plan's blocks (checked after
writing, so two block tasks never share a Zarr chunk).
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Literal

import numpy as np
import xarray as xr

from itslive_dask.cube.graph import cube_template
from itslive_dask.cube.plan import CubePlan
from itslive_dask.errors import InvalidInputError, StoreError
from itslive_dask.store.encoding import INT16_FILL, INT16_VARIABLES, encode_int16
from itslive_dask.store.state import (
    PENDING,
    STATE,
    generation,
    require_state,
    state_from_plan,
    write_state,
)
from itslive_dask.store.target import (
    StoreTarget,
    clear_store,
    display,
    exists,
    storage_error_message,
)

__all__ = [
    "INT16_FILL",
    "INT16_VARIABLES",
    "VELOCITY_ENCODINGS",
    "append_template",
    "check_alignment",
    "encode_int16",
    "undo_interrupted_append",
    "write_template",
]

#: ``velocity_encoding`` of :func:`itslive_dask.write_cube`: ``"float32"`` (default, NaN =
#: no data) or ``"int16"`` (as the ITS_LIVE production cubes: whole m/yr, -32767 = no data).
VELOCITY_ENCODINGS = ("float32", "int16")

#: Blosc-zstd level of the cube's arrays. Measured on a (16, 310, 288) float32 block of a
#: realistic build (65 % NaN), one core: level 1 compresses at 629 MB/s to 4.48x, level 3
#: at 277 MB/s to 4.62x; at level 3 compressing the output was ~24 % of the workers' time
#: in a 384-granule build (``docs/benchmarks.md`` §5), for 3 % smaller chunks.
ZSTD_LEVEL = 1


def encoding(
    plan: CubePlan, zarr_format: int, velocity_encoding: str = "float32"
) -> dict[str, dict[str, Any]]:
    """The ``encoding=`` of the template's ``to_zarr``: chunks, compressor, fill values, dtype."""
    if velocity_encoding not in VELOCITY_ENCODINGS:
        raise InvalidInputError(
            f"unknown velocity_encoding {velocity_encoding!r}; use one of {', '.join(VELOCITY_ENCODINGS)}"
        )
    if zarr_format == 3:
        from zarr.codecs import BloscCodec

        comp = {"compressors": (BloscCodec(cname="zstd", clevel=ZSTD_LEVEL, shuffle="shuffle"),)}
    else:
        from numcodecs import Blosc

        comp = {"compressors": (Blosc(cname="zstd", clevel=ZSTD_LEVEL, shuffle=Blosc.SHUFFLE),)}
    enc: dict[str, dict[str, Any]] = {}
    for v in plan.variables:
        if velocity_encoding == "int16" and v in INT16_VARIABLES:
            enc[v] = {
                "chunks": plan.chunks,
                "dtype": "int16",
                "_FillValue": np.int16(INT16_FILL),
                **comp,
            }
            if zarr_format == 3:  # Zarr's own fill value too: chunks never written read as no data
                enc[v]["fill_value"] = INT16_FILL
        else:
            enc[v] = {"chunks": plan.chunks, "_FillValue": np.float32(np.nan), **comp}
    # CF: coordinate variables have no fill value
    enc.update({c: {"_FillValue": None} for c in ("x", "y")})
    return enc


def template_dataset(plan: CubePlan) -> xr.Dataset:
    """The template of ``plan``'s cube as :func:`write_template` stores it: the lazy
    cube's coordinates and attributes, a ``granule_status`` flag per layer, and explicit
    ``grid_mapping`` attributes (pure: nothing is read or written)."""
    ds = cube_template(plan)
    # int64 like its flag_values: attributes go through JSON in Zarr and come back as int64
    # (CF wants flag_values of the variable's type)
    ds = ds.assign_coords(
        granule_status=(
            "mid_date",
            np.zeros(plan.n_layers, dtype="int64"),
            {
                "long_name": "whether the layer's granule was read",
                "flag_values": np.array([0, 1], dtype="int64"),
                "flag_meanings": "read failed",
            },
        )
    )
    for v in plan.variables:  # explicit attribute: the encoding= of to_zarr would drop it
        ds[v].encoding.pop("grid_mapping", None)
        ds[v].attrs["grid_mapping"] = "mapping"
    for name in ds.coords:
        if ds[name].dtype.kind in "UO":
            ds[name] = ds[name].astype(object)
    return ds


def write_template(
    plan: CubePlan,
    target: StoreTarget,
    *,
    zarr_format: int,
    overwrite: bool,
    velocity_encoding: str = "float32",
) -> None:
    """Write the template of a new cube (replacing the store when ``overwrite``).

    ``velocity_encoding`` (see :data:`VELOCITY_ENCODINGS`) is recorded in the build state;
    resume and append keep the arrays, and so the encoding, of the store. The build state is
    written last: until then it waits in the :data:`PENDING` attribute, so an interrupted
    template is recognised (``mode="resume"`` redoes it) and never taken for a cube with
    missing arrays.

    Raises
    ------
    StoreError
        When the store cannot be written (the message says how to go on).
    """
    enc = encoding(plan, zarr_format, velocity_encoding)
    try:
        if overwrite and exists(target):
            clear_store(target)  # all but the build lease this build holds
        # a new store holds at most the lease: zarr's "w-" refuses any content
        create: Literal["w-", "a"] = "w-" if exists(target) else "a"
        ds = template_dataset(plan)
        state = state_from_plan(plan, velocity_encoding=velocity_encoding)
        state["generations"] = [generation(plan)]
        state["zarr_format"] = zarr_format
        ds.attrs[PENDING] = json.dumps(state)
        import zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the root group and the pending build state in the store's first write (one
            # zarr.json in format 3): a build killed after it leaves a store that resume
            # recognises, never a bare group that neither resume nor overwrite may touch
            zarr.open_group(
                target.url,
                mode=create,
                zarr_format=2 if zarr_format == 2 else 3,
                attributes={PENDING: ds.attrs[PENDING]},
                **target.zarr_kwargs(),
            )
            ds.to_zarr(
                target.url,
                mode="a",
                compute=False,
                consolidated=True,
                zarr_format=zarr_format,
                encoding=enc,
                **target.zarr_kwargs(),
            )

            root = zarr.open_group(target.url, mode="r+", **target.zarr_kwargs())
            if STATE not in root:
                root.create_group(
                    STATE,
                    attributes={"description": "itslive_dask build state (block markers, ledger)"},
                )
        check_alignment(target, plan)
        write_state(target, state)
    except StoreError:
        raise
    except Exception as exc:  # object-store and file-system errors of every kind
        raise StoreError(
            storage_error_message(target, "writing the template", exc)
            + " (nothing was built yet: resume redoes the template; or mode='overwrite')"
        ) from exc


def append_template(plan: CubePlan, target: StoreTarget) -> None:
    """Extend an existing cube's template with the layers of ``plan`` (a new generation).

    The arrays are extended first and the new generation is recorded in the build state
    last: a build killed in between leaves arrays longer than the state says, which
    :func:`undo_interrupted_append` rolls back before the next ``append``/``resume``.
    """
    ds = template_dataset(plan)
    ds = ds.drop_vars([v for v in ("x", "y", "mapping") if v in ds.variables])
    state = require_state(target)
    # to_zarr(mode="a") replaces the root attributes (before it extends the arrays): keep
    # them all, the build state as it is
    ds.attrs = dict(target.open_root("r").attrs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(
                target.url,
                mode="a",
                append_dim="mid_date",
                compute=False,
                consolidated=True,
                **target.zarr_kwargs(),
            )
    except Exception as exc:
        raise StoreError(
            f"appending to the template of {display(target)} failed ({type(exc).__name__}: {exc}); "
            "run the append again: the unrecorded layers are rolled back first"
        ) from exc
    check_alignment(target, plan)
    state["generations"].append(generation(plan))
    write_state(target, state)


def undo_interrupted_append(target: StoreTarget, state: dict[str, Any]) -> list[str]:
    """Roll back the arrays an interrupted append extended beyond the recorded generations.

    The build state (written last by :func:`append_template`) says how many layers the cube
    has; an append killed before recording its generation leaves some arrays along
    ``mid_date`` longer (their extra coordinate values possibly unwritten). They are cut
    back, their chunks beyond the cut deleted, and the metadata consolidated again, so the
    next append plans those granules afresh. No block ran for them (blocks start after the
    generation is recorded). Returns the names of the arrays cut back.

    Raises
    ------
    StoreError
        When an array is shorter than the build state says (not a state this package leaves).
    """
    import zarr

    gens = state.get("generations") or []
    if not gens:
        return []
    n = int(gens[-1]["t_offset"]) + int(gens[-1]["n_layers"])
    root = target.open_root("r+")
    cut = []
    for name, arr in root.arrays():
        dims = (
            getattr(arr.metadata, "dimension_names", None)
            or arr.attrs.get("_ARRAY_DIMENSIONS")
            or ()
        )
        if not dims or dims[0] != "mid_date" or arr.shape[0] == n:
            continue
        if arr.shape[0] < n:
            raise StoreError(
                f"{display(target)}: array {name!r} has {arr.shape[0]} layers but the build state "
                f"records {n}; the store was changed outside itslive_dask: overwrite it"
            )
        arr.resize((n, *arr.shape[1:]))
        cut.append(name)
    if cut:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(root.store)
    return cut


def check_alignment(target: StoreTarget, plan: CubePlan) -> None:
    """Raise :class:`StoreError` unless the store's chunks match the plan's blocks."""
    import zarr

    root = zarr.open_group(target.url, mode="r", **target.zarr_kwargs())
    for v in plan.variables:
        arr = root[v]
        if not isinstance(arr, zarr.Array):
            raise StoreError(f"{display(target)}: {v} is not an array")
        if tuple(arr.chunks) != tuple(plan.chunks):
            raise StoreError(
                f"{display(target)}: Zarr chunks {arr.chunks} of {v} differ from the blocks {plan.chunks}"
            )
    t = plan.chunks[0]
    for block in plan.block_ids():
        ts = plan.block_slices(block)[0]
        # a block may start mid-chunk only where the cube's previous layers end (append)
        if (ts.start % t and ts.start != plan.t_offset) or (
            ts.stop % t and ts.stop != plan.t_offset + plan.n_layers
        ):
            raise StoreError(f"block {block} is not aligned with the Zarr chunks along mid_date")
