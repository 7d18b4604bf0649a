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

Time and memory versus the number of granules (:func:`run_scale_curve`, the command line of
this file): ``write_cube`` of 100 to 10,000 default-size granules from local files on 2
single-threaded worker processes with ``memory_limit="1.5GiB"`` each (issue 11's target), and
the tutorial's ``load_cube`` + ``to_zarr`` up to the size that fits in RAM; each case in a
fresh process; a plot with ``--plot``. Up to ``--unique`` granules the files are distinct;
above, they are hard-linked copies under new ids and dates (:func:`curve_table`)::

    PYTHONPATH=$PWD .venv/bin/python -W ignore benchmarks/bench_scale.py --work DIR --out DIR \
        --sizes 100,1000,3000,10000 --unique 1000 --baseline-max 1000 --plot FILE.png
"""

from __future__ import annotations

import logging
import os
import time
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
    "trim 64 KiB + mmap 64 MiB": {
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "MALLOC_MMAP_THRESHOLD_": str(2**26),
    },
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
                "table": str(table_path),
                "geojson": geojson,
                "storage_options": None,
                "tmp": str(work),
                "memory_limit": memory_limit,
                "worker_env": env,
                "chunks": list(chunks) if chunks else None,
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
    return {
        "granules": len(table),
        "unique_files": unique,
        "copies": copies,
        "memory_limit": memory_limit,
        "runs": runs,
    }


SCALE_COLUMNS = [
    "setting",
    "repetition",
    "granules",
    "blocks_written",
    "elapsed_s",
    "blocks_per_s",
    "granules_per_s",
    "max_worker_peak_mb",
    "driver_peak_mb",
    "workers_replaced",
    "memory_warnings",
]


# ----------------------------------------------------------------------------- time and memory vs N
#: Sizes of :func:`run_scale_curve` (granules).
CURVE_SIZES: tuple[int, ...] = (100, 1_000, 3_000, 10_000)


def curve_table(
    workdir: str | os.PathLike, n: int, *, unique: int = 1_000, seed: int = 0, processes: int = 2
) -> Any:
    """The granule table of ``n`` default-size synthetic granules (Svalbard, seed ``seed``).

    Up to ``unique`` granules they are distinct files (the first ``n`` granules of one
    incrementally rendered archive); above, the ``unique`` files are repeated as hard-linked
    copies under new ids and dates (:func:`bench_common.replicate_table`), ``n / unique``
    copies (``n`` must then be a multiple of ``unique``).
    """
    from bench_common import replicate_table
    from bench_tutorial import incremental_archive

    work = Path(workdir)
    if n <= unique:
        return incremental_archive(work / f"small-{seed}", n, seed=seed, processes=processes)
    if n % unique:
        raise ValueError(f"{n} granules is not a multiple of {unique} distinct ones")
    base = incremental_archive(work / f"small-{seed}", unique, seed=seed, processes=processes)
    return replicate_table(base, work / f"small-{seed}-copies-{unique}", n // unique)


def run_scale_curve(
    *,
    workdir: str | os.PathLike,
    sizes: tuple[int, ...] = CURVE_SIZES,
    unique: int = 1_000,
    baseline_max: int = 1_000,
    memory_limit: str = "1.5GiB",
    n_workers: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """``write_cube`` of ``n`` default-size granules from local files on ``n_workers`` worker
    processes capped at ``memory_limit``, for each ``n`` of ``sizes``; and the tutorial's
    ``load_cube`` + ``to_zarr`` (one process, all in RAM) for the sizes up to ``baseline_max``.
    Each case in a fresh process (``bench_tutorial.run_case``).

    Returns
    -------
    dict
        ``rows``: one per (granules, case): wall time, driver and worker peak RSS (``VmHWM``),
        tasks run by the scheduler, blocks, layers, failed granules, worker health (replaced
        workers, memory warnings/pauses in the worker logs), load average before the case.
    """
    from bench_tutorial import run_case

    from itslive_dask.testing.synthetic import get_region

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    geojson = get_region("svalbard").geojson
    rows: list[dict[str, Any]] = []
    for n in sizes:
        t0 = time.perf_counter()
        table = curve_table(work, n, unique=unique, seed=seed)
        prep_s = time.perf_counter() - t0
        path = work / f"curve-table-{n}-{time.time_ns()}.parquet"
        table.to_parquet(path)
        spec = {
            "table": str(path),
            "urls": list(table["url"]),
            "geojson": geojson,
            "storage_options": None,
            "tmp": str(work),
            "memory_limit": memory_limit,
            "n_workers": n_workers,
        }
        cases = ["engine"] + (["tutorial"] if n <= baseline_max else [])
        try:
            for case in cases:
                load = [round(v, 2) for v in os.getloadavg()]
                r = run_case(case, spec, work)
                peaks = r.get("worker_peak_rss") or {}
                health = r.get("health") or {}
                row = {
                    "case": case,
                    "granules": n,
                    "distinct_files": min(n, unique),
                    "table_s": prep_s,
                    **r,
                    "driver_peak_mb": r["driver_peak_rss"] / 2**20,
                    "max_worker_peak_mb": max(peaks.values()) / 2**20 if peaks else None,
                    "tasks_run": sum((r.get("tasks") or {}).values()) if case == "engine" else None,
                    "workers_replaced": health.get("workers_replaced"),
                    "memory_warnings": health.get("memory_warnings"),
                    "ms_per_granule": 1e3 * r["elapsed_s"] / n,
                    "loadavg_before": load,
                }
                rows.append(row)
                log.info(
                    "curve %s %d: %.1f s, peak %.0f MB",
                    case,
                    n,
                    r["elapsed_s"],
                    row["max_worker_peak_mb"] or row["driver_peak_mb"],
                )
        finally:
            path.unlink(missing_ok=True)
    return {
        "sizes": list(sizes),
        "unique": unique,
        "memory_limit": memory_limit,
        "n_workers": n_workers,
        "rows": rows,
    }


CURVE_COLUMNS = [
    "granules",
    "case",
    "distinct_files",
    "elapsed_s",
    "ms_per_granule",
    "driver_peak_mb",
    "max_worker_peak_mb",
    "tasks_run",
    "blocks_written",
    "layers",
    "failed",
    "workers_replaced",
    "memory_warnings",
    "loadavg_before",
]


def plot_curve(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Two log-log panels: wall time and peak RSS versus granules, engine vs tutorial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    eng = sorted((r for r in rows if r["case"] == "engine"), key=lambda r: r["granules"])
    tut = sorted((r for r in rows if r["case"] == "tutorial"), key=lambda r: r["granules"])
    for rs, label, style in (
        (tut, "tutorial load_cube + to_zarr (1 process)", "o-"),
        (eng, "write_cube (2 workers, 1.5 GiB limit)", "s-"),
    ):
        if rs:
            ax1.plot([r["granules"] for r in rs], [r["elapsed_s"] for r in rs], style, label=label)
    if tut:
        ax2.plot(
            [r["granules"] for r in tut],
            [r["driver_peak_mb"] for r in tut],
            "o-",
            label="tutorial: its one process",
        )
    if eng:
        n = [r["granules"] for r in eng]
        ax2.plot(
            n, [r["max_worker_peak_mb"] for r in eng], "s-", label="write_cube: largest worker"
        )
        ax2.plot(n, [r["driver_peak_mb"] for r in eng], "^--", label="write_cube: driver")
        ax2.axhline(1536, color="grey", lw=0.8, ls=":", label="1.5 GiB (memory_limit)")
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="granules",
        ylabel="wall time (s)",
        title="Time (shared 2 cores)",
    )
    ax2.set(
        xscale="log", xlabel="granules", ylabel="peak RSS (MB)", title="Peak memory of one process"
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line of :func:`run_scale_curve`: print the table, write ``<out>/scale_curve.json``."""
    import argparse
    import sys
    import tempfile

    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    from bench_common import machine_info, md_table, out_dir, write_result

    ap = argparse.ArgumentParser(
        description="write_cube time and memory vs granules (and the tutorial's, while it fits)"
    )
    ap.add_argument(
        "--work",
        default=str(Path(tempfile.gettempdir()) / "itslive-bench-work"),
        help="archives (reused)",
    )
    ap.add_argument("--out", default=None, help="folder of the JSON result")
    ap.add_argument(
        "--sizes", default=",".join(map(str, CURVE_SIZES)), help="granules, comma-separated"
    )
    ap.add_argument(
        "--unique", type=int, default=1_000, help="distinct files; larger sizes repeat them"
    )
    ap.add_argument(
        "--baseline-max", type=int, default=1_000, help="run the tutorial up to this size"
    )
    ap.add_argument("--memory-limit", default="1.5GiB", help="per worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plot", default=None, help="PNG: time and memory vs granules")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    start = machine_info()
    res = run_scale_curve(
        workdir=args.work,
        sizes=tuple(int(n) for n in args.sizes.split(",")),
        unique=args.unique,
        baseline_max=args.baseline_max,
        memory_limit=args.memory_limit,
        n_workers=args.workers,
    )
    res["machine_start"] = start
    print(md_table(res["rows"], CURVE_COLUMNS))
    if args.plot:
        print(f"plot -> {plot_curve(res['rows'], args.plot)}")
    path = write_result(out_dir(args.out), "scale_curve", res)
    print(f"\nresult -> {path}")
    return res


if __name__ == "__main__":
    main()
