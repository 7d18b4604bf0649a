"""Writing cubes to chunked Zarr: template, aligned region writes, resume, append, ledger.

Layout of a store written here::

    <store>/                      Zarr group (format 3 by default, consolidated metadata)
        vx, vy, v, v_error, ...   float32 (mid_date, y, x), NaN = no data, Blosc-zstd
        mid_date, x, y, ...       coordinates; per-layer ones along mid_date
        granule_status            int8 per layer: 0 read, 1 failed (see the ledger)
        mapping                   CF grid mapping (``ds.rio.crs`` reads it)
        _itslive/                 build state (a Zarr group so readers ignore it)
            blocks/<t0>-<t1>_<iy>_<ix>.json   one marker per finished block
            ledger.json           failed and skipped granules, with reasons

How a build goes: the template (all metadata and coordinates, no data) is written first;
then one task per block computes the block and writes it into its region, whose bounds are
multiples of the Zarr chunks (checked before anything is written, so two tasks never touch
one chunk), and only then writes the block's marker. The markers, not the presence of Zarr
chunks (format 3 skips all-NaN chunks), say what is done: a killed build resumes where it
stopped and gives the same bytes. A granule that still fails after retries is listed in the
block's marker, its layer stays NaN in that block and is flagged in ``granule_status``; a
later ``resume`` retries only those granule/block pairs.

Append adds the granules of a new search that are not in the cube yet (by ``granule_id``) as
new layers at the end of ``mid_date`` (sorted among themselves); existing layers are not
touched. Use ``ds.sortby("mid_date")`` for a globally sorted view.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import resource
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dask
import numpy as np
import shapely
import xarray as xr

from itslive_dask.cluster import dask_client
from itslive_dask.cube.kernel import BlockConfig, read_block_with_report
from itslive_dask.cube.lazy import cube_from_plan, make_plan, resolve_granules
from itslive_dask.cube.plan import CubePlan, plan_cube
from itslive_dask.errors import InvalidInputError, StoreError
from itslive_dask.geo.grid import TargetGrid

__all__ = ["MODES", "WriteResult", "build_cube", "read_ledger", "write_cube"]

log = logging.getLogger(__name__)

MODES = ("create", "overwrite", "resume", "append")
STATE = "_itslive"
ATTR = "itslive_dask"
STATE_VERSION = 1


@dataclass
class WriteResult:
    """Summary of a :func:`write_cube` run.

    Attributes
    ----------
    store
        Where the cube is.
    mode
        The mode that ran.
    shape
        (mid_date, y, x) of the cube after the run.
    layers_added
        Layers created by this run (0 for a resume).
    blocks_total, blocks_written, blocks_skipped
        Blocks of the generation(s) handled; written now; already done before.
    granules_read
        Distinct granules read without error by this run.
    failed
        Ledger rows of granules that failed (granule_id, url, error, attempts, block).
    skipped
        Granules of the input not built (outside the region, already in the cube).
    elapsed
        Wall time in seconds.
    peak_worker_rss
        Largest peak resident memory (bytes) reported by any task's worker process.
    """

    store: str
    mode: str
    shape: tuple[int, int, int]
    layers_added: int = 0
    blocks_total: int = 0
    blocks_written: int = 0
    blocks_skipped: int = 0
    granules_read: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    peak_worker_rss: int = 0

    def _repr_html_(self) -> str:
        from itslive_dask.notebook import result_html

        return result_html(self)


@dataclass(frozen=True)
class StoreTarget:
    """Where tasks write: a Zarr store URL or path and its fsspec options (kept out of repr)."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def join(self, *parts: str) -> str:
        return posixpath.join(self.url.rstrip("/"), *parts)

    def fs(self):
        import fsspec

        fs, _ = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs

    def path(self, *parts: str) -> str:
        import fsspec

        _, p = fsspec.core.url_to_fs(self.join(*parts), **self.storage_options)
        return p

    def zarr_kwargs(self) -> dict[str, Any]:
        return {"storage_options": self.storage_options} if "://" in self.url else {}

    def open_root(self, mode: str = "r"):
        """The root Zarr group, read from the stores themselves (not consolidated metadata).

        Zarr's warnings about the ``_itslive`` state folder and consolidated metadata in
        format 3 are silenced: they are expected here.
        """
        import zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zarr.open_group(self.url, mode=mode, use_consolidated=False, **self.zarr_kwargs())


