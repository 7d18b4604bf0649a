"""A cube's build state: settings, generations, block markers and the failure ledger.

The state lives beside the data in the store: the settings and generations as a JSON root
attribute, one JSON marker per finished block and the ledger under ``_itslive/``.
:func:`is_itslive_store` is the one answer to "is this a cube written by itslive_dask?".
"""

from __future__ import annotations

import json
import posixpath
import warnings
from dataclasses import asdict
from typing import Any

import numpy as np
import shapely

from itslive_dask.cube.plan import CubePlan
from itslive_dask.errors import StoreError
from itslive_dask.store.target import (
    STATE,
    StoreTarget,
    display,
    exists,
    map_store_url,
    put_json,
    resolve_target,
)

__all__ = [
    "ATTR",
    "STATE",
    "STATE_VERSION",
    "TIMESERIES_ATTR",
    "describe_build",
    "is_itslive_store",
    "open_store",
    "read_ledger",
    "read_state",
]


ATTR = "itslive_dask"
#: The build state of a template being written: moved to :data:`ATTR` in the last write of
#: the template, so a store whose template was interrupted never claims a build state.
PENDING = "itslive_dask_pending"
STATE_VERSION = 2  # 2: generation tokens are CubePlan.token


def read_ledger(store: str, store_options: dict | None = None) -> dict[str, list[dict[str, Any]]]:
    """The failure ledger of a cube: ``{"failed": [...], "skipped": [...]}``.

    Parameters
    ----------
    store
        Path or URL of a cube written by :func:`itslive_dask.write_cube`.
    store_options
        fsspec options for a remote store.
    """
    target = resolve_target(store, store_options)
    try:
        return json.loads(target.fs().cat_file(target.path(STATE, "ledger.json")))
    except FileNotFoundError:
        return {"failed": [], "skipped": []}


def read_state(target: StoreTarget) -> dict[str, Any] | None:
    """The parsed build-state attribute, or None when the store has none."""
    import zarr

    try:
        raw = target.open_root("r").attrs.get(ATTR)
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.BaseZarrError):
        return None  # no store, or not a Zarr group
    if raw is None:
        return None
    state = json.loads(raw) if isinstance(raw, str) else raw
    if state.get("state_version") != STATE_VERSION:
        raise StoreError(f"{display(target)} was written by an incompatible itslive_dask version")
    return state


def read_pending(target: StoreTarget) -> dict[str, Any] | None:
    """The build state of an interrupted template (see :data:`PENDING`), or None."""
    import zarr

    try:
        raw = target.open_root("r").attrs.get(PENDING)
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.BaseZarrError):
        return None
    if raw is None:
        return None
    return json.loads(raw) if isinstance(raw, str) else raw


