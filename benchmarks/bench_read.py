"""Benchmark 3: read-path floors and the per-process source-geometry cache.

* decode: per granule, plain h5py of the 4 velocity variables (the floor DESIGN.md quotes:
  ~33 ms for an 833x833 granule) vs the engine's ``read_info`` + ``read_window`` (header
  parse, fill masking, float32) vs ``xarray.open_dataset(engine="h5netcdf").load()``; from a
  local path and from in-memory bytes (what a block task has after its whole-object GET);
* transform: pyproj points/s (target grid -> a UTM zone) vs
  :func:`itslive_dask.cube.reproject.source_geometry` on one tile (it transforms 3 points per
  pixel: forward, and back with a finite-difference step);
* cache: one block with many granules of one CRS, computed with the per-process
  ``GEOMETRY_CACHE`` as shipped and with it disabled (hit rate, wall time);
* profile: where a block task spends its time (cProfile, grouped by stage).
"""

from __future__ import annotations

import cProfile
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import best_of, md_table, peak_rss_self, profile_summary

from itslive_dask.cache import LRU

log = logging.getLogger(__name__)

VELOCITY = ("vx", "vy", "v", "v_error")


def _h5py_plain(src: Any) -> int:
    import h5py

    with h5py.File(src, "r", locking=False) if isinstance(src, str) else h5py.File(src, "r") as h5:
        total = 0
        for name in VELOCITY:
            if name in h5:
                total += h5[name][()].size
        return total


def _engine_path(src: Any, label: str) -> int:
    import h5py

    from itslive_dask.io.hdf5 import read_info, read_window

    with h5py.File(src, "r", locking=False) if isinstance(src, str) else h5py.File(src, "r") as h5:
        info = read_info(h5, label)
        out = read_window(h5, info, VELOCITY, slice(None), slice(None))
        return sum(a.size for a in out.values())


def _xarray_path(src: Any) -> int:
    import xarray as xr

    with xr.open_dataset(src, engine="h5netcdf") as ds:
        return sum(ds[v].load().size for v in VELOCITY if v in ds)


def run_decode(paths: list[str], repeat: int = 3) -> dict[str, Any]:
    """Per-granule decode times (best of ``repeat``), averaged over ``paths``.

    Returns
    -------
    dict
        ``rows``: one per method with ``ms_per_granule``, ``mpix_per_s`` (pixels of the 4
        variables per second) and ``x_h5py`` (ratio to plain h5py); ``granule``: shape,
        size, chunking and filters of the first file.
    """
    import os

    import h5py

    with h5py.File(paths[0], "r", locking=False) as h5:
        d = h5["vx"]
        meta = {
            "shape": list(d.shape),
            "dtype": str(d.dtype),
            "chunks": list(d.chunks) if d.chunks else None,
            "compression": d.compression,
            "compression_opts": d.compression_opts,
            "shuffle": d.shuffle,
            "file_mb": os.path.getsize(paths[0]) / 1e6,
            "n_files": len(paths),
        }
    blobs = [Path(p).read_bytes() for p in paths]
    methods = {
        "h5py plain (path)": lambda i: _h5py_plain(paths[i]),
        "read_info+read_window (path)": lambda i: _engine_path(paths[i], paths[i]),
        "xarray h5netcdf .load() (path)": lambda i: _xarray_path(paths[i]),
        "h5py plain (bytes)": lambda i: _h5py_plain(io.BytesIO(blobs[i])),
        "read_info+read_window (bytes)": lambda i: _engine_path(io.BytesIO(blobs[i]), paths[i]),
        "xarray h5netcdf .load() (bytes)": lambda i: _xarray_path(io.BytesIO(blobs[i])),
    }
    rows = []
    for label, fn in methods.items():
        times, pix = [], 0
        for i in range(len(paths)):
            t, pix_i = best_of(lambda fn=fn, i=i: fn(i), repeat)
            times.append(t)
            pix += pix_i
        ms = 1e3 * float(np.mean(times))
        rows.append(
            {
                "method": label,
                "ms_per_granule": ms,
                "mpix_per_s": pix / len(paths) / (ms / 1e3) / 1e6,
            }
        )
    base = {
        r["method"].split(" (")[1]: r["ms_per_granule"]
        for r in rows
        if r["method"].startswith("h5py plain")
    }
    for r in rows:
        r["x_h5py"] = r["ms_per_granule"] / base[r["method"].split(" (")[1]]
    return {"granule": meta, "rows": rows}