def write_cube(
    source: Any,
    store: str,
    geometry: Any = None,
    *,
    bbox: Any = None,
    crs: Any = None,
    resolution: float = 120,
    variables: Sequence[str] = ("vx", "vy", "v", "v_error"),
    chunks: Any = None,
    resampling: str = "nearest",
    storage_options: dict | None = None,
    store_options: dict | None = None,
    mode: str = "create",
    zarr_format: int = 3,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    retries: int = 3,
    progress: Callable[[int, int], None] | None = None,
    announce: Callable[[str], None] | None = None,
    layout: str = "map",
    timeseries_chunks: Any = None,
) -> WriteResult:
    """Build a cube into a Zarr store on a Dask cluster, resumably.

    Parameters
    ----------
    source
        A lazy cube from :func:`itslive_dask.open_cube`, or granules as
        :func:`~itslive_dask.open_cube` takes them (search result, paths/URLs, folder, glob).
    store
        Output: a local path or an fsspec URL (``s3://bucket/cube.zarr``).
    geometry, bbox, crs, resolution, variables, chunks, resampling
        As in :func:`~itslive_dask.open_cube` (for ``create``/``overwrite``; ``resume`` and
        ``append`` reuse what the store records).
    storage_options
        fsspec options for reading granules (e.g. ``{"anon": True}``).
    store_options
        fsspec options for the output store.
    mode
        ``"create"`` (refuse an existing store), ``"overwrite"``, ``"resume"`` (finish an
        interrupted build of the same granules; retry failed granules) or ``"append"``
        (add the granules not yet in the cube).
    zarr_format
        3 (default) or 2 for older readers.
    client, scheduler, n_workers, threads_per_worker, memory_limit
        Which Dask cluster runs the build, see :func:`itslive_dask.cluster.dask_client`.
    retries
        Attempts for transient read errors of a granule.
    progress
        Called as ``progress(blocks_done, blocks_total)`` while blocks finish.
    announce
        Called with one-line messages for the user (the dashboard link).
    layout
        ``"map"`` (default): chunks as ``chunks`` (few layers, large tiles), the layout the
        build itself uses. ``"timeseries"``: the cube is built map-friendly into the sibling
        store ``<store>.map.zarr`` (which keeps the build state: resume and append work on
        it) and then rechunked, in bounded memory, into ``store`` with
        ``timeseries_chunks`` (default :data:`itslive_dask.store.rechunk.TIMESERIES_CHUNKS`).
    timeseries_chunks
        Chunks of the time-series layout.

    Returns
    -------
    WriteResult

    Examples
    --------
    >>> res = write_cube(granules, "s3://my-bucket/pig.zarr", bbox=[-101.2, -75.5, -99.1, -74.7],
    ...                  store_options={"profile": "default"})  # doctest: +SKIP
    >>> xr.open_zarr("s3://my-bucket/pig.zarr")  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    if layout not in ("map", "timeseries"):
        raise InvalidInputError(f"unknown layout {layout!r}; use 'map' or 'timeseries'")
    if layout == "timeseries":
        return _write_timeseries(
            source, store, geometry, store_options=store_options, mode=mode, client=client,
            scheduler=scheduler, n_workers=n_workers, threads_per_worker=threads_per_worker,
            memory_limit=memory_limit, announce=announce, timeseries_chunks=timeseries_chunks,
            bbox=bbox, crs=crs, resolution=resolution, variables=variables, chunks=chunks,
            resampling=resampling, storage_options=storage_options, zarr_format=zarr_format,
            retries=retries, progress=progress,
        )
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if zarr_format not in (2, 3):
        raise InvalidInputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    target = _target(store, store_options)
    state = _read_state(target)
    if mode == "create" and (state is not None or _exists(target)):
        raise StoreError(f"{_display(target)} already exists; use mode='resume', 'append' or 'overwrite'")
    if mode == "overwrite" and state is None and _exists(target) and not _is_zarr_group(target):
        raise StoreError(
            f"{_display(target)} exists and is not a Zarr store; refusing to delete it (choose another path)"
        )
    if mode in ("resume", "append") and state is None:
        if _exists(target):
            raise StoreError(
                f"{_display(target)} has no itslive_dask build state (not written by write_cube, a "
                "time-series copy - resume/append its .map.zarr store - or an interrupted template); "
                "use mode='overwrite' to rebuild it"
            )
        raise StoreError(f"{_display(target)} does not exist; nothing to {mode} (use mode='create')")

    skipped: list[dict[str, Any]] = []
    plan = table = None
    if mode in ("create", "overwrite"):
        plan = _plan_from_source(
            source, geometry, bbox=bbox, crs=crs, resolution=resolution, variables=variables,
            chunks=chunks, resampling=resampling, storage_options=storage_options,
        )
        if plan.n_layers == 0:
            raise InvalidInputError("no granule touches the region: nothing to write")
        skipped += _dropped_rows(plan)
    else:
        if _is_cube(source):
            raise InvalidInputError(f"mode={mode!r} takes granules (search result, URLs), not a cube")
        table = resolve_granules(source, storage_options=storage_options)
    stats = {"total": 0, "written": 0, "skipped": 0, "read": set(), "peak_rss": 0}
    # the cluster starts (or is reached) before anything is written to the store
    with dask_client(
        client, scheduler=scheduler, n_workers=n_workers, threads_per_worker=threads_per_worker,
        memory_limit=memory_limit, announce=announce,
    ) as c:
        if mode in ("resume", "append"):
            _remove_leftovers(target)
        if plan is not None:
            _write_template(plan, target, zarr_format=zarr_format, overwrite=(mode == "overwrite"), storage_options=storage_options)
            generations, layers_added = [plan], plan.n_layers
        else:
            generations, layers_added, skipped_now = _plans_for_existing(target, state, table, mode)
            skipped += skipped_now
        for gen_plan in generations:
            one = _run_plan(c, gen_plan, target, storage_options, retries, progress)
            for k in ("total", "written", "skipped"):
                stats[k] += one[k]
            stats["read"] |= one["read"]
            stats["peak_rss"] = max(stats["peak_rss"], one["peak_rss"])
            _mark_generation_complete(target, gen_plan)
    failed = _finalize(target)
    _write_ledger(target, failed, skipped)
    shape = _store_shape(target)
    return WriteResult(
        store=_display(target),
        mode=mode,
        shape=shape,
        layers_added=layers_added,
        blocks_total=stats["total"],
        blocks_written=stats["written"],
        blocks_skipped=stats["skipped"],
        granules_read=len(stats["read"]),
        failed=failed,
        skipped=skipped,
        elapsed=time.perf_counter() - t_start,
        peak_worker_rss=stats["peak_rss"],
    )


def _write_timeseries(source, store, geometry, *, store_options, mode, client, scheduler, n_workers,
                      threads_per_worker, memory_limit, announce, timeseries_chunks, **kwargs) -> WriteResult:
    from itslive_dask.store.rechunk import TIMESERIES_CHUNKS, rechunk_cube

    final = _target(store, store_options)
    work = StoreTarget(final.url.rstrip("/") + ".map.zarr", final.storage_options)
    if mode == "create" and _exists(final):
        raise StoreError(f"{_display(final)} already exists; use mode='resume', 'append' or 'overwrite'")
    with dask_client(
        client, scheduler=scheduler, n_workers=n_workers, threads_per_worker=threads_per_worker,
        memory_limit=memory_limit, announce=announce,
    ) as c:
        res = write_cube(source, work.url, geometry, store_options=store_options, mode=mode, client=c, **kwargs)
        rechunk_cube(
            work.url, final.url, timeseries_chunks or TIMESERIES_CHUNKS, source_options=store_options,
            dest_options=store_options, overwrite=True, client=c,
        )
    res.store = _display(final)
    return res


def build_cube(
    store: str,
    geometry: Any = None,
    *,
    bbox: Any = None,
    start: Any = None,
    end: Any = None,
    min_separation: float | None = None,
    max_separation: float | None = None,
    percent_valid_pixels: float | None = None,
    sensors: Sequence[str] | None = None,
    catalog: str | None = None,
    filters: dict[str, Any] | None = None,
    **write_kwargs: Any,
) -> WriteResult:
    """Search, filter and write a cube in one call.

    Parameters
    ----------
    store
        Output Zarr store (path or URL).
    geometry, bbox, start, end, min_separation, max_separation, percent_valid_pixels, sensors, catalog
        Passed to :func:`itslive_dask.discovery.api` (``catalog`` defaults to the public STAC API).
    filters
        Keyword arguments of :func:`itslive_dask.filter_granules` (e.g.
        ``{"max_files_per_year": 24, "months": ["nov", "dec"]}``).
    **write_kwargs
        Passed to :func:`write_cube` (``mode``, ``client``, ``chunks``, ``crs``...).
    """
    from itslive_dask.discovery.api import search

    kwargs = {} if catalog is None else {"catalog": catalog}
    table = search(
        geometry, bbox=bbox, start=start, end=end, min_separation=min_separation,
        max_separation=max_separation, percent_valid_pixels=percent_valid_pixels,
        sensors=sensors, storage_options=write_kwargs.get("storage_options"), **kwargs,
    )
    if filters:
        from itslive_dask.discovery.filters import filter_granules

        table = filter_granules(table, **filters)
    if len(table) == 0:
        raise InvalidInputError("the search found no granules; widen the region, dates or filters")
    return write_cube(table, store, geometry, bbox=bbox, **write_kwargs)


def read_ledger(store: str, store_options: dict | None = None) -> dict[str, list[dict[str, Any]]]:
    """The failure ledger of a cube: ``{"failed": [...], "skipped": [...]}``."""
    target = _target(store, store_options)
    try:
        return json.loads(target.fs().cat_file(target.path(STATE, "ledger.json")))
    except FileNotFoundError:
        return {"failed": [], "skipped": []}


# --------------------------------------------------------------------------- planning


def _is_cube(source: Any) -> bool:
    return isinstance(source, xr.Dataset)


def _plan_from_source(source: Any, geometry: Any, **kwargs: Any) -> CubePlan:
    if _is_cube(source):
        plan = source.encoding.get("itslive_dask_plan")
        if plan is None or source.sizes.get("mid_date") != plan.n_layers or tuple(
            v for v in plan.variables if v in source.data_vars
        ) != plan.variables:
            raise InvalidInputError(
                "write_cube takes the cube exactly as open_cube returned it; for a subset, pass the "
                "granules and arguments instead (or use Dataset.to_zarr)"
            )
        return plan
    return make_plan(source, geometry, **kwargs)


def _state_from_plan(plan: CubePlan) -> dict[str, Any]:
    return {
        "state_version": STATE_VERSION,
        "grid": asdict(plan.grid),
        "chunks": list(plan.chunks),
        "variables": list(plan.variables),
        "resampling": plan.resampling,
        "region_wkb_hex": shapely.to_wkb(plan.region, hex=True),
        "generations": [],
    }


def _generation(plan: CubePlan) -> dict[str, Any]:
    return {"t_offset": plan.t_offset, "n_layers": plan.n_layers, "token": _plan_token(plan), "complete": False}


def _plan_token(plan: CubePlan) -> str:
    return dask.base.tokenize(
        plan.grid, plan.chunks, plan.variables, plan.resampling, shapely.to_wkb(plan.region),
        plan.t_offset, [r.granule_id for r in plan.refs],
    )


def _dropped_rows(plan: CubePlan) -> list[dict[str, Any]]:
    return [{"granule_id": g, "reason": r} for g, r in zip(plan.dropped["granule_id"], plan.dropped["reason"], strict=True)]


def _plans_for_existing(target: StoreTarget, state: dict, table, mode: str):
    """Plans to run on an existing store: an unfinished generation first, then new granules."""
    grid = TargetGrid(**state["grid"])
    region = shapely.from_wkb(bytes.fromhex(state["region_wkb_hex"]))
    common = {"chunks": tuple(state["chunks"]), "variables": tuple(state["variables"]), "resampling": state["resampling"]}
    existing = _existing_ids(target)
    plans: list[CubePlan] = []
    skipped: list[dict[str, Any]] = []
    ids = table["granule_id"].to_numpy()
    for gen in state["generations"]:
        gen_ids = existing[gen["t_offset"]: gen["t_offset"] + gen["n_layers"]]
        if gen["complete"] and mode == "append":
            continue
        rows = table[np.isin(ids, gen_ids)]
        if len(rows) < len(set(gen_ids)):
            if gen["complete"]:
                continue  # resume of a finished generation with other granules: nothing to redo
            raise StoreError(
                f"{_display(target)}: an unfinished build of {len(gen_ids)} granules is in the store, but "
                f"only {len(rows)} of them are in the given granules; rerun with the same search, or overwrite"
            )
        plan = plan_cube(rows, grid, region, t_offset=gen["t_offset"], **common)
        if _plan_token(plan) != gen["token"]:
            raise StoreError(f"{_display(target)}: the given granules do not rebuild the stored layers; use the same search or overwrite")
        plans.append(plan)
    added = 0
    if mode == "append":
        new = table[~np.isin(ids, existing)]
        skipped += [{"granule_id": g, "reason": "already in the cube"} for g in table["granule_id"][np.isin(ids, existing)]]
        if len(new):
            plan = plan_cube(new, grid, region, t_offset=len(existing), **common)
            skipped += _dropped_rows(plan)
            if plan.n_layers:
                _append_template(plan, target)
                plans.append(plan)
                added = plan.n_layers
    else:
        outside = table["granule_id"][~np.isin(ids, existing)]
        skipped += [{"granule_id": g, "reason": "not in the cube (use mode='append' to add it)"} for g in outside]
    return plans, added, skipped


# --------------------------------------------------------------------------- template


def _encoding(plan: CubePlan, zarr_format: int) -> dict[str, dict[str, Any]]:
    if zarr_format == 3:
        from zarr.codecs import BloscCodec

        comp = {"compressors": (BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),)}
    else:
        from numcodecs import Blosc

        comp = {"compressors": (Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE),)}
    return {v: {"chunks": plan.chunks, "_FillValue": np.float32(np.nan), **comp} for v in plan.variables}


def _template_dataset(plan: CubePlan, storage_options: dict | None) -> xr.Dataset:
    ds = cube_from_plan(plan, storage_options=storage_options)
    ds = ds.assign_coords(granule_status=("mid_date", np.zeros(plan.n_layers, dtype="int8"), {"flag_values": [0, 1], "flag_meanings": "read failed"}))
    ds.encoding.pop("itslive_dask_plan", None)
    for v in plan.variables:  # explicit attribute: the encoding= of to_zarr would drop it
        ds[v].encoding.pop("grid_mapping", None)
        ds[v].attrs["grid_mapping"] = "mapping"
    for name in ds.coords:
        if ds[name].dtype.kind in "UO":
            ds[name] = ds[name].astype(object)
    return ds


def _write_template(plan: CubePlan, target: StoreTarget, *, zarr_format: int, overwrite: bool, storage_options) -> None:
    if overwrite and _exists(target):
        target.fs().rm(target.path(), recursive=True)
    ds = _template_dataset(plan, storage_options)
    state = _state_from_plan(plan)
    state["generations"] = [_generation(plan)]
    ds.attrs[ATTR] = json.dumps(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(
            target.url, mode="w-", compute=False, consolidated=True, zarr_format=zarr_format,
            encoding=_encoding(plan, zarr_format), **target.zarr_kwargs(),
        )
        import zarr

        root = zarr.open_group(target.url, mode="r+", **target.zarr_kwargs())
        root.create_group(STATE, attributes={"description": "itslive_dask build state (block markers, ledger)"})
    _check_alignment(target, plan)


def _append_template(plan: CubePlan, target: StoreTarget) -> None:
    ds = _template_dataset(plan, None)
    ds = ds.drop_vars([v for v in ("x", "y", "mapping") if v in ds.variables])
    state = _read_state(target)
    state["generations"].append(_generation(plan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.attrs = {}
        ds.to_zarr(target.url, mode="a", append_dim="mid_date", compute=False, consolidated=True, **target.zarr_kwargs())
    _write_state(target, state)
    _check_alignment(target, plan)


def _check_alignment(target: StoreTarget, plan: CubePlan) -> None:
    import zarr

    root = zarr.open_group(target.url, mode="r", **target.zarr_kwargs())
    for v in plan.variables:
        arr = root[v]
        if tuple(arr.chunks) != tuple(plan.chunks):
            raise StoreError(f"{_display(target)}: Zarr chunks {arr.chunks} of {v} differ from the blocks {plan.chunks}")
    t = plan.chunks[0]
    for block in plan.block_ids():
        ts = plan.block_slices(block)[0]
        # a block may start mid-chunk only where the cube's previous layers end (append)
        if (ts.start % t and ts.start != plan.t_offset) or (ts.stop % t and ts.stop != plan.t_offset + plan.n_layers):
            raise StoreError(f"block {block} is not aligned with the Zarr chunks along mid_date")


# --------------------------------------------------------------------------- running


def _marker_name(plan: CubePlan, block: tuple[int, int, int]) -> str:
    ts = plan.block_slices(block)[0]
    return f"{ts.start}-{ts.stop}_{block[1]}_{block[2]}.json"


def _list_markers(target: StoreTarget) -> dict[str, dict[str, Any]]:
    fs = target.fs()
    base = target.path(STATE, "blocks")
    try:
        paths = fs.ls(base, detail=False)
    except FileNotFoundError:
        return {}
    paths = [p for p in paths if p.endswith(".json")]
    if not paths:
        return {}
    contents = fs.cat(paths)
    return {posixpath.basename(p): json.loads(contents[p]) for p in paths}


def _run_plan(client, plan: CubePlan, target: StoreTarget, storage_options, retries: int, progress) -> dict[str, Any]:
    from distributed import as_completed

    cfg = BlockConfig(
        grid=plan.grid, variables=plan.variables, resampling=plan.resampling,
        region_wkb=shapely.to_wkb(plan.region), storage_options=dict(storage_options or {}), retries=retries,
        session=uuid.uuid4().hex,
    )
    markers = _list_markers(target)
    todo = []
    n_skipped = 0
    blocks = [b for b in plan.block_ids() if plan.blocks.get(b)]
    for block in blocks:
        name = _marker_name(plan, block)
        refs = plan.block_refs(block)
        done = markers.get(name)
        if done is None:
            todo.append((block, name, refs, None))
        elif done.get("failed"):
            bad = {f["granule_id"] for f in done["failed"]}
            todo.append((block, name, tuple(r for r in refs if r[1].granule_id in bad), done))
        else:
            n_skipped += 1
    total = len(blocks)
    stats = {"total": total, "written": 0, "skipped": n_skipped, "read": set(), "peak_rss": 0}
    if progress:
        progress(n_skipped, total)
    if not todo:
        return stats
    cfg_future = client.scatter(cfg, broadcast=False, hash=False)
    token = _plan_token(plan)
    futures = []
    for block, name, refs, previous in todo:
        ts, rs, cs = plan.block_slices(block)
        futures.append(
            client.submit(
                _write_block_task, cfg_future, refs, (ts.start, ts.stop), (rs.start, rs.stop), (cs.start, cs.stop),
                target, name, previous, key=f"itslive-write-{name}-{token}", retries=0, pure=False,
            )
        )
    done = n_skipped
    for fut in as_completed(futures):
        res = fut.result()
        done += 1
        stats["written"] += 1
        stats["read"] |= set(res["read"])
        stats["peak_rss"] = max(stats["peak_rss"], res["peak_rss"])
        if progress:
            progress(done, total)
    return stats


def _write_block_task(cfg: BlockConfig, refs, t_range, rows, cols, target: StoreTarget, marker: str, previous) -> dict[str, Any]:
    """Worker side: compute one block, write it into its region, then write its marker."""
    nt = t_range[1] - t_range[0]
    out, report = read_block_with_report(cfg, refs, rows, cols, nt)
    group = _open_group_cached(target)
    ys, xs = slice(*rows), slice(*cols)
    if previous is None:
        for k, v in enumerate(cfg.variables):
            group[v][t_range[0]: t_range[1], ys, xs] = out[k]
        read = report.read
    else:  # retry of failed granules: write only their layers
        for pos, _ in refs:
            t = t_range[0] + pos
            for k, v in enumerate(cfg.variables):
                group[v][t: t + 1, ys, xs] = out[k, pos: pos + 1]
        read = sorted(set(previous.get("read", [])) | set(report.read))
    content = {"read": read, "failed": report.failed}
    _put_json(target, (STATE, "blocks", marker), content)
    return {"read": report.read, "failed": report.failed, "peak_rss": _peak_rss()}


_GROUPS: dict[str, Any] = {}


def _open_group_cached(target: StoreTarget):

    key = dask.base.tokenize(target.url, target.storage_options)
    grp = _GROUPS.get(key)
    if grp is None:
        grp = target.open_root("r+")
        _GROUPS.clear()
        _GROUPS[key] = grp
    return grp


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


# --------------------------------------------------------------------------- state


def _target(store: str, store_options: dict | None) -> StoreTarget:
    if not isinstance(store, str | os.PathLike) or not str(store).strip():
        raise InvalidInputError(f"store must be a path or URL, got {store!r}")
    s = str(store)
    if "://" not in s:
        s = os.path.abspath(os.path.expanduser(s))
    elif store_options is None and s.startswith("file://"):
        s = s[7:]
    return StoreTarget(s, dict(store_options or {}))


def _display(target: StoreTarget) -> str:
    return target.url


def _exists(target: StoreTarget) -> bool:
    try:
        fs = target.fs()
        p = target.path()
        return fs.exists(p) and bool(fs.ls(p, detail=False))
    except FileNotFoundError:
        return False


def _remove_leftovers(target: StoreTarget) -> None:
    """Delete temporary files a killed build can leave in a local store.

    Zarr's local store writes ``<chunk>.<uuid>.partial`` and renames it; our markers are
    written as ``<marker>.tmp-<pid>``. Object stores have no such files (a PUT is atomic).
    """
    if "://" in target.url:
        return
    for root, _, files in os.walk(target.url):
        for name in files:
            if name.endswith(".partial") or ".json.tmp-" in name:
                os.remove(os.path.join(root, name))
                log.info("removed leftover %s", os.path.join(root, name))


def _is_zarr_group(target: StoreTarget) -> bool:
    fs = target.fs()
    return any(fs.exists(target.path(name)) for name in ("zarr.json", ".zgroup"))


def _read_state(target: StoreTarget) -> dict[str, Any] | None:
    import zarr

    try:
        raw = target.open_root("r").attrs.get(ATTR)
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.BaseZarrError):
        return None  # no store, or not a Zarr group
    if raw is None:
        return None
    state = json.loads(raw) if isinstance(raw, str) else raw
    if state.get("state_version") != STATE_VERSION:
        raise StoreError(f"{_display(target)} was written by an incompatible itslive_dask version")
    return state


def _write_state(target: StoreTarget, state: dict[str, Any]) -> None:
    import zarr

    root = target.open_root("r+")
    root.attrs[ATTR] = json.dumps(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(root.store)


def _mark_generation_complete(target: StoreTarget, plan: CubePlan) -> None:
    state = _read_state(target)
    token = _plan_token(plan)
    for gen in state["generations"]:
        if gen["token"] == token:
            gen["complete"] = True
    _write_state(target, state)


def _existing_ids(target: StoreTarget) -> list[str]:
    return [str(v) for v in target.open_root("r")["granule_id"][:]]


def _store_shape(target: StoreTarget) -> tuple[int, int, int]:
    root = target.open_root("r")
    return (int(root["mid_date"].shape[0]), int(root["y"].shape[0]), int(root["x"].shape[0]))


def _put_json(target: StoreTarget, parts: tuple[str, ...], content: Any) -> None:
    data = json.dumps(content, indent=1, default=str).encode()
    fs = target.fs()
    path = target.path(*parts)
    if "://" not in target.url:  # local: atomic rename
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:  # object stores: a PUT is atomic
        fs.pipe_file(path, data)


def _finalize(target: StoreTarget) -> list[dict[str, Any]]:
    """Collect failures from the markers and flag the failed layers in ``granule_status``."""
    markers = _list_markers(target)
    failed = [dict(f, block=name[:-5]) for name, m in sorted(markers.items()) for f in m.get("failed", [])]
    ids = np.array(_existing_ids(target), dtype=object)
    status = np.zeros(ids.size, dtype="int8")
    status[np.isin(ids, [f["granule_id"] for f in failed])] = 1
    target.open_root("r+")["granule_status"][:] = status
    return failed


def _write_ledger(target: StoreTarget, failed, skipped) -> None:
    previous = read_ledger(target.url, target.storage_options)
    keep = {s["granule_id"]: s for s in previous.get("skipped", [])}
    for s in skipped:
        keep[s["granule_id"]] = s
    _put_json(target, (STATE, "ledger.json"), {"failed": failed, "skipped": list(keep.values())})

