"""Benchmark 1: plan and graph construction from a granule table alone (no file opened).

For tables of 10^3..10^5 made-up granules over the Pine Island Glacier area, and two
chunkings, it times ``make_plan`` (footprints -> blocks) and ``cube_from_plan`` (the lazy
Dataset), materialises the graph and counts its tasks, and sets that against what a naive
"one task per (granule, tile)" graph would hold on the same table (the stackstac / odc-stac
shape, before their per-chunk fusing): the pairs that intersect, and the dense
``granules x tiles`` product. Like flox's ``time_graph_construct`` / ``track_num_tasks``.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from bench_common import WIDE_BBOX, peak_rss_self, synthetic_table

log = logging.getLogger(__name__)

#: Two chunkings: the map-friendly default and a time-series-friendly one.
CHUNKINGS: dict[str, tuple[int, int, int]] = {
    "map (16,512,512)": (16, 512, 512),
    "series (256,128,128)": (256, 128, 128),
}
SIZES: tuple[int, ...] = (1_000, 10_000, 100_000)


def run_graph(
    sizes: tuple[int, ...] = SIZES,
    chunkings: dict[str, tuple[int, int, int]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time plan + graph building and count tasks for each table size and chunking.

    Returns
    -------
    dict
        ``{"rows": [...]}`` with one row per (size, chunking): ``table_s`` (making the fake
        table, not part of the engine), ``plan_s``, ``graph_s`` (``cube_from_plan``),
        ``materialize_s`` (turning the high-level graph into a dict of tasks), task counts
        and the naive counts, the CPU time of this process for the plan and the graph
        (``plan_cpu_s``, ``graph_cpu_s``: steadier than wall time on a shared machine), and
        memory: ``rss_before_mb`` (the process with the table
        loaded) and ``peak_rss_mb`` (its peak RSS while planning, building and
        materialising; the peak is reset before each row where Linux allows it, so
        ``peak_rss_mb - rss_before_mb`` is what the row added).
    """
    try:
        from itslive_dask.cube.lazy import cube_from_plan, make_plan
    except ImportError:  # the flat package before the restructure (compare_commits.py)
        from itslive_dask.engine import cube_from_plan, make_plan

    chunkings = chunkings or CHUNKINGS
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        table = synthetic_table(n, seed=seed)
        table_s = time.perf_counter() - t0
        for label, chunks in chunkings.items():
            gc.collect()
            peak_reset = _reset_peak_rss()
            rss_before = _rss_self()
            c0, t0 = time.process_time(), time.perf_counter()
            plan = make_plan(table, bbox=WIDE_BBOX, chunks=chunks)
            c1, t1 = time.process_time(), time.perf_counter()
            ds = cube_from_plan(plan)
            c2, t2 = time.process_time(), time.perf_counter()
            graph = dict(ds.__dask_graph__())
            t3 = time.perf_counter()
            peak = peak_rss_self()
            summary = plan.summary()
            ny, nx = (len(c) for c in plan.space_chunks())
            n_tiles = ny * nx
            n_vars = len(plan.variables)
            block_tasks = sum(
                1 for k in graph if isinstance(k, tuple) and str(k[0]).startswith("itslive-blocks-")
            )
            rows.append(
                {
                    "granules": n,
                    "chunking": label,
                    "layers": summary["layers"],
                    "shape": list(summary["shape"]),
                    "tiles": n_tiles,
                    "blocks": summary["blocks"],
                    "blocks_with_data": summary["blocks_with_data"],
                    "tasks": len(graph),
                    "block_tasks": block_tasks,
                    "tasks_per_block": len(graph) / max(summary["blocks"], 1),
                    "naive_pair_tasks": summary["granule_tile_reads"],
                    "naive_dense_tasks": summary["layers"] * n_tiles,
                    "naive_pair_tasks_x_vars": summary["granule_tile_reads"] * n_vars,
                    "table_s": table_s,
                    "plan_s": t1 - t0,
                    "graph_s": t2 - t1,
                    "materialize_s": t3 - t2,
                    "total_s": t3 - t0,
                    "plan_cpu_s": c1 - c0,
                    "graph_cpu_s": c2 - c1,
                    "rss_before_mb": rss_before / 2**20,
                    "peak_rss_mb": peak / 2**20,
                    "peak_reset": peak_reset,
                }
            )
            log.info("graph: %s", rows[-1])
            del graph, ds, plan
    return {"rows": rows}


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_self() -> int:
    """Current RSS of this process in bytes (``VmRSS``), 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


GRAPH_COLUMNS = [
    "granules",
    "chunking",
    "layers",
    "blocks",
    "blocks_with_data",
    "tasks",
    "naive_pair_tasks",
    "naive_dense_tasks",
    "plan_s",
    "graph_s",
    "materialize_s",
    "total_s",
    "peak_rss_mb",
]