def run_transform(
    tile: int = 512, source_epsg: int = 32714, target_epsg: int = 3031, repeat: int = 3
) -> dict[str, Any]:
    """pyproj throughput vs ``source_geometry`` on a ``tile x tile`` tile near Pine Island."""
    from pyproj import Transformer

    from itslive_dask.cube.reproject import source_geometry

    x = -1_600_000.0 + 120.0 * np.arange(tile)
    y = -250_000.0 - 120.0 * np.arange(tile)
    xx, yy = np.meshgrid(x, y)
    tr = Transformer.from_crs(target_epsg, source_epsg, always_xy=True)
    n = xx.size
    t_pyproj, _ = best_of(lambda: tr.transform(xx, yy), repeat)
    t_geom, geom = best_of(lambda: source_geometry(x, y, target_epsg, source_epsg), repeat)
    t_same, _ = best_of(lambda: source_geometry(x, y, target_epsg, target_epsg), repeat)
    return {
        "tile": [tile, tile],
        "source_epsg": source_epsg,
        "target_epsg": target_epsg,
        "pyproj_points_per_s": n / t_pyproj,
        "pyproj_ms_per_tile": 1e3 * t_pyproj,
        "source_geometry_ms_per_tile": 1e3 * t_geom,
        "source_geometry_x_pyproj": t_geom / t_pyproj,
        "source_geometry_same_crs_ms": 1e3 * t_same,
        "geometry_mb": geom.nbytes / 2**20,
    }


def _clear_caches(B, geometry: bool = True) -> None:
    """Empty the per-process caches of the block kernel, of the byte fetcher and of the range
    reader (headers, decoded chunks)."""
    from itslive_dask.io import fetch, remote

    caches = [getattr(B, n, None) for n in ("MASK_CACHE", "INFO_CACHE")]
    caches += [fetch.BYTES_CACHE, remote.HEADER_CACHE, B.FAILED_CACHE]
    # one session-keyed chunk cache (since session 7), or one per session before (so that
    # checkouts of either kind can be compared)
    caches += [getattr(remote, "CHUNK_CACHE", None), getattr(remote, "_CHUNKS", None)]
    if geometry:
        caches.append(B.GEOMETRY_CACHE)
    for cache in caches:
        if cache is not None:
            cache.clear()


def _busiest_block(plan, epsg: int | None = None):
    best, best_n = None, -1
    for block, lays in plan.blocks.items():
        refs = [plan.refs[k] for k in lays]
        n = sum(1 for r in refs if epsg is None or r.epsg == epsg)
        if n > best_n:
            best, best_n = block, n
    return best


def block_inputs(plan, block, epsg: int | None = None):
    """``(cfg, refs, rows, cols, nt)`` to call ``read_block`` on one block of a plan."""
    import shapely

    from itslive_dask.cube.kernel import BlockConfig

    cfg = BlockConfig(
        grid=plan.grid,
        variables=plan.variables,
        resampling=plan.resampling,
        region_wkb=shapely.to_wkb(plan.region),
    )
    refs = tuple((pos, r) for pos, r in plan.block_refs(block) if epsg is None or r.epsg == epsg)
    ts, rs, cs = plan.block_slices(block)
    return cfg, refs, (rs.start, rs.stop), (cs.start, cs.stop), ts.stop - ts.start


def run_all_blocks(plan, *, prof: Any = None, **config: Any) -> tuple[float, int]:
    """Every block of ``plan`` that reads, computed in this process with the block kernel
    (no cluster, no Zarr): ``(seconds, granule reads)``. ``config`` replaces fields of each
    block's ``BlockConfig`` (e.g. ``reader=``, ``storage_options=``); ``prof``, a
    ``cProfile.Profile``, is enabled around the kernel calls only. Caches are as the caller
    left them (:func:`_clear_caches` for a cold run)."""
    from dataclasses import replace

    from itslive_dask.cube import kernel as B

    reads = 0
    t0 = time.perf_counter()
    for block in plan.block_ids():
        if not plan.blocks.get(block):
            continue
        cfg, refs, rows, cols, nt = block_inputs(plan, block)
        if config:
            cfg = replace(cfg, **config)
        reads += len(refs)
        if prof is not None:
            prof.enable()
        B.read_block(cfg, refs, rows, cols, nt)
        if prof is not None:
            prof.disable()
    return time.perf_counter() - t0, reads


