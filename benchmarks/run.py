"""Run the itslive_dask benchmarks and print their figures as Markdown tables.

Usage::

    .venv/bin/python benchmarks/run.py [--only graph,read,e2e,scale,io,readpath,tutorial,curve]
                                       [--out DIR] [--work DIR] [--quick] [--e2e-granules 200]
                                       [--no-s3] [--tutorial-granules 384]
                                       [--s3-granules 128] [--local-granules 128,384]
                                       [--curve-sizes 100,1000,3000,10000] [--curve-plot FILE.png]

``io``, ``readpath`` and ``tutorial`` (realistic ~15 MB granules, the last two behind the counting
S3 proxy) and ``curve`` (``write_cube`` of up to 10^4 granules on workers capped at 1.5 GiB)
are not in the default set; ask for them with ``--only``.

Results go to ``DIR/<benchmark>.json`` (``--out``, else ``$ITSLIVE_BENCH_OUT``, else a new
temp folder), each with the machine facts (date, CPU, cores, load average, versions) and
the command line. ``--work`` holds the synthetic archives (reused between runs; default
``$ITSLIVE_BENCH_WORK`` or ``<temp>/itslive-bench-work``). Benchmarks run one after the other:
the machine has 2 cores. No timing is asserted anywhere: figures are reported, and compared
with a baseline measured in the same run.

To compare against an unthrottled numpy where the environment sets OpenBLAS overrides, run
with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` (the kernels measured here are not BLAS
bound; the overrides are recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_common import machine_info, md_table, out_dir, write_result  # noqa: E402

log = logging.getLogger("benchmarks")

ALL = ("graph", "read", "e2e", "scale")
EXTRA = ("io", "readpath", "tutorial", "curve")


def _graph(args) -> dict:
    from bench_graph import GRAPH_COLUMNS, SIZES, run_graph

    sizes = (1_000, 10_000) if args.quick else SIZES
    res = run_graph(sizes=sizes)
    print(md_table(res["rows"], GRAPH_COLUMNS))
    return res


def _read(args) -> dict:
    from bench_common import synthetic_archive
    from bench_read import (
        run_cache,
        run_cache_sweep,
        run_decode,
        run_malloc,
        run_profile,
        run_transform,
    )

    from itslive_dask.cube.lazy import make_plan
    from itslive_dask.testing.synthetic import get_region

    n = 40 if args.quick else 120
    table = synthetic_archive(Path(args.work) / f"archive-{n}-0", n, seed=0)
    res: dict = {}
    # the largest granules (the DESIGN.md floor is an 833x833 granule)
    big = Path(args.work) / "archive-big-0"
    big_table = synthetic_archive(big, 6, seed=3, granule_pixels=(833, 833), v1_fraction=0.0)
    paths = [u for u, v in zip(big_table["url"], big_table["version"], strict=True) if v == 2][:4]
    res["decode_833"] = run_decode(paths, repeat=3)
    print(f"\ndecode, granule {res['decode_833']['granule']}")
    print(md_table(res["decode_833"]["rows"], ["method", "ms_per_granule", "mpix_per_s", "x_h5py"]))
    small = [u for u, v in zip(table["url"], table["version"], strict=True) if v == 2][:8]
    res["decode_small"] = run_decode(small, repeat=3)
    print(f"\ndecode, granule {res['decode_small']['granule']}")
    print(
        md_table(res["decode_small"]["rows"], ["method", "ms_per_granule", "mpix_per_s", "x_h5py"])
    )
    res["transform"] = run_transform()
    print("\ntransform", json.dumps(res["transform"], indent=1))
    plan = make_plan(table, get_region("svalbard").geojson)
    counts = table.loc[table["epsg"] != plan.grid.epsg, "epsg"].value_counts()
    utm = int(counts.index[0])
    res["cache"] = run_cache(plan, epsg=utm)
    print("\ngeometry cache", json.dumps(res["cache"], indent=1))
    res["cache_sweep"] = [
        run_cache_sweep(
            make_plan(table, get_region("svalbard").geojson, chunks=ch), max_time_blocks=2
        )
        for ch in ((16, 512, 512), (16, 128, 128))
    ]
    print("\ngeometry cache over a sweep of blocks")
    print(
        md_table(
            res["cache_sweep"],
            [
                "chunks",
                "blocks",
                "distinct_tile_crs_pairs",
                "cache_maxsize",
                "hits",
                "misses",
                "hit_rate",
                "elapsed_s",
            ],
        )
    )
    res["profile"] = run_profile(plan)
    print("\nprofile of the busiest block", json.dumps(res["profile"], indent=1))
    table_path = Path(args.work) / f"read-table-{n}.parquet"
    table.to_parquet(table_path)
    res["malloc"] = run_malloc(
        str(table_path), get_region("svalbard").geojson, repeat=1 if args.quick else 2
    )
    print("\nmalloc settings, all blocks in one process")
    print(
        md_table(
            res["malloc"]["rows"],
            ["setting", "blocks", "total_s", "median_block_s", "minor_faults", "peak_rss_mb"],
        )
    )
    return res


def _e2e(args) -> dict:
    from bench_e2e import E2E_COLUMNS, run_e2e

    res = run_e2e(args.e2e_granules, workdir=args.work, with_s3=not args.no_s3)
    print(md_table(res["rows"], E2E_COLUMNS))
    return res


def _scale(args) -> dict:
    from bench_scale import SCALE_COLUMNS, run_scale

    if args.quick:
        res = run_scale(workdir=args.work, unique=40, copies=3, repeat=1)
    else:
        res = run_scale(
            workdir=args.work,
            unique=args.scale_unique,
            copies=args.scale_copies,
            repeat=args.scale_repeat,
        )
    print(md_table(res["runs"], SCALE_COLUMNS))
    return res


def _io(args) -> dict:
    from bench_io import COLUMNS, run_io

    res = run_io(Path(args.work), repeat=1 if args.quick else 3)
    print(md_table(res["rows"], COLUMNS))
    return res


def _readpath(args) -> dict:
    from bench_readpath import COLUMNS, TUTORIAL_COLUMNS, run_readpath, run_tutorial

    res: dict = {
        "readpath": run_readpath(
            Path(args.work), aois_km=(10.0,) if args.quick else (10.0, 50.0, 180.0)
        )
    }
    print(md_table(res["readpath"]["rows"], COLUMNS))
    if args.tutorial_granules:
        res["tutorial"] = run_tutorial(Path(args.work), args.tutorial_granules)
        print(md_table(res["tutorial"]["rows"], TUTORIAL_COLUMNS))
    return res


def _tutorial(args) -> dict:
    from bench_tutorial import COLUMNS, run_comparison

    if args.quick:
        res = run_comparison(Path(args.work), s3_granules=8, local_granules=(8,))
    else:
        res = run_comparison(
            Path(args.work),
            s3_granules=args.s3_granules,
            local_granules=tuple(int(n) for n in args.local_granules.split(",") if n.strip()),
        )
    print(md_table(res["rows"], COLUMNS))
    return res


def _curve(args) -> dict:
    from bench_scale import CURVE_COLUMNS, plot_curve, run_scale_curve

    sizes = (50, 200, 400) if args.quick else tuple(int(n) for n in args.curve_sizes.split(","))
    unique = 200 if args.quick else args.curve_unique
    res = run_scale_curve(workdir=args.work, sizes=sizes, unique=unique, baseline_max=unique)
    print(md_table(res["rows"], CURVE_COLUMNS))
    if args.curve_plot:
        print(f"plot -> {plot_curve(res['rows'], args.curve_plot)}")
    return res


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the chosen benchmarks in order, write JSON, print tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL + EXTRA)}"
    )
    p.add_argument("--out", default=None, help="folder for the JSON results")
    p.add_argument(
        "--work",
        default=os.environ.get(
            "ITSLIVE_BENCH_WORK", os.path.join(tempfile.gettempdir(), "itslive-bench-work")
        ),
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes (a smoke run of every benchmark)"
    )
    p.add_argument("--e2e-granules", type=int, default=200)
    p.add_argument("--no-s3", action="store_true", help="skip the local S3 server cases")
    p.add_argument("--scale-unique", type=int, default=250)
    p.add_argument("--scale-copies", type=int, default=8)
    p.add_argument("--scale-repeat", type=int, default=1)
    p.add_argument(
        "--tutorial-granules",
        type=int,
        default=0,
        help="readpath: also load_cube vs write_cube at this size",
    )
    p.add_argument(
        "--s3-granules",
        type=int,
        default=128,
        help="tutorial: realistic granules on the local S3 server",
    )
    p.add_argument(
        "--local-granules", default="128,384", help="tutorial: realistic granules from local files"
    )
    p.add_argument(
        "--curve-sizes", default="100,1000,3000,10000", help="curve: granules, comma-separated"
    )
    p.add_argument(
        "--curve-unique",
        type=int,
        default=1000,
        help="curve: distinct files (larger sizes repeat them)",
    )
    p.add_argument("--curve-plot", default=None, help="curve: PNG of time and memory vs granules")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("distributed", "numexpr", "botocore", "s3fs", "aiobotocore", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(chosen) - set(ALL + EXTRA)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(ALL + EXTRA)}")
    out = out_dir(args.out)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    print(f"machine: {json.dumps(machine_info())}")
    runners = {
        "graph": _graph,
        "read": _read,
        "e2e": _e2e,
        "scale": _scale,
        "io": _io,
        "readpath": _readpath,
        "tutorial": _tutorial,
        "curve": _curve,
    }
    for name in chosen:
        print(f"\n## {name}\n")
        t0 = time.perf_counter()
        res = runners[name](args)
        res["benchmark_wall_s"] = time.perf_counter() - t0
        path = write_result(out, name, res)
        print(f"\n-> {path} ({res['benchmark_wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
