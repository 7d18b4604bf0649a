"""Running a plan on a Dask cluster: one task per block, each writing its region and marker.

The tasks themselves (computing a block, writing it into its Zarr region aligned with the
chunks, then its marker) are the worker side, :mod:`itslive_dask.store.blocks`.

Where the blocks run decides what each worker fetches: every tile of a time block reads the
same granules, whose full-width row chunks reach into most tiles, and each worker process
keeps the chunks it decoded. So all tiles of a time block prefer one worker
(:func:`slab_placement`); when there are fewer time blocks than workers, each time block's
granules are split among several workers instead (:func:`granule_split`: every tile reads
its part of the granules on the worker that owns that part, and one task per block joins
the parts and writes), so that no granule is fetched by two workers.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import shapely

from itslive_dask.cube.kernel import BlockConfig
from itslive_dask.cube.plan import CubePlan
from itslive_dask.errors import StoreError
from itslive_dask.io.fetch import DEFAULT_RETRY_BUDGET
from itslive_dask.store.blocks import (
    block_config,
    read_part_task,
    write_block_task,
    write_parts_task,
)
from itslive_dask.store.headers import StoreHeaders, list_header_keys
from itslive_dask.store.state import list_markers, marker_name
from itslive_dask.store.target import StoreTarget, storage_error_message

log = logging.getLogger(__name__)

__all__ = ["granule_split", "run_plan", "slab_placement"]


def run_plan(
    client: Any,
    plan: CubePlan,
    target: StoreTarget,
    storage_options: Any,
    retries: int,
    progress: Any,
    *,
    retry_budget: float = DEFAULT_RETRY_BUDGET,
) -> dict[str, Any]:
    """Compute and write the blocks of ``plan`` not done yet; counts of what happened.
    ``retries`` and ``retry_budget`` (seconds) bound the attempts of each granule."""
    from distributed import as_completed

    cfg = BlockConfig(
        grid=plan.grid,
        variables=plan.variables,
        resampling=plan.resampling,
        region_wkb=shapely.to_wkb(plan.region),
        storage_options=dict(storage_options or {}),
        retries=retries,
        budget=retry_budget,
        session=uuid.uuid4().hex,
        headers=StoreHeaders(target, list_header_keys(target)),
    )
    markers = list_markers(target)
    todo: list[tuple[tuple[int, int, int], str, Any, dict[str, Any] | None]] = []
    n_skipped = 0
    blocks = [b for b in plan.block_ids() if plan.blocks.get(b)]
    for block in blocks:
        name = marker_name(plan, block)
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
    stats: dict[str, Any] = {
        "total": total,
        "written": 0,
        "skipped": n_skipped,
        "read": set(),
        "peak_rss": 0,
    }
    if progress:
        progress(n_skipped, total)
    if not todo:
        return stats
    # a task, not scattered data: if the worker holding it dies (a killed or preempted
    # worker), the scheduler recomputes it and reruns the lost blocks; scattered data would
    # be lost for good and every block still to run would fail
    cfg_future = client.submit(block_config, cfg, key=f"itslive-config-{cfg.session}", pure=False)
    token = plan.token
    shared = _read_by_several([refs for _, _, refs, _ in todo])
    workers = _worker_addresses(client)
    placement = slab_placement([b for b, *_ in todo], workers)
    split = granule_split([b for b, *_ in todo], workers)
    log.info(
        "running %d blocks of %d time blocks on %d workers (%d time blocks split by granule)",
        len(todo),
        len({b[0] for b, *_ in todo}),
        len(workers),
        len(split),
    )

    def shares(refs) -> bool:
        return any(ref.url in shared for _, ref in refs)

    futures: list[Any] = []
    for block, name, refs, previous in todo:
        ts, rs, cs = plan.block_slices(block)
        t_range, rows, cols = (ts.start, ts.stop), (rs.start, rs.stop), (cs.start, cs.stop)
        parts = _parts(refs, t_range, split.get(block[0], [])) if previous is None else []
        if len(parts) > 1:
            part_futures = [
                client.submit(
                    read_part_task,
                    cfg_future,
                    part_refs,
                    positions,
                    rows,
                    cols,
                    shares(part_refs),
                    key=f"itslive-read-{name}-{k}-{token}",
                    retries=0,
                    pure=False,
                    workers=[worker],
                    allow_other_workers=True,
                )
                for k, (worker, positions, part_refs) in enumerate(parts)
            ]
            # the join goes where the scheduler puts it (next to its larger input): pinning
            # joins to alternate workers was measured worse (1.40x the needed bytes instead
            # of 1.03x at 180 km: shares were stolen)
            futures.append(
                client.submit(
                    write_parts_task,
                    cfg_future,
                    part_futures,
                    t_range,
                    rows,
                    cols,
                    target,
                    name,
                    key=f"itslive-write-{name}-{token}",
                    retries=0,
                    pure=False,
                )
            )
            continue
        where = placement.get(block)
        futures.append(
            client.submit(
                write_block_task,
                cfg_future,
                refs,
                t_range,
                rows,
                cols,
                target,
                name,
                previous,
                shares(refs),
                key=f"itslive-write-{name}-{token}",
                retries=0,
                pure=False,
                workers=where,
                allow_other_workers=where is not None,
            )
        )
    finished = n_skipped
    try:
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except (StoreError, KeyboardInterrupt):
                raise
            except Exception as exc:  # a block could not be written (store errors, lost workers)
                raise StoreError(storage_error_message(target, "writing a block", exc)) from exc
            finished += 1
            stats["written"] += 1
            stats["read"] |= set(res["read"])
            stats["peak_rss"] = max(stats["peak_rss"], res["peak_rss"])
            if progress:
                progress(finished, total)
    except BaseException:
        # whatever stops the build (a failed block, Ctrl-C, an error in the progress
        # callback) stops its blocks too: none may start writing once the lease is released
        # (only those already running finish, and their markers say so)
        _cancel(client, futures)
        raise
    return stats


def _cancel(client: Any, futures: list[Any]) -> None:
    try:
        client.cancel(futures)
    except Exception as exc:  # a cluster that is gone has nothing left to cancel
        log.warning("could not cancel the build's remaining blocks: %s", exc)


def slab_placement(
    blocks: list[tuple[int, int, int]], workers: list[str]
) -> dict[tuple[int, int, int], list[str]]:
    """Which worker each block should preferably run on: every tile of one time block on the
    same worker, time blocks cut into one contiguous run per worker.

    The tiles of a time block read the same granules, and a granule's full-width row chunks
    (640 x 2016 px, ~77 x 242 km), rotated from UTM onto a polar grid, reach into most tiles
    of a 3 x 3 area; each worker process caches the chunks it fetched
    (:mod:`itslive_dask.io.remote`), so tiles of one time block spread over two workers make
    both fetch nearly every chunk (1.99x the needed bytes at 180 km on 2 workers; 1.88x
    with tile bands grouped). A build has as many time blocks as ``layers / chunks[0]``, so a
    large one keeps every worker busy; the preference is loose, so Dask's work stealing still
    moves blocks to an idle worker when there are fewer time blocks than workers.

    Parameters
    ----------
    blocks
        Block ids ``(time block, tile row, tile column)`` to run.
    workers
        Worker addresses; with fewer than two, no preference is given.

    Returns
    -------
    dict
        ``block -> [worker address]`` (empty when there is no choice to make).
    """
    if len(workers) < 2:
        return {}
    slabs = sorted({b[0] for b in blocks})
    slab_worker = {t: workers[k * len(workers) // len(slabs)] for k, t in enumerate(slabs)}
    return {b: [slab_worker[b[0]]] for b in blocks}


def granule_split(blocks: list[tuple[int, int, int]], workers: list[str]) -> dict[int, list[str]]:
    """Among which workers each time block's granules are split, when there are fewer time
    blocks than workers (else nothing is split: :func:`slab_placement` keeps each time block
    on one worker).

    With one time block and two workers, giving each worker half of the tiles makes both
    fetch nearly every granule's row chunks (1.96x the needed bytes at 180 km); giving each
    worker half of the granules, for every tile, fetches each chunk once.

    Parameters
    ----------
    blocks
        Block ids ``(time block, tile row, tile column)`` to run.
    workers
        Worker addresses.

    Returns
    -------
    dict
        ``time block -> [worker address, ...]`` (at least two), only for split time blocks.
    """
    slabs = sorted({b[0] for b in blocks})
    if len(workers) < 2 or not slabs or len(slabs) >= len(workers):
        return {}
    k = len(workers) // len(slabs)
    return {t: workers[i * k : (i + 1) * k] for i, t in enumerate(slabs)}


def _parts(
    refs, t_range: tuple[int, int], workers: list[str]
) -> list[tuple[str, tuple[int, int], tuple]]:
    """A block's granules cut by layer position into one run per worker (the same cut for
    every tile of the time block): ``[(worker, (first, stop) positions, refs)]``, empty
    parts left out."""
    if len(workers) < 2 or len(refs) < 2:
        return []
    nt = t_range[1] - t_range[0]
    parts = []
    for k, worker in enumerate(workers):
        lo, hi = k * nt // len(workers), (k + 1) * nt // len(workers)
        mine = tuple((pos, ref) for pos, ref in refs if lo <= pos < hi)
        if mine:
            parts.append((worker, (lo, hi), mine))
    return parts


def _read_by_several(block_refs) -> set[str]:
    """URLs of the granules that more than one of the blocks read (only their decoded chunks
    are worth keeping for later blocks)."""
    seen: set[str] = set()
    several: set[str] = set()
    for refs in block_refs:
        for url in {ref.url for _, ref in refs}:
            (several if url in seen else seen).add(url)
    return several


def _worker_addresses(client: Any) -> list[str]:
    try:
        return sorted(client.scheduler_info().get("workers", {}))
    except Exception:  # no scheduler information: no preference
        return []