def run_cache(plan, epsg: int | None = None, repeat: int = 2) -> dict[str, Any]:
    """Time the busiest block of ``plan`` (only its granules in ``epsg`` if given) with the
    geometry cache as shipped, and with it disabled (``maxsize=0``)."""
    from itslive_dask.cube import kernel as B

    block = _busiest_block(plan, epsg)
    cfg, refs, rows, cols, nt = block_inputs(plan, block, epsg)
    crs_counts: dict[int, int] = {}
    for _, r in refs:
        crs_counts[r.epsg] = crs_counts.get(r.epsg, 0) + 1
    out: dict[str, Any] = {
        "block": list(block),
        "granules": len(refs),
        "tile": [rows[1] - rows[0], cols[1] - cols[0]],
        "crs_counts": {str(k): v for k, v in crs_counts.items()},
    }
    saved = B.GEOMETRY_CACHE
    try:
        for label, maxsize in (("cache", saved.maxsize), ("no_cache", 0)):
            B.GEOMETRY_CACHE = LRU(maxsize=maxsize)
            _clear_caches(B, geometry=False)
            t0 = time.perf_counter()
            B.read_block(cfg, refs, rows, cols, nt)  # cold: first call fills the cache
            cold = time.perf_counter() - t0
            warm, _ = best_of(lambda: B.read_block(cfg, refs, rows, cols, nt), repeat)
            c = B.GEOMETRY_CACHE
            out[label] = {
                "cold_s": cold,
                "warm_s": warm,
                "ms_per_granule_cold": 1e3 * cold / max(len(refs), 1),
                "hits": c.hits,
                "misses": c.misses,
                "hit_rate": c.hits / max(c.hits + c.misses, 1),
            }
    finally:
        B.GEOMETRY_CACHE = saved
    out["speedup_cold"] = out["no_cache"]["cold_s"] / out["cache"]["cold_s"]
    return out


#: cProfile function name -> stage of a block task.
_STAGES = {
    "cat_file": "fetch (fsspec whole-object GET)",
    "read_info": "read_info (header)",
    "read_window": "read_window (h5py decode + mask)",
    "source_geometry": "source_geometry (pyproj)",
    "sample": "sample (resampling)",
    "rotate": "rotate (vectors)",
    "fractional_index": "fractional_index",
    "_clip_mask": "clip mask",
}


def run_profile(
    plan, storage_options: dict | None = None, epsg: int | None = None
) -> dict[str, Any]:
    """cProfile one cold call of the busiest block; cumulative time per stage, % of the total."""
    from itslive_dask.cube import kernel as B

    block = _busiest_block(plan, epsg)
    cfg, refs, rows, cols, nt = block_inputs(plan, block, epsg)
    if storage_options:
        from dataclasses import replace

        cfg = replace(cfg, storage_options=dict(storage_options))
    _clear_caches(B)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    B.read_block(cfg, refs, rows, cols, nt)
    prof.disable()
    total = time.perf_counter() - t0
    prof_sum = profile_summary(prof, total, _STAGES)
    return {
        "block": list(block),
        "granules": len(refs),
        "tile": [rows[1] - rows[0], cols[1] - cols[0]],
        "total_s": total,
        "stages_s": prof_sum["stages_s"],
        "stages_pct": prof_sum["stages_pct"],
        "top_self_time": [
            {"function": f, "s": s, "pct": 100 * s / total} for f, s in prof_sum["top_own_s"]
        ],
    }


#: Environments of the block-loop subprocesses (glibc malloc tunables).
MALLOC_ENVS: dict[str, dict[str, str] | None] = {
    "glibc defaults (no variable)": None,
    "MALLOC_TRIM_THRESHOLD_=65536 (distributed's worker default)": {
        "MALLOC_TRIM_THRESHOLD_": "65536"
    },
    "MALLOC_TRIM_THRESHOLD_=1GiB": {"MALLOC_TRIM_THRESHOLD_": str(2**30)},
    "MALLOC_TRIM_THRESHOLD_=65536 + MALLOC_MMAP_THRESHOLD_=64MiB": {
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "MALLOC_MMAP_THRESHOLD_": str(2**26),
    },
}


