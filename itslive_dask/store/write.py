"""Writing cubes to chunked Zarr: template, aligned region writes, resume, append, ledger.

Layout of a store written here::

    <store>/                      Zarr group (format 3 by default, consolidated metadata)
        vx, vy, v, v_error, ...   float32 (mid_date, y, x), NaN = no data, Blosc-zstd
                                  (int16, -32767 = no data, with velocity_encoding="int16")
        mid_date, x, y, ...       coordinates; per-layer ones along mid_date
        granule_status            int64 per layer: 0 read, 1 failed (see the ledger)
        mapping                   CF grid mapping (``ds.rio.crs`` reads it)
        _itslive/                 build state (a Zarr group so readers ignore it)
            blocks/<t0>-<t1>_<iy>_<ix>.json   one marker per finished block
            ledger.json           failed and skipped granules, with reasons
            lease.json            while a build runs: who is writing (see store.lease)

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

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
import xarray as xr

from itslive_dask.cluster import dask_client, start_worker_check
from itslive_dask.cube.lazy import granule_sources, make_plan, resolve_and_report
from itslive_dask.cube.plan import CubePlan, plan_cube
from itslive_dask.errors import GranuleError, InvalidInputError, StoreError
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.io.fetch import DEFAULT_RETRY_BUDGET, RetryPolicy, retry_policy
from itslive_dask.io.urls import redact_url
from itslive_dask.spec import CubeSpec
from itslive_dask.store.headers import keep_rows, kept_rows, seed_headers
from itslive_dask.store.lease import LeaseHandle, check_not_leased, hold_lease
from itslive_dask.store.runner import run_plan
from itslive_dask.store.state import (
    existing_ids,
    existing_mid_dates,
    finalize,
    is_itslive_store,
    mark_generation_complete,
    read_pending,
    read_state,
    store_shape,
    write_ledger,
)
from itslive_dask.store.target import (
    StoreTarget,
    check_bucket,
    display,
    exists,
    map_store_url,
    remove_leftovers,
    resolve_target,
    storage_error_message,
)
from itslive_dask.store.template import (
    VELOCITY_ENCODINGS,
    append_template,
    undo_interrupted_append,
    write_template,
)
from itslive_dask.table import granule_table
from itslive_dask.types import BBox, Chunks, CRSLike, Granules, Region, Resampling, StorageOptions

__all__ = ["LAYOUTS", "MODES", "WriteResult", "check_output", "write_cube"]

log = logging.getLogger(__name__)

MODES = ("create", "overwrite", "resume", "append")
LAYOUTS = ("map", "timeseries")


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


def write_cube(
    source: Granules | xr.Dataset,
    store: str | os.PathLike[str],
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
    store_options: StorageOptions | None = None,
    mode: str = "create",
    zarr_format: int = 3,
    velocity_encoding: str = "float32",
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    retries: int = 3,
    retry_budget: float = DEFAULT_RETRY_BUDGET,
    progress: Callable[[int, int], None] | bool | None = None,
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
    geometry, spec, bbox, crs, resolution, variables, chunks, resampling
        The cube's settings, as in :func:`~itslive_dask.open_cube` (a
        :class:`~itslive_dask.spec.CubeSpec` and/or its fields; for ``create``/``overwrite``:
        ``resume`` and ``append`` reuse what the store records).
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
    velocity_encoding
        ``"float32"`` (default: NaN = no data) or ``"int16"``: ``vx``, ``vy``, ``v``,
        ``v_error`` stored as whole m/yr in int16 with ``_FillValue = -32767``, as the
        ITS_LIVE production cubes (rounded half to even, see
        :func:`itslive_dask.store.template.encode_int16`); xarray opens them as float32 with
        NaN. For ``create``/``overwrite``; ``resume`` and ``append`` keep the store's.
    client, scheduler, n_workers, threads_per_worker, memory_limit
        Which Dask cluster runs the build, see :func:`itslive_dask.cluster.dask_client`.
    retries
        Extra attempts of a granule read after a transient error (network, 5xx, timeouts);
        missing, forbidden and corrupt objects are not retried.
    retry_budget
        Seconds one granule may spend on failed attempts and back-off, header and windows
        together (default 8; a number > 0): no new attempt starts when it would pass this.
        A granule that keeps failing is then in the ledger after about this long, with its
        ``attempts`` and ``seconds`` (a stalled connection adds one attempt's timeouts,
        3 s + 3 s). Bounds the header reads of bare paths/URLs at plan time too.
    progress
        Called as ``progress(blocks_done, blocks_total)`` while blocks finish; ``True`` shows
        a progress bar (HTML in Jupyter, lines in a terminal:
        :class:`itslive_dask.notebook.NotebookProgress`).
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
    policy = retry_policy(retries, retry_budget)  # a mistake is refused before any work
    if progress is True:
        from itslive_dask.notebook import NotebookProgress

        progress = NotebookProgress()
    elif progress is False:
        progress = None
    if layout not in LAYOUTS:
        raise InvalidInputError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    spec = CubeSpec.build(
        spec, geometry=geometry, bbox=bbox, crs=crs, resolution=resolution,
        variables=variables, chunks=chunks, resampling=resampling,
    )  # fmt: skip
    if layout == "timeseries":
        return _write_timeseries(
            source,
            store,
            spec=spec,
            store_options=store_options,
            mode=mode,
            client=client,
            scheduler=scheduler,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            announce=announce,
            timeseries_chunks=timeseries_chunks,
            storage_options=storage_options,
            zarr_format=zarr_format,
            velocity_encoding=velocity_encoding,
            retries=retries,
            retry_budget=retry_budget,
            progress=progress,
        )
    if zarr_format not in (2, 3):
        raise InvalidInputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if velocity_encoding not in VELOCITY_ENCODINGS:
        raise InvalidInputError(
            f"velocity_encoding must be one of {', '.join(VELOCITY_ENCODINGS)}, got {velocity_encoding!r}"
        )
    # a running cluster imports the block tasks' modules while this process plans
    early_check = start_worker_check(client)
    target = resolve_target(store, store_options)
    check_output(target, mode=mode)  # before anything is read: a clear error for a wrong mode
    # one build at a time: taken before anything is written, renewed, released on every exit
    with hold_lease(target, f"write_cube mode={mode}") as lease:
        return _build_map(
            source,
            target,
            lease,
            spec=spec,
            storage_options=storage_options,
            mode=mode,
            zarr_format=zarr_format,
            velocity_encoding=velocity_encoding,
            client=client,
            early_check=early_check,
            scheduler=scheduler,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            retries=retries,
            policy=policy,
            progress=progress,
            announce=announce,
            t_start=t_start,
        )


def _build_map(
    source: Any,
    target: StoreTarget,
    lease: LeaseHandle,
    *,
    spec: CubeSpec,
    storage_options: Any,
    mode: str,
    zarr_format: int,
    velocity_encoding: str,
    client: Any,
    early_check: Future | None,
    scheduler: str | None,
    n_workers: int | None,
    threads_per_worker: int,
    memory_limit: Any,
    retries: int,
    policy: RetryPolicy,
    progress: Any,
    announce: Any,
    t_start: float,
) -> WriteResult:
    """The body of :func:`write_cube` for the map layout, run while holding the store's lease."""
    state = check_output(target, mode=mode)  # again: another build may have finished meanwhile

    skipped: list[dict[str, Any]] = []
    plan = table = None
    if mode in ("create", "overwrite"):
        plan, table = _plan_from_source(source, spec, storage_options, policy)
        unreadable = list(plan.unreadable)
        if plan.n_layers == 0:
            if unreadable:
                first = unreadable[0]
                raise GranuleError(
                    first["url"],
                    f"{first['error']}; none of the {len(unreadable)} unreadable granules "
                    "can be built (and no other granule touches the region)",
                    first["attempts"],
                )
            raise InvalidInputError("no granule touches the region: nothing to write")
        skipped += _dropped_rows(plan)
    else:
        if _is_cube(source):
            raise InvalidInputError(
                f"mode={mode!r} takes granules (search result, URLs), not a cube"
            )
        table, unreadable = _resolve_with_kept(source, target, storage_options, policy)
        if mode == "resume" and state is not None and state.get("template_complete") is False:
            # the template was interrupted before the build state was written: no block
            # ran, so the template is redone with the stored settings and these granules
            plan = _plan_for_pending(target, state, table)
            zarr_format = int(state.get("zarr_format", zarr_format))
            velocity_encoding = str(state.get("velocity_encoding", velocity_encoding))
            skipped += _dropped_rows(plan)
    stats: dict[str, Any] = {"total": 0, "written": 0, "skipped": 0, "read": set(), "peak_rss": 0}
    # the cluster starts (or is reached) before anything is written to the store
    with dask_client(
        client,
        scheduler=scheduler,
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        announce=announce,
        check=early_check is None,
    ) as c:
        if early_check is not None:
            early_check.result()  # raises ClusterError for workers that cannot run the build
        if mode in ("resume", "append"):
            remove_leftovers(target)
            if state is not None and state.get("template_complete") is not False:
                cut = _store_step(
                    target,
                    "rolling back an interrupted append",
                    undo_interrupted_append,
                    target,
                    state,
                )
                if cut:
                    log.info(
                        "rolled back the unrecorded layers of an interrupted append in %s",
                        display(target),
                    )
        if plan is not None:
            write_template(
                plan,
                target,
                zarr_format=zarr_format,
                overwrite=(mode in ("overwrite", "resume")),
                velocity_encoding=velocity_encoding,
            )
            if table is not None:
                keep_rows(target, table, plan.token)
            generations, layers_added = [plan], plan.n_layers
        else:
            generations, layers_added, skipped_now = _plans_for_existing(target, state, table, mode)
            skipped += skipped_now
        if table is not None:  # the chunk indexes a catalog carries: no header reads
            seed_headers(target, table, only={r.url for g in generations for r in g.refs})
        for gen_plan in generations:
            one = run_plan(
                c, gen_plan, target, storage_options, retries, progress, retry_budget=policy.budget
            )
            for k in ("total", "written", "skipped"):
                stats[k] += one[k]
            stats["read"] |= one["read"]
            stats["peak_rss"] = max(stats["peak_rss"], one["peak_rss"])
            lease.check()  # never record a generation over another build's
            _store_step(
                target,
                "recording the finished generation",
                mark_generation_complete,
                target,
                gen_plan,
                mode,
            )
    lease.check()
    # a granule whose header could not be read never reached a block: it is a failure too
    failed = _store_step(target, "collecting the block markers", finalize, target) + [
        {"granule_id": _granule_id_of(u["url"]), "url": u["url"], "error": u["error"],
         "attempts": u["attempts"], "seconds": u.get("seconds", 0.0), "block": None}
        for u in unreadable
    ]  # fmt: skip
    _store_step(target, "writing the ledger", write_ledger, target, failed, skipped)
    shape = store_shape(target)
    return WriteResult(
        store=display(target),
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


def check_output(
    store: str | StoreTarget,
    store_options: dict | None = None,
    *,
    mode: str = "create",
    layout: str = "map",
) -> dict[str, Any] | None:
    """Check that a build in ``mode`` may write to ``store``, before anything is searched
    or written.

    Parameters
    ----------
    store
        The output store (for ``layout="timeseries"``, the final time-series store; the
        build state then lives in its ``.map.zarr`` work store).
    store_options
        fsspec options of the store.
    mode, layout
        As in :func:`write_cube`.

    Returns
    -------
    dict or None
        The build state the store already has (for ``resume``/``append``).

    Raises
    ------
    StoreError
        ``create`` on an existing store, ``overwrite`` of something that is not an
        itslive_dask cube, ``resume``/``append`` of a store without build state, a store
        another build is writing (its live lease: the message says who holds it).
    InvalidInputError
        Unknown mode or layout.
    """
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if layout not in LAYOUTS:
        raise InvalidInputError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    target = store if isinstance(store, StoreTarget) else resolve_target(store, store_options)
    try:
        if layout == "timeseries":
            check_not_leased(target)  # a copy into it is running
            work = resolve_target(map_store_url(target.url), target.storage_options)
            if mode == "create" and exists(target):
                raise StoreError(
                    f"{display(target)} already exists; use mode='resume', 'append' or 'overwrite' (--resume, --append, --overwrite in the CLI)"
                )
            if mode == "overwrite" and exists(target) and not is_itslive_store(target):
                raise StoreError(
                    f"refusing to overwrite {display(target)}: it is not a Zarr store "
                    "written by itslive_dask (remove it yourself if it should go)"
                )
            return check_output(work, mode=mode)
        check_bucket(target)
        check_not_leased(target)
        state = read_state(target)
        pending = read_pending(target) if state is None else None
        present = state is not None or exists(target)
    except (StoreError, InvalidInputError):
        raise
    except Exception as exc:  # unreachable endpoints, permissions...
        raise StoreError(
            f"cannot check the output store {display(target)}: {type(exc).__name__}: {exc}"
        ) from None
    if mode == "create" and present:
        raise StoreError(
            f"{display(target)} already exists; use mode='resume', 'append' or 'overwrite' (--resume, --append, --overwrite in the CLI)"
        )
    if mode == "overwrite" and state is None and present and not is_itslive_store(target):
        raise StoreError(
            f"refusing to overwrite {display(target)}: it is not a Zarr store written by itslive_dask "
            "(remove it yourself if it should go)"
        )
    if mode in ("resume", "append") and state is None:
        if pending is not None:
            if mode == "resume":
                return dict(pending, template_complete=False)
            raise StoreError(
                f"the template of {display(target)} was interrupted before the build started; "
                "run mode='resume' with the same granules first (or mode='overwrite')"
            )
        if present:
            raise StoreError(
                f"{display(target)} has no itslive_dask build state (not written by write_cube, a "
                "time-series copy - resume/append its .map.zarr store - or an interrupted template); "
                "use mode='overwrite' to rebuild it"
            )
        raise StoreError(f"{display(target)} does not exist; nothing to {mode} (use mode='create')")
    return state


def _write_timeseries(
    source,
    store,
    *,
    store_options,
    mode,
    client,
    scheduler,
    n_workers,
    threads_per_worker,
    memory_limit,
    announce,
    timeseries_chunks,
    **kwargs,
) -> WriteResult:
    from itslive_dask.store.rechunk import TIMESERIES_CHUNKS, rechunk_cube

    final = resolve_target(store, store_options)
    work = resolve_target(map_store_url(final.url), final.storage_options)
    check_output(final, mode=mode, layout="timeseries")
    # the work store's lease is held through the build and the copy (rechunk_cube takes the
    # final store's)
    with (
        hold_lease(work, f"write_cube layout=timeseries mode={mode}"),
        dask_client(
            client,
            scheduler=scheduler,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            announce=announce,
        ) as c,
    ):
        res = write_cube(
            source, work.url, store_options=store_options, mode=mode, client=c, **kwargs
        )
        rechunk_cube(
            work.url,
            final.url,
            timeseries_chunks or TIMESERIES_CHUNKS,
            source_options=store_options,
            dest_options=store_options,
            overwrite=True,
            client=c,
        )
    res.store = display(final)
    return res


def _store_step(target: StoreTarget, what: str, func: Callable[..., Any], *args: Any) -> Any:
    """Run one write of the build's bookkeeping; errors become a StoreError saying what to do."""
    try:
        return func(*args)
    except (StoreError, InvalidInputError):
        raise
    except Exception as exc:  # object-store and file-system errors of every kind
        raise StoreError(storage_error_message(target, what, exc)) from exc


def _plan_for_pending(target: StoreTarget, state: dict[str, Any], table: Any) -> CubePlan:
    """The plan of an interrupted template, from its stored settings and ``table``."""
    grid = TargetGrid(**state["grid"])
    region = shapely.from_wkb(bytes.fromhex(state["region_wkb_hex"]))
    plan = plan_cube(
        table,
        grid,
        region,
        chunks=tuple(state["chunks"]),
        variables=tuple(state["variables"]),
        resampling=state["resampling"],
    )
    if plan.n_layers == 0:
        raise StoreError(
            f"{display(target)}: none of the given granules touches the region of the "
            "interrupted template; resume with the same granules, or overwrite"
        )
    return plan


def _is_cube(source: Any) -> bool:
    return isinstance(source, xr.Dataset)


def _plan_from_source(
    source: Any, spec: CubeSpec, storage_options: StorageOptions | None, policy: RetryPolicy
) -> tuple[CubePlan, Any]:
    """The plan of a new cube, and the granule table it was made from (None for a cube)."""
    if _is_cube(source):
        plan = source.encoding.get("itslive_dask_plan")
        if (
            plan is None
            or source.sizes.get("mid_date") != plan.n_layers
            or tuple(v for v in plan.variables if v in source.data_vars) != plan.variables
        ):
            raise InvalidInputError(
                "write_cube takes the cube exactly as open_cube returned it; for a subset, pass the "
                "granules and arguments instead (or use Dataset.to_zarr)"
            )
        return plan, None
    table, unreadable = resolve_and_report(
        source, storage_options=storage_options, on_error="skip", policy=policy
    )
    plan = make_plan(table, spec=spec)
    return (dataclasses.replace(plan, unreadable=tuple(unreadable)) if unreadable else plan), table


def _resolve_with_kept(
    source: Any, target: StoreTarget, storage_options: StorageOptions | None, policy: RetryPolicy
) -> tuple[Any, list[dict[str, Any]]]:
    """The granule table of a resume or append: bare paths/URLs the store already knows take
    their kept rows (no header read); only the others have their headers read."""
    sources = granule_sources(source, storage_options)
    if sources is None:  # a granule table: nothing is read
        return resolve_and_report(
            source, storage_options=storage_options, on_error="skip", policy=policy
        )
    kept = {redact_url(r["url"]): r for r in kept_rows(target).to_dict("records")}
    known: list[dict[str, Any]] = []
    rest: list[str] = []
    for s in sources:
        row = kept.get(redact_url(s))
        if row is None:
            rest.append(s)
        else:
            known.append(dict(row, url=s))  # the user's URL, as the plan token has it
    if not rest:
        return granule_table(known), []
    table, unreadable = resolve_and_report(
        rest, storage_options=storage_options, on_error="skip", policy=policy
    )
    if not known:
        return table, unreadable
    return granule_table([*known, *table.to_dict("records")]), unreadable


def _granule_id_of(url: str) -> str:
    name = url.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".nc") else name


