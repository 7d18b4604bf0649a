"""Benchmark 4 (slow): a write_cube of thousands of granules on workers capped at 2 GiB.

The archive: ``unique`` synthetic granules rendered once (Svalbard region, 3 UTM zones and
EPSG:3413), then ``copies`` hard-linked copies of each file under other names, so that the
cube has ``unique * copies`` layers, each read from its own file (see
:func:`bench_common.replicate_table`). The build runs on a fresh LocalCluster of 2
single-threaded worker processes with ``memory_limit="2GiB"`` each.

Figures: wall time, blocks/s, granules/s, peak RSS per worker, whether a worker was
replaced (nanny restart) or logged memory warnings. Then the same build with the workers'
malloc settings of :data:`MALLOC_SETTINGS` (through ``distributed.nanny.pre-spawn-environ``),
alternated ``repeat`` times.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Worker environments compared: distributed's default, a large trim threshold, and the
#: default trim threshold with a large mmap threshold. (Setting either variable turns off
#: glibc's dynamic mmap threshold: every allocation above 128 KiB is then mmap-ed afresh and
#: page-faulted on first touch, unless MALLOC_MMAP_THRESHOLD_ is raised too.)
MALLOC_SETTINGS: dict[str, dict[str, str]] = {
    "trim 64 KiB (distributed default)": {"MALLOC_TRIM_THRESHOLD_": "65536"},
    "trim 1 GiB": {"MALLOC_TRIM_THRESHOLD_": str(2**30)},
    "trim 64 KiB + mmap 64 MiB": {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": str(2**26)},
}


def run_scale(
    *,
    workdir: str | os.PathLike,
    unique: int = 250,
    copies: int = 8,
    memory_limit: str = "2GiB",
    repeat: int = 1,
    chunks: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the big cube once per (setting, repetition); return all runs.

    Returns
    -------
    dict
        ``runs``: one row per build (setting, repetition, elapsed, blocks/s, peaks, health).
    """
    from bench_common import replicate_table, synthetic_archive
    from bench_e2e import run_case

    from itslive_dask.testing.synthetic import get_region

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    base = synthetic_archive(work / f"archive-{unique}-{seed}", unique, seed=seed)
    table = replicate_table(base, work / f"copies-{unique}-{seed}", copies)
    table_path = work / f"scale-table-{len(table)}.parquet"
    table.to_parquet(table_path)
    geojson = get_region("svalbard").geojson
    runs = []
    for rep in range(repeat):
        for label, env in MALLOC_SETTINGS.items():
            spec = {
                "table": str(table_path), "geojson": geojson, "storage_options": None, "tmp": str(work),
                "memory_limit": memory_limit, "worker_env": env, "chunks": list(chunks) if chunks else None,
            }
            res = run_case("write", spec, work)
            res.update(
                {
                    "setting": label,
                    "repetition": rep,
                    "granules": len(table),
                    "blocks_per_s": res["blocks_written"] / res["elapsed_s"],
                    "granules_per_s": len(table) / res["elapsed_s"],
                    "max_worker_peak_mb": max(res["worker_peak_rss"].values()) / 2**20,
                    "driver_peak_mb": res["driver_peak_rss"] / 2**20,
                    "workers_replaced": res["health"]["workers_replaced"],
                    "memory_warnings": res["health"]["memory_warnings"],
                }
            )
            runs.append(res)
            log.info("scale %s rep %d: %.1f s", label, rep, res["elapsed_s"])
    return {"granules": len(table), "unique_files": unique, "copies": copies, "memory_limit": memory_limit, "runs": runs}


SCALE_COLUMNS = [
    "setting", "repetition", "granules", "blocks_written", "elapsed_s", "blocks_per_s", "granules_per_s",
    "max_worker_peak_mb", "driver_peak_mb", "workers_replaced", "memory_warnings",
]