def write_state(target: StoreTarget, state: dict[str, Any], *, history: str | None = None) -> None:
    """Write the build state in one write of the root attributes (replacing a pending one),
    and append ``history`` (one line) to the CF history attribute."""
    import zarr

    root = target.open_root("r+")
    attrs = dict(root.attrs)
    attrs.pop(PENDING, None)
    attrs[ATTR] = json.dumps(state)
    if history:
        previous = str(attrs.get("history", "")).strip()
        # oldest first, one line per build run of a generation
        attrs["history"] = f"{previous}\n{history}" if previous else history
    root.attrs.put(attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(root.store)


def state_from_plan(plan: CubePlan, *, velocity_encoding: str = "float32") -> dict[str, Any]:
    return {
        "state_version": STATE_VERSION,
        "grid": asdict(plan.grid),
        "chunks": list(plan.chunks),
        "variables": list(plan.variables),
        "resampling": plan.resampling,
        "region_wkb_hex": shapely.to_wkb(plan.region, hex=True),
        "velocity_encoding": velocity_encoding,
        "generations": [],
    }


def generation(plan: CubePlan) -> dict[str, Any]:
    return {
        "t_offset": plan.t_offset,
        "n_layers": plan.n_layers,
        "token": plan.token,
        "complete": False,
    }


def require_state(target: StoreTarget) -> dict[str, Any]:
    """The build state, or a :class:`StoreError` saying the store has none."""
    state = read_state(target)
    if state is None:
        raise StoreError(f"{display(target)} has lost its itslive_dask build state")
    return state


def mark_generation_complete(target: StoreTarget, plan: CubePlan, mode: str = "create") -> None:
    """Flag the generation of ``plan`` complete and add its line to the ``history`` attribute."""
    state = require_state(target)
    token = plan.token
    number = 0
    for k, gen in enumerate(state["generations"], start=1):
        if gen["token"] == token:
            gen["complete"] = True
            number = k
    write_state(target, state, history=history_line(mode, number, plan))


def history_line(mode: str, generation: int, plan: CubePlan) -> str:
    """One line of the CF ``history`` attribute: when, which package version, what was done."""
    from datetime import UTC, datetime

    from itslive_dask import __version__

    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    first, last = plan.t_offset, plan.t_offset + plan.n_layers - 1
    return (
        f"{when}: itslive_dask {__version__} write_cube mode={mode}: generation {generation} "
        f"(layers {first}-{last}, {plan.n_layers} granules) complete"
    )


def existing_ids(target: StoreTarget) -> list[str]:
    return [str(v) for v in target.open_root("r")["granule_id"][:]]


def store_shape(target: StoreTarget) -> tuple[int, int, int]:
    root = target.open_root("r")
    return (int(root["mid_date"].shape[0]), int(root["y"].shape[0]), int(root["x"].shape[0]))


def marker_name(plan: CubePlan, block: tuple[int, int, int]) -> str:
    ts = plan.block_slices(block)[0]
    return f"{ts.start}-{ts.stop}_{block[1]}_{block[2]}.json"


def existing_mid_dates(target: StoreTarget) -> np.ndarray:
    """The cube's ``mid_date`` values, decoded (datetime64[ns])."""
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(target.url, consolidated=False, **target.zarr_kwargs())
    return ds["mid_date"].values.astype("datetime64[ns]")


def list_markers(target: StoreTarget) -> dict[str, dict[str, Any]]:
    fs = target.fs()
    base = target.path(STATE, "blocks")
    # workers wrote markers after this process last listed the folder: never trust a cached
    # listing (s3fs keeps one per file-system instance)
    fs.invalidate_cache(base)
    try:
        paths = fs.ls(base, detail=False)
    except FileNotFoundError:
        return {}
    paths = [p for p in paths if p.endswith(".json")]
    if not paths:
        return {}
    contents = fs.cat(paths)
    return {posixpath.basename(p): json.loads(contents[p]) for p in paths}


def finalize(target: StoreTarget) -> list[dict[str, Any]]:
    """Collect failures from the markers and flag the failed layers in ``granule_status``."""
    markers = list_markers(target)
    failed = [
        dict(f, block=name[:-5]) for name, m in sorted(markers.items()) for f in m.get("failed", [])
    ]
    ids = np.array(existing_ids(target), dtype=object)
    status = np.zeros(ids.size, dtype="int64")
    status[np.isin(ids, [f["granule_id"] for f in failed])] = 1
    target.open_root("r+")["granule_status"][:] = status
    return failed


def write_ledger(target: StoreTarget, failed, skipped) -> None:
    previous = read_ledger(target.url, target.storage_options)
    keep = {s["granule_id"]: s for s in previous.get("skipped", [])}
    for s in skipped:
        keep[s["granule_id"]] = s
    put_json(target, (STATE, "ledger.json"), {"failed": failed, "skipped": list(keep.values())})


#: Root attribute of a time-series copy made by :func:`itslive_dask.rechunk_cube`
#: (JSON: source store, chunks, ``complete`` once every chunk is written).
TIMESERIES_ATTR = "itslive_dask_timeseries"


def _as_target(store: str | StoreTarget, store_options: dict | None) -> StoreTarget:
    return store if isinstance(store, StoreTarget) else resolve_target(store, store_options)


def is_itslive_store(store: str | StoreTarget, store_options: dict | None = None) -> bool:
    """True when ``store`` is a cube written by :func:`itslive_dask.write_cube` (it carries
    the build state), or a time-series copy of one.

    Never raises for a missing or foreign path: the answer is then False.
    """
    target = _as_target(store, store_options)
    try:
        attrs = target.open_root("r").attrs
    except Exception:  # no store, not a Zarr group, unreachable: not one of ours
        return False
    # copies made before TIMESERIES_ATTR existed are known by their title
    return (
        ATTR in attrs or TIMESERIES_ATTR in attrs or "(itslive_dask)" in str(attrs.get("title", ""))
    )


def timeseries_copy_incomplete(target: StoreTarget) -> bool:
    """True when ``target`` is a time-series copy whose writing has not finished (its
    :data:`TIMESERIES_ATTR` says ``complete: false``)."""
    try:
        raw = target.open_root("r").attrs.get(TIMESERIES_ATTR)
    except Exception:  # no store, not a Zarr group: not an interrupted copy
        return False
    if raw is None:
        return False
    info = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return not info.get("complete")


def open_store(store: str | StoreTarget, store_options: dict | None = None) -> Any:
    """Open a cube store lazily with xarray.

    The store has no fill value on ``x`` and ``y`` (CF: coordinate variables have no missing
    values); their encoding says so explicitly (``_FillValue=None``), so that
    ``open_store(...).to_netcdf(...)`` does not add xarray's default NaN fill value to them
    (which ``xr.open_zarr(...).to_netcdf(...)`` does: pass
    ``encoding={"x": {"_FillValue": None}, "y": {"_FillValue": None}}`` there).

    Raises
    ------
    StoreError
        When nothing is there, it is not a readable Zarr cube, or it is a time-series copy
        whose writing was interrupted (see :func:`timeseries_copy_incomplete`).
    """
    import rioxarray  # noqa: F401  (the caller reads the cube's CRS as ds.rio.crs)
    import xarray as xr

    target = _as_target(store, store_options)
    if not exists(target):
        raise StoreError(f"no cube at {display(target)}")
    if timeseries_copy_incomplete(target):
        raise StoreError(
            f"{display(target)} is an incomplete time-series copy (the copy was interrupted: its "
            "missing chunks would read as NaN); run write_cube again with layout='timeseries' "
            "and mode='resume' (the same granules) to redo it"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = xr.open_zarr(target.url, **target.zarr_kwargs())
    except Exception as exc:  # zarr raises many types for a folder that is not a store
        raise StoreError(
            f"{display(target)} is not a readable Zarr cube: {type(exc).__name__}: {exc}"
        ) from None
    for c in ("x", "y"):
        if c in ds.variables and "_FillValue" not in ds[c].attrs:
            ds[c].encoding["_FillValue"] = None
    return ds


def describe_build(store: str | StoreTarget, store_options: dict | None = None) -> dict[str, Any]:
    """The build state of a cube in words and numbers, for ``itslive-dask info``.

    A time-series copy keeps no state: the state of its ``.map.zarr`` work store is
    described instead (``state_store`` says where it was found).

    Returns
    -------
    dict
        ``state_store``, ``generations``, ``complete``, ``chunks``, ``velocity_encoding``, ``text``,
        ``timeseries_complete`` (for time-series copies), ``ledger`` and ``lease`` (None, or
        who holds the store's build lease: ``host``, ``pid``, ``operation``, ``started``,
        ``heartbeat``, ``expiry``, ``status`` "live" or "stale", and a ``text`` line).
    """
    target = _as_target(store, store_options)
    out: dict[str, Any] = {"state_store": display(target)}
    attrs = target.open_root("r").attrs
    copy = attrs.get(TIMESERIES_ATTR)
    if copy is not None:
        info = json.loads(copy) if isinstance(copy, str) else dict(copy)
        out["timeseries_complete"] = bool(info.get("complete"))
    state = read_state(target)
    if state is None:
        sibling = resolve_target(map_store_url(target.url), target.storage_options)
        if exists(sibling):
            state, target = read_state(sibling), sibling
            out["state_store"] = display(sibling)
    if state is None:
        out["text"] = "no build state here (a time-series copy keeps it in <store>.map.zarr)"
        out["ledger"] = {"failed": [], "skipped": []}
        _add_lease(out, target)
        return out
    gens = state.get("generations", [])
    done = sum(1 for g in gens if g.get("complete"))
    text = f"{len(gens)} generation(s), {done} complete"
    if done < len(gens):
        text += " (unfinished: run 'cube --resume' with the same granules)"
    if out["state_store"] != display(_as_target(store, store_options)):
        text += f" (in {out['state_store']})"
    if copy is not None and not out["timeseries_complete"]:
        text += "; the time-series copy is INCOMPLETE (rebuild it)"
    out.update(
        generations=len(gens),
        complete=done,
        chunks=state.get("chunks"),
        text=text,
        velocity_encoding=state.get("velocity_encoding", "float32"),
    )
    out["ledger"] = read_ledger(target.url, target.storage_options)
    _add_lease(out, target)
    return out


def _add_lease(out: dict[str, Any], target: StoreTarget) -> None:
    """``lease`` in ``describe_build``'s answer: who is writing the store now (or None)."""
    from itslive_dask.store.lease import lease_summary

    lease = lease_summary(target)
    out["lease"] = lease
    if lease is not None:
        out["text"] = f"{out.get('text', '')}; lease {lease['text']}".lstrip("; ")