def _dropped_rows(plan: CubePlan) -> list[dict[str, Any]]:
    return [
        {"granule_id": g, "reason": r}
        for g, r in zip(plan.dropped["granule_id"], plan.dropped["reason"], strict=True)
    ]


def _plans_for_existing(
    target: StoreTarget, state: dict[str, Any] | None, table: Any, mode: str
) -> tuple[list[CubePlan], int, list[dict[str, Any]]]:
    if state is None:
        raise StoreError(f"{display(target)} has no build state to {mode}")
    """Plans to run on an existing store: an unfinished generation first, then new granules."""
    grid = TargetGrid(**state["grid"])
    region = shapely.from_wkb(bytes.fromhex(state["region_wkb_hex"]))
    common = {
        "chunks": tuple(state["chunks"]),
        "variables": tuple(state["variables"]),
        "resampling": state["resampling"],
    }
    existing = existing_ids(target)
    plans: list[CubePlan] = []
    skipped: list[dict[str, Any]] = []
    ids = table["granule_id"].to_numpy()
    for gen in state["generations"]:
        gen_ids = existing[gen["t_offset"] : gen["t_offset"] + gen["n_layers"]]
        if gen["complete"] and mode == "append":
            continue
        rows = table[np.isin(ids, gen_ids)]
        if len(rows) < len(set(gen_ids)):
            if gen["complete"]:
                continue  # resume of a finished generation with other granules: nothing to redo
            raise StoreError(
                f"{display(target)}: an unfinished build of {len(gen_ids)} granules is in the store, but "
                f"only {len(rows)} of them are in the given granules; rerun with the same search, or overwrite"
            )
        plan = plan_cube(rows, grid, region, t_offset=gen["t_offset"], **common)
        if plan.token != gen["token"]:
            raise StoreError(
                f"{display(target)}: the given granules do not rebuild the stored layers; use the same search or overwrite"
            )
        plans.append(plan)
    added = 0
    if mode == "append":
        new = table[~np.isin(ids, existing)]
        skipped += [
            {"granule_id": g, "reason": "already in the cube"}
            for g in table["granule_id"][np.isin(ids, existing)]
        ]
        if len(new):
            plan = plan_cube(
                new,
                grid,
                region,
                t_offset=len(existing),
                taken_dates=existing_mid_dates(target),
                **common,
            )
            skipped += _dropped_rows(plan)
            if plan.n_layers:
                append_template(plan, target)
                keep_rows(target, new, plan.token)
                plans.append(plan)
                added = plan.n_layers
    else:
        outside = table["granule_id"][~np.isin(ids, existing)]
        skipped += [
            {"granule_id": g, "reason": "not in the cube (use mode='append' to add it)"}
            for g in outside
        ]
    return plans, added, skipped