def run_malloc(table_path: str, geojson: dict, repeat: int = 1) -> dict[str, Any]:
    """Every block of a cube computed in one fresh process per malloc setting.

    Returns the total block time and the minor page faults of each process (a fault count is
    a machine-independent witness of memory being handed back and touched afresh).
    """
    import json
    import os
    import subprocess
    import sys
    import tempfile

    spec = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"table": table_path, "geojson": geojson}, spec)
    spec.close()
    rows = []
    try:
        for _ in range(repeat):
            for label, extra in MALLOC_ENVS.items():
                env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
                env.update(extra or {})
                env["PYTHONPATH"] = os.pathsep.join(
                    [os.path.dirname(os.path.abspath(__file__)), env.get("PYTHONPATH", "")]
                )
                proc = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "blocks", spec.name],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                res["setting"] = label
                rows.append(res)
    finally:
        os.unlink(spec.name)
    return {"rows": rows}


def _blocks_main(spec_path: str) -> None:
    """Subprocess body of :func:`run_malloc`: compute every block of the plan, in order."""
    import json
    import resource
    import sys
    import warnings

    import geopandas as gpd

    from itslive_dask.cube import kernel as B
    from itslive_dask.cube.lazy import make_plan

    warnings.simplefilter("ignore")
    spec = json.loads(Path(spec_path).read_text())
    plan = make_plan(gpd.read_parquet(spec["table"]), spec["geojson"])
    times = []
    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for block in plan.block_ids():
        if not plan.blocks.get(block):
            continue
        cfg, refs, rows, cols, nt = block_inputs(plan, block)
        t0 = time.perf_counter()
        B.read_block(cfg, refs, rows, cols, nt)
        times.append(time.perf_counter() - t0)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "blocks": len(times),
        "granules": plan.n_layers,
        "total_s": sum(times),
        "first_block_s": times[0],
        "median_block_s": float(np.median(times)),
        "minor_faults": ru.ru_minflt - flt0,
        "peak_rss_mb": peak_rss_self() / 2**20,
    }
    sys.stdout.write(json.dumps(out) + "\n")


#: Tiles of the lattice benchmark: (target EPSG, source EPSG, lon, lat), the worst cases of
#: tests/cube/test_reproject.py plus the section-3 baseline (Pine Island, EPSG:3031 -> 32714).
LATTICE_CASES = [
    ("3031 <- 32714 (section 3 baseline)", 3031, 32714, -100.0, -75.0),
    ("3413 <- 32633, 9E 80N", 3413, 32633, 9.0, 80.0),
    ("3031 <- 32719, 66W 70S", 3031, 32719, -66.0, -70.0),
    ("3413 <- 32633, 15E 89.5N", 3413, 32633, 15.0, 89.5),
]


def run_lattice(tiles: tuple[int, ...] = (256, 512, 1024), repeat: int = 3) -> dict[str, Any]:
    """``source_geometry`` per pixel (``exact=True``) vs on the rotation lattice, alternated,
    best of ``repeat``; with the largest angle difference between the two over the tile."""
    from pyproj import Transformer

    from itslive_dask.cube.reproject import source_geometry

    rows = []
    for label, tgt, src, lon, lat in LATTICE_CASES:
        cx, cy = Transformer.from_crs(4326, tgt, always_xy=True).transform(lon, lat)
        for n in tiles:
            x = np.floor(cx / 120) * 120 + 52.5 + 120.0 * (np.arange(n) - n // 2)
            y = np.floor(cy / 120) * 120 + 67.5 - 120.0 * (np.arange(n) - n // 2)
            xx, yy = np.meshgrid(x, y)
            tr = Transformer.from_crs(tgt, src, always_xy=True)
            t_one, _ = best_of(lambda tr=tr, xx=xx, yy=yy: tr.transform(xx, yy), repeat)
            t_exact = t_lattice = float("inf")
            for _ in range(repeat):  # alternated, so both see the same load
                t0 = time.perf_counter()
                ex = source_geometry(x, y, tgt, src, exact=True)
                t_exact = min(t_exact, time.perf_counter() - t0)
                t0 = time.perf_counter()
                la = source_geometry(x, y, tgt, src)
                t_lattice = min(t_lattice, time.perf_counter() - t0)
            err = np.abs(
                np.arctan2(ex.sin * la.cos - ex.cos * la.sin, ex.cos * la.cos + ex.sin * la.sin)
            )
            rows.append(
                {
                    "case": label,
                    "tile": n,
                    "pyproj_one_pass_ms": 1e3 * t_one,
                    "exact_ms": 1e3 * t_exact,
                    "lattice_ms": 1e3 * t_lattice,
                    "speedup": t_exact / t_lattice,
                    "max_angle_err_rad": float(np.nanmax(err)),
                    "positions_identical": bool(
                        np.array_equal(ex.xs, la.xs) and np.array_equal(ex.ys, la.ys)
                    ),
                }
            )
            log.info("lattice %s %d: %s", label, n, rows[-1])
    return {"rows": rows}


def run_cold_block(plan, repeat: int = 3) -> dict[str, Any]:
    """The busiest block of ``plan``, cold caches, with the per-pixel geometry and with the
    lattice, alternated ``repeat`` times (the kernel's ``source_geometry`` swapped in place)."""
    import functools

    from itslive_dask.cube import kernel as B
    from itslive_dask.cube.reproject import source_geometry

    block = _busiest_block(plan)
    cfg, refs, rows, cols, nt = block_inputs(plan, block)
    times: dict[str, list[float]] = {"exact": [], "lattice": []}
    outs = {}
    try:
        for _ in range(repeat):
            for mode in ("exact", "lattice"):
                B.source_geometry = functools.partial(source_geometry, exact=(mode == "exact"))
                _clear_caches(B)
                t0 = time.perf_counter()
                outs[mode] = B.read_block(cfg, refs, rows, cols, nt)
                times[mode].append(time.perf_counter() - t0)
    finally:
        B.source_geometry = source_geometry
    epsgs = sorted({r.epsg for _, r in refs})
    return {
        "block": list(block),
        "granules": len(refs),
        "source_epsgs": epsgs,
        "tile": [rows[1] - rows[0], cols[1] - cols[0]],
        "exact_s": times["exact"],
        "lattice_s": times["lattice"],
        "best_speedup": min(times["exact"]) / min(times["lattice"]),
    }


#: Worker environments of the end-to-end malloc comparison (``None``: unset the variable).
E2E_MALLOC: dict[str, dict[str, str | None]] = {
    "distributed default (trim 64 KiB)": {},
    "package (trim 64 KiB + mmap 64 MiB)": {"MALLOC_MMAP_THRESHOLD_": str(2**26)},
    "glibc defaults (no variable)": {"MALLOC_TRIM_THRESHOLD_": None},
}


def _worker_usage() -> dict[str, float]:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "minor_faults": float(ru.ru_minflt),
        "peak_rss_mb": peak_rss_self() / 2**20,
    }


def _boot_malloc_environ() -> str:
    """The MALLOC_ variables a worker process was started with (``/proc/self/environ``)."""
    with open("/proc/self/environ", "rb") as f:
        items = [i.decode() for i in f.read().split(b"\0") if i.startswith(b"MALLOC_")]
    return " ".join(sorted(items)) or "(none)"


def run_malloc_e2e(
    table, geojson, workdir: str, repeat: int = 2, n_workers: int = 2
) -> dict[str, Any]:
    """``write_cube`` of ``table`` on a fresh 2-worker LocalCluster per run, with each worker
    environment of :data:`E2E_MALLOC` in turn (alternated ``repeat`` times): wall time, the
    workers' CPU time, minor page faults and peak RSS (from ``getrusage`` in each worker)."""
    import os
    import shutil

    import dask
    from distributed import Client, LocalCluster

    import itslive_dask

    rows = []
    for rep in range(repeat):
        for label, env in E2E_MALLOC.items():
            base = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
            base.pop("MALLOC_MMAP_THRESHOLD_", None)
            cfg = {**base, **env}
            store = Path(workdir) / "malloc-e2e.zarr"
            shutil.rmtree(store, ignore_errors=True)
            # the nannies copy their pre-spawn environment into this process's os.environ and
            # never take it back: clear every MALLOC_ variable before each start, or the
            # previous setting leaks into the next run's workers
            for key in [k for k in os.environ if k.startswith("MALLOC_")]:
                del os.environ[key]
            with dask.config.set({"distributed.nanny.pre-spawn-environ": cfg}):
                cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=":0",
                    memory_limit="2GiB",
                )
            try:
                client_boot = None
                with Client(cluster) as client:
                    client_boot = client.run(_boot_malloc_environ)
                    before = client.run(_worker_usage)
                    t0 = time.perf_counter()
                    res = itslive_dask.write_cube(table, str(store), geojson, client=client)
                    elapsed = time.perf_counter() - t0
                    after = client.run(_worker_usage)
            finally:
                cluster.close()
                for key in [k for k in os.environ if k.startswith("MALLOC_")]:
                    del os.environ[key]
            boot = sorted({v for v in (client_boot or {}).values()})
            rows.append(
                {
                    "setting": label,
                    "worker_boot_env": boot[0] if len(boot) == 1 else boot,
                    "repetition": rep,
                    "granules": len(table),
                    "blocks": res.blocks_written,
                    "wall_s": elapsed,
                    "worker_cpu_s": sum(after[w]["cpu_s"] - before[w]["cpu_s"] for w in after),
                    "worker_minor_faults": sum(
                        after[w]["minor_faults"] - before[w]["minor_faults"] for w in after
                    ),
                    "worker_peak_rss_mb": max(after[w]["peak_rss_mb"] for w in after),
                }
            )
            log.info("malloc e2e %s: %s", label, rows[-1])
    return {"rows": rows}


def _main(argv: list[str]) -> None:
    """``python bench_read.py lattice|coldblock|malloc-e2e [--work DIR] [--granules N]``:
    run one of the issue-11 comparisons and print its rows as a markdown table and JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="bench_read.py")
    parser.add_argument("what", choices=["lattice", "coldblock", "malloc-e2e"])
    parser.add_argument("--work", default="/tmp/itslive-bench/work-read")
    parser.add_argument("--granules", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.what == "lattice":
        out = run_lattice(repeat=args.repeat)
    else:
        from bench_common import synthetic_archive

        from itslive_dask.cube.lazy import make_plan
        from itslive_dask.testing.synthetic import get_region

        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        table = synthetic_archive(work / f"archive-{args.granules}", args.granules, seed=0)
        geojson = get_region("svalbard").geojson
        if args.what == "coldblock":
            out = run_cold_block(make_plan(table, geojson), repeat=args.repeat)
        else:
            out = run_malloc_e2e(table, geojson, str(work), repeat=args.repeat)
    rows = out.get("rows")
    if rows:
        print(md_table(rows, list(rows[0])))
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    import sys as _sys

    if len(_sys.argv) == 3 and _sys.argv[1] == "blocks":
        _blocks_main(_sys.argv[2])
    else:
        _main(_sys.argv[1:])


def run_cache_sweep(plan, max_time_blocks: int = 3) -> dict[str, Any]:
    """Hit rate of the per-process geometry cache over the blocks of the first time blocks.

    Blocks are computed in ``block_ids()`` order (time-major, as a single worker meets them
    when tasks are scheduled by key order). With more distinct (tile, source CRS) pairs than
    the cache holds, an LRU sweep over the tiles evicts each entry before its next use.
    """
    from itslive_dask.cube import kernel as B

    _clear_caches(B)
    B.GEOMETRY_CACHE.hits = B.GEOMETRY_CACHE.misses = 0
    t0_block = plan.block_ids()[0][0]
    pairs: set[tuple[int, int, int]] = set()
    n_blocks = 0
    t0 = time.perf_counter()
    for block in plan.block_ids():
        if block[0] - t0_block >= max_time_blocks or not plan.blocks.get(block):
            continue
        cfg, refs, rows, cols, nt = block_inputs(plan, block)
        pairs |= {(block[1], block[2], r.epsg) for _, r in refs if r.epsg != plan.grid.epsg}
        B.read_block(cfg, refs, rows, cols, nt)
        n_blocks += 1
    c = B.GEOMETRY_CACHE
    return {
        "chunks": list(plan.chunks),
        "blocks": n_blocks,
        "distinct_tile_crs_pairs": len(pairs),
        "cache_maxsize": c.maxsize,
        "hits": c.hits,
        "misses": c.misses,
        "hit_rate": c.hits / max(c.hits + c.misses, 1),
        "elapsed_s": time.perf_counter() - t0,
    }
