"""Benchmark: issue 11's "20x faster than the tutorial", on realistic-size granules, end to end.

The archive: ``n`` realistic-size synthetic V2 granules (``SyntheticConfig(size="realistic")``:
1879 x 2016 px at 120 m, full-width (640, 2016) row chunks, gzip 2 + shuffle, ~17 MB each),
Svalbard region (3 UTM zones and EPSG:3413), seed 0, no V1 granule and none outside the
region (what a polygon search returns). Granule ``i`` depends only on ``(seed, i)``, so
:func:`realistic_archive` renders only the granules a folder does not hold yet: the archive
of 128 granules is the first 128 of the archive of 384.

Cases, each in a fresh Python process (``bench_e2e.run_case``: peak RSS = the case's own),
one after the other in the same run:

* **S3** (the granules on the local S3 server, moto in its own process, behind the counting
  proxy :class:`itslive_dask.testing.s3proxy.S3Proxy`):

  - ``tutorial``: the tutorial's way: download every granule, whole objects one after the
    other (``baseline_load_cube.download``, as ``download_velocity_granules`` did), into a
    folder, then the tutorial's eager ``load_cube`` on the folder, then ``to_zarr``;
  - ``engine``: ``write_cube`` straight from the ``s3://`` URLs (the range reader) on a
    fresh ``LocalCluster`` of 2 single-threaded worker processes (cluster start excluded).

* **local files** (both from the same folder of files): ``load_cube`` + ``to_zarr`` vs
  ``write_cube`` from the local paths.

Figures per case: wall time (download, load, write), driver peak RSS (``VmHWM``), worker
peak RSS (``VmHWM``), bytes and requests through the proxy, layers in the cube, and the ratio
tutorial / engine in the same run. Nothing is asserted here (``test_bench_tutorial.py``).

Run::

    PYTHONPATH=$PWD .venv/bin/python -W ignore benchmarks/bench_tutorial.py \
        --work /tmp/itslive-bench/work --out /tmp/itslive-bench/out-tutorial \
        --s3-granules 128 --local-granules 384 [--h5py-baseline]

``--h5py-baseline`` adds a case per local size: the engine with h5py for local files
(the local reader before session 4). ``--s3-catalog`` adds ``engine_catalog`` to the S3 cases:
``write_cube`` from the table of ``build_catalog`` over the same objects (chunk indexes
kept; the catalog's own cost is in the row). ``--again`` adds ``engine_again``: the same cube built
twice on one fresh cluster, timed by its second build (a running cluster, as on a hub). ``--local-readers N`` only compares the two local
readers in one process on N granules, for three chunkings (:func:`local_readers`);
``--floor N`` only measures the decode floor of N granules against the kernel
(:func:`decode_floor`). ``--engine-runs R [--checkouts A,B]`` only times first and second
builds, no tutorial, for each checkout in turn (:func:`engine_runs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The synthetic archive of this benchmark (besides ``n_granules`` and ``seed``).
ARCHIVE_CONFIG: dict[str, Any] = {
    "region": "svalbard",
    "size": "realistic",
    "v1_fraction": 0.0,
    "outside_fraction": 0.0,
}


def _render_one(spec: Any, path: str) -> int:
    """Process-pool task: render one granule to ``path`` (atomically); its size in bytes."""
    from itslive_dask.testing.synthetic.archive import generate_granule

    data = generate_granule(spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.part-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


def incremental_archive(
    dest: str | os.PathLike, n: int, *, seed: int = 0, processes: int = 2, **config: Any
) -> Any:
    """The granule table of the synthetic archive ``SyntheticConfig(n_granules=n, seed=seed,
    **config)`` under ``dest``, rendering only the granules not there yet.

    Granule ``i`` of a synthetic archive depends only on ``(seed, i)`` and the configuration,
    so one folder holds the archives of every ``n`` for one configuration: keep one folder per
    configuration. Files are written atomically (a rename), so an interrupted run leaves no
    partial granule behind.

    Returns
    -------
    geopandas.GeoDataFrame
        The granule table (``url`` = local paths), as :func:`generate_archive` returns it.
    """
    import multiprocessing

    from itslive_dask.table import granule_table
    from itslive_dask.testing.synthetic import SyntheticConfig
    from itslive_dask.testing.synthetic.archive import granule_record
    from itslive_dask.testing.synthetic.specs import make_granule_specs

    dest = Path(dest).resolve()
    config = {"noise_std": 0.0, **config}
    specs = make_granule_specs(SyntheticConfig(n_granules=n, seed=seed, **config))
    missing = [s for s in specs if not (dest / s.key).exists()]
    if missing:
        t0 = time.perf_counter()
        paths = [str(dest / s.key) for s in missing]
        if processes <= 1:
            for spec, path in zip(missing, paths, strict=True):
                _render_one(spec, path)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as ex:
                list(ex.map(_render_one, missing, paths, chunksize=4))
        log.info(
            "rendered %d granules in %.0f s into %s", len(missing), time.perf_counter() - t0, dest
        )
    return granule_table([granule_record(s, str(dest / s.key)) for s in specs])


def realistic_archive(dest: str | os.PathLike, n: int, *, seed: int = 0, processes: int = 2) -> Any:
    """:func:`incremental_archive` of this benchmark's realistic-size granules (:data:`ARCHIVE_CONFIG`)."""
    return incremental_archive(dest, n, seed=seed, processes=processes, **ARCHIVE_CONFIG)


# ----------------------------------------------------------------------------- cases (one process each)
def scheduler_task_counts(client: Any) -> dict[str, int]:
    """Tasks the scheduler has run so far, per task prefix (each run task passes ``processing``)."""

    def counts(dask_scheduler: Any) -> dict[str, int]:
        return {
            k: int(tp.state_counts.get("processing", 0))
            for k, tp in dask_scheduler.task_prefixes.items()
        }

    return client.run_on_scheduler(counts)


def case_tutorial(spec: dict[str, Any]) -> dict[str, Any]:
    """The tutorial end to end: download every granule (if remote), ``load_cube``, ``to_zarr``."""
    import shutil
    import tempfile

    from baseline_load_cube import download, load_cube

    urls = list(spec["urls"])
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    tmp = None
    if urls and "://" in urls[0]:
        tmp = tempfile.mkdtemp(prefix="itslive-tutorial-dl-", dir=spec["tmp"])
        paths = download(urls, tmp, spec.get("storage_options"))
        out["download_s"] = time.perf_counter() - t0
        out["downloaded_mb"] = sum(os.path.getsize(p) for p in paths) / 1e6
    else:
        paths = urls
    store_dir = tempfile.mkdtemp(prefix="itslive-tutorial-zarr-", dir=spec["tmp"])
    try:
        t1 = time.perf_counter()
        cube, stats = load_cube(paths, spec["geojson"])
        out["load_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        if cube is not None:
            cube.to_zarr(os.path.join(store_dir, "cube.zarr"), mode="w", consolidated=False)
        out["to_zarr_s"] = time.perf_counter() - t2
        out["elapsed_s"] = time.perf_counter() - t0
        out["stats"] = stats
        out["layers"] = int(cube.sizes["time"]) if cube is not None else 0
        out["shape"] = (
            [int(cube.sizes[d]) for d in ("time", "y", "x")] if cube is not None else None
        )
        out["cube_mb"] = cube.nbytes / 2**20 if cube is not None else 0.0
        out["store_mb"] = _folder_mb(store_dir)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def case_engine_h5py(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`case_engine` with the reader before session 4 for local files (h5py in place,
    HDF5's zlib, no decoded-chunk cache shared by tiles): the baseline of the local reader."""
    import functools

    from itslive_dask.cube.kernel import BlockConfig
    from itslive_dask.io.reader import whole_object_reader
    from itslive_dask.store import runner

    runner.BlockConfig = functools.partial(BlockConfig, reader=whole_object_reader)  # type: ignore[assignment,misc]
    return case_engine(spec)


def case_engine(spec: dict[str, Any]) -> dict[str, Any]:
    """``write_cube`` from the table's URLs on a fresh ``LocalCluster`` (cluster start excluded)."""
    import shutil
    import tempfile

    import geopandas as gpd
    from bench_e2e import _cluster, _health, _worker_peaks, _worker_rss_now

    from itslive_dask import write_cube

    table = gpd.read_parquet(spec["table"])
    store_dir = tempfile.mkdtemp(prefix="itslive-engine-zarr-", dir=spec["tmp"])
    t0 = time.perf_counter()
    stack = contextlib.ExitStack()
    if spec.get("worker_env") is None:
        # the cluster write_cube itself starts (the package's worker settings, e.g. glibc's
        # malloc behaviour instead of distributed's MALLOC_TRIM_THRESHOLD_)
        from itslive_dask.cluster import dask_client

        client = stack.enter_context(
            dask_client(
                None,
                n_workers=spec.get("n_workers", 2),
                memory_limit=spec.get("memory_limit") or "auto",
            )
        )
        cluster = None
    else:
        cluster, client = _cluster(
            spec.get("n_workers", 2), spec.get("memory_limit"), spec.get("worker_env")
        )
    out: dict[str, Any] = {
        "cluster_start_s": time.perf_counter() - t0,
        "memory_limit": spec.get("memory_limit"),
        "cluster": "package" if cluster is None else "plain LocalCluster",
    }
    try:
        before = set(client.scheduler_info()["workers"])
        out["worker_rss_idle"] = _worker_rss_now(client)
        builds = []
        for k in range(int(spec.get("builds", 1))):  # the same cube again, into a new store
            t1 = time.perf_counter()
            res = write_cube(
                table,
                os.path.join(store_dir, f"cube-{k}.zarr"),
                spec["geojson"],
                storage_options=spec.get("storage_options"),
                client=client,
                chunks=spec.get("chunks"),
                progress=False,
            )
            builds.append(time.perf_counter() - t1)
        out["builds_s"] = builds
        out["elapsed_s"] = builds[-1]
        out["layers"] = int(res.shape[0])
        out["shape"] = list(res.shape)
        out["blocks_written"] = res.blocks_written
        out["granules_read"] = res.granules_read
        out["failed"] = len(res.failed)
        out["tasks"] = scheduler_task_counts(client)
        out["worker_peak_rss"] = _worker_peaks(client)
        out["health"] = _health(client, before)
        out["store_mb"] = _folder_mb(store_dir)
    finally:
        if cluster is None:
            stack.close()
        else:
            client.close()
            try:
                cluster.close(timeout=30)
            except Exception as exc:  # distributed raises bare TimeoutErrors at shutdown
                out["shutdown_error"] = type(exc).__name__
        shutil.rmtree(store_dir, ignore_errors=True)
    return out


def case_engine_again(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`case_engine` building the same cube twice on its cluster; the second build's
    time is the case's (a running cluster, as on a hub: workers that have imported the
    package and a driver that has imported the writer's modules; no cache is shared between
    the builds: each build is its own session)."""
    return case_engine({**spec, "builds": 2})


def case_engine_catalog(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`case_engine` from the table of ``build_catalog`` over the same objects (its
    ``chunk_index`` column: the blocks read no header)."""
    return case_engine({**spec, "table": spec["catalog_table"]})


CASES = {
    "tutorial": case_tutorial,
    "engine": case_engine,
    "engine_h5py": case_engine_h5py,
    "engine_again": case_engine_again,
    "engine_catalog": case_engine_catalog,
}


def _folder_mb(path: str | os.PathLike) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def run_case(
    case: str, spec: dict[str, Any], work: Path, package: str | None = None
) -> dict[str, Any]:
    """Run one case of :data:`CASES` in a fresh interpreter; its JSON result plus its peak RSS.
    ``package``: a checkout whose ``itslive_dask`` the case imports (default: this one's, or
    the ``PYTHONPATH``'s)."""
    import json
    import subprocess
    import sys

    here = Path(__file__).resolve().parent
    spec_path = work / f"spec-{case}-{time.time_ns()}.json"
    spec_path.write_text(json.dumps(spec, default=str))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(here), package or env.get("PYTHONPATH", "")])
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore",
                str(Path(__file__).resolve()),
                "--case",
                case,
                str(spec_path),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    finally:
        spec_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the comparison
def _spec(
    table: Any,
    geojson: dict[str, Any],
    work: Path,
    storage_options: dict[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    path = work / f"tutorial-table-{time.time_ns()}.parquet"
    table.to_parquet(path)
    return {
        "table": str(path),
        "urls": list(table["url"]),
        "geojson": geojson,
        "storage_options": storage_options,
        "tmp": str(work),
        **extra,
    }


def _row(
    source: str, case: str, n: int, r: dict[str, Any], proxy_stats: Any = None
) -> dict[str, Any]:
    peaks = r.get("worker_peak_rss") or {}
    row = {
        "source": source,
        "case": case,
        "granules": n,
        **r,
        "driver_peak_mb": r["driver_peak_rss"] / 2**20,
        "max_worker_peak_mb": max(peaks.values()) / 2**20 if peaks else None,
    }
    if proxy_stats is not None:
        s = proxy_stats.summary()
        row["proxy"] = s
        row["mb_fetched"] = s["bytes_out"] / 1e6
        row["requests"] = s["requests"]
        row["requests_per_granule"] = s["requests"] / max(n, 1)
    return row


def warm_page_cache(urls: list[str]) -> float | None:
    """Read every local file of ``urls`` once (to nowhere) before a case, so that every case
    finds the granules in the page cache, whatever ran before it; seconds taken (None for
    remote URLs, which the local S3 server keeps in memory).

    Without it the case that follows the tutorial was 0.5-2.2 s slower than the same case
    run again (session 7): on this VM the kernel reclaims page-cache pages it finds cold
    (DAMON, ``kdamond``), and the tutorial read its first granules minutes before.
    """
    local = [u for u in urls if "://" not in u]
    if not local:
        return None
    t0 = time.perf_counter()
    for path in local:
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    return time.perf_counter() - t0


def _pair(
    source: str,
    n: int,
    spec: dict[str, Any],
    work: Path,
    proxy: Any = None,
    n_workers: int = 2,
    cases: tuple[str, ...] = ("tutorial", "engine"),
) -> list[dict[str, Any]]:
    """The engine (and any other of ``cases``), then the tutorial, on one spec; rows with the
    ratio of the tutorial's wall time to each.

    The tutorial runs last: a case run right after it was 0.5-2.2 s slower than the same
    case run again, page cache warmed or not (session 7: on this VM a process that follows
    one that held ~5 GB pays for it; the cause was not pinned down), while the tutorial's
    own two minutes do not depend on what ran before them."""
    rows = []
    order = [c for c in cases if c != "tutorial"] + [c for c in cases if c == "tutorial"]
    for case in order:
        warm_s = warm_page_cache(spec["urls"])
        load = [round(v, 2) for v in os.getloadavg()]
        if proxy is not None:
            proxy.reset_stats()
        r = run_case(case, {**spec, "n_workers": n_workers}, work)
        st = proxy.reset_stats() if proxy is not None else None
        row = _row(source, case, n, r, st)
        row["loadavg_before"] = load
        row["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        row["warm_s"] = warm_s
        rows.append(row)
        log.info("%s %s %d: %.1f s (load %s)", source, case, n, r["elapsed_s"], load)
    base = next((r["elapsed_s"] for r in rows if r["case"] == "tutorial"), None)
    for row in rows:
        row["x_faster"] = base / row["elapsed_s"] if base else None
    return rows


def run_comparison(
    work: str | os.PathLike,
    *,
    s3_granules: int = 128,
    local_granules: tuple[int, ...] = (128, 384),
    seed: int = 0,
    n_workers: int = 2,
    local_cases: tuple[str, ...] = ("tutorial", "engine"),
    s3_catalog: bool = False,
) -> dict[str, Any]:
    """The tutorial vs the engine on realistic granules: from the local S3 server (behind the
    counting proxy) at ``s3_granules``, and from local files at each of ``local_granules``
    (the cases ``local_cases``, e.g. with ``"engine_h5py"``: h5py for local files).

    Returns
    -------
    dict
        ``rows``: one per (source, granules, case), in run order; archive facts.
    """
    from bench_common import s3_server_process, upload_table

    from itslive_dask.testing.s3proxy import S3Proxy
    from itslive_dask.testing.synthetic import get_region

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    dest = work / f"realistic-{seed}"
    n_max = max([s3_granules, *local_granules])
    t0 = time.perf_counter()
    realistic_archive(dest, n_max, seed=seed)
    archive_s = time.perf_counter() - t0
    geojson = get_region("svalbard").geojson
    rows: list[dict[str, Any]] = []
    specs: list[Path] = []
    try:
        if s3_granules:
            table = realistic_archive(dest, s3_granules, seed=seed)
            with s3_server_process() as so:
                t1 = time.perf_counter()
                s3table = upload_table(table, so, bucket="its-live-data", root=str(dest))
                upload_s = time.perf_counter() - t1
                with S3Proxy(so) as proxy:
                    spec = _spec(s3table, geojson, work, proxy.storage_options)
                    specs.append(Path(spec["table"]))
                    cases: tuple[str, ...] = ("tutorial", "engine")
                    catalog_cost = None
                    if s3_catalog:  # the same objects through a catalog with chunk indexes
                        from itslive_dask.discovery.catalog import build_catalog

                        proxy.reset_stats()
                        t2 = time.perf_counter()
                        cat = build_catalog(
                            "s3://its-live-data/", storage_options=proxy.storage_options
                        )
                        catalog_cost = {
                            "seconds": time.perf_counter() - t2,
                            **proxy.reset_stats().summary(),
                        }
                        path = work / f"tutorial-catalog-{time.time_ns()}.parquet"
                        cat.to_parquet(path)
                        specs.append(path)
                        spec["catalog_table"] = str(path)
                        cases = (*cases, "engine_catalog")
                    for row in _pair(
                        "local S3 (moto)", s3_granules, spec, work, proxy, n_workers, cases
                    ):
                        row["upload_s"] = upload_s
                        if row["case"] == "engine_catalog":
                            row["catalog"] = catalog_cost
                        rows.append(row)
        for n in local_granules:
            table = realistic_archive(dest, n, seed=seed)
            spec = _spec(table, geojson, work, None)
            specs.append(Path(spec["table"]))
            rows.extend(_pair("local files", n, spec, work, None, n_workers, local_cases))
    finally:
        for p in specs:
            p.unlink(missing_ok=True)
    sizes = [p.stat().st_size for p in dest.rglob("*.nc")]
    decoded = decoded_pixels(realistic_archive(dest, n_max, seed=seed), geojson)
    return {
        "decoded_pixels": decoded,
        "archive": {
            "folder": str(dest),
            "config": {"seed": seed, **ARCHIVE_CONFIG},
            "files_on_disk": len(sizes),
            "mean_granule_mb": sum(sizes) / max(len(sizes), 1) / 1e6,
            "render_s": archive_s,
        },
        "n_workers": n_workers,
        "rows": rows,
    }


def decoded_pixels(table: Any, geojson: dict[str, Any], variables: int = 4) -> dict[str, Any]:
    """Pixels each side must decode per granule (from the files' headers, h5py).

    The tutorial's ``rio.clip`` masks the whole raster (``xds.where``) before cropping: every
    pixel of every 2-D variable is decoded. The engine decodes the stored chunks that the
    region's bounding box touches (rows and columns, in the granule's CRS; one pixel of margin)
    for ``variables`` variables (``vx``'s chunking).
    """
    import h5py
    import numpy as np
    import shapely
    from pyproj import Transformer

    ring = shapely.segmentize(shapely.geometry.shape(geojson), 0.01).exterior.coords
    lon, lat = np.asarray(ring).T
    tut, eng, chunks_touched = [], [], []
    for url, epsg in zip(table["url"], table["epsg"], strict=True):
        with h5py.File(url, "r") as f:
            y, x = f["y"][:], f["x"][:]
            two_d = [k for k in f if isinstance(f[k], h5py.Dataset) and f[k].ndim == 2]
            tut.append(sum(f[k].size for k in two_d))
            cy, cx = f["vx"].chunks or f["vx"].shape
        gx, gy = Transformer.from_crs(4326, int(epsg), always_xy=True).transform(lon, lat)
        res = abs(float(x[1] - x[0]))
        rows = np.nonzero((y >= gy.min() - res) & (y <= gy.max() + res))[0]
        cols = np.nonzero((x >= gx.min() - res) & (x <= gx.max() + res))[0]
        n = len(set(rows // cy)) * len(set(cols // cx)) if len(rows) and len(cols) else 0
        chunks_touched.append(n)
        eng.append(n * cy * cx * variables)
    return {
        "tutorial_mpx_per_granule": float(np.mean(tut)) / 1e6,
        "engine_mpx_per_granule": float(np.mean(eng)) / 1e6,
        "tutorial_over_engine": float(np.sum(tut) / max(np.sum(eng), 1)),
        "chunks_per_variable_histogram": np.bincount(chunks_touched).tolist(),
    }


def profile_engine(
    table: Any, geojson: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """cProfile every block of ``write_cube``'s cube of ``table`` in this one process (the
    block kernel only: no cluster, no Zarr), caches cold at the start as in a fresh worker:
    where the engine's time per granule goes, by stage."""
    import cProfile

    from bench_common import profile_summary
    from bench_read import _STAGES, _clear_caches, run_all_blocks

    from itslive_dask.cube import kernel as B
    from itslive_dask.cube.lazy import make_plan

    stages_of = {
        **_STAGES,
        "header": "header (read_info)",
        "read_window_ranged": "ranged window (fetch + decode)",
        "decode_chunk": "decode_chunk (inflate + unshuffle)",
        "_fetch": "RangeFile._fetch (header GETs)",
    }
    plan = make_plan(table, geojson)
    _clear_caches(B)
    prof = cProfile.Profile()
    extra = {"storage_options": dict(storage_options)} if storage_options else {}
    total, reads = run_all_blocks(plan, prof=prof, **extra)
    summary = profile_summary(prof, total, stages_of)
    return {
        "granules": len(table),
        "granule_block_reads": reads,
        "total_s": total,
        "ms_per_granule_read": 1e3 * total / max(reads, 1),
        "stages_s": summary["stages_s"],
        "stages_pct": summary["stages_pct"],
        "top_self_time": [
            {"function": f, "s": t, "pct": 100 * t / total} for f, t in summary["top_own_s"]
        ],
    }


def decode_floor(table: Any, geojson: dict[str, Any], repeat: int = 3) -> dict[str, Any]:
    """The decode floor of ``write_cube``'s cube of ``table`` against its kernel, per granule.

    The floor: the row chunks the cube needs of each granule's 4 variables (recorded while
    every block runs once in this process), each inflated with the range reader's inflater
    and unshuffled (whole, and only the rows the window needs), best of ``repeat`` per chunk,
    bytes already in memory. The kernel: every block in this process (no cluster, no Zarr),
    caches cold, decoded chunks not kept (as ``write_cube`` runs blocks no other block
    shares), best of ``repeat``.
    """
    import numpy as np
    from bench_read import _clear_caches, run_all_blocks

    from itslive_dask.cube import kernel as B
    from itslive_dask.cube.lazy import make_plan
    from itslive_dask.io import ranged, remote

    plan = make_plan(table, geojson)
    jobs: list[tuple[str, Any, Any, tuple[int, int]]] = []
    original = remote.read_window_ranged

    def spy(fs: Any, path: str, index: Any, names: Any, rows: Any, cols: Any, **kw: Any) -> Any:
        for name in names:
            var = index[name]
            bounds = ranged._window(var.shape, rows, cols)
            for ref in index.window_chunks(name, rows, cols):
                jobs.append((path, var, ref, ranged._chunk_rows(bounds, var, ref)))
        return original(fs, path, index, names, rows, cols, **kw)

    remote.read_window_ranged = spy  # type: ignore[assignment]
    try:
        _clear_caches(B)
        run_all_blocks(plan, keep_chunks=False)
    finally:
        remote.read_window_ranged = original  # type: ignore[assignment]

    def best(fn: Any) -> float:
        out = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            out = min(out, time.perf_counter() - t0)
        return out

    inflate = whole = rows_only = 0.0
    for path, var, ref, rows in jobs:
        with open(path, "rb") as f:
            f.seek(ref.offset)
            raw = f.read(ref.size)
        plain = ranged._inflate_module.decompress(raw)
        dtype = np.dtype(var.dtype)
        inflate += best(lambda raw=raw: ranged._inflate_module.decompress(raw))
        whole += best(lambda plain=plain, dtype=dtype: ranged._unshuffle(plain, dtype.itemsize))
        rows_only += best(
            lambda plain=plain, var=var, dtype=dtype, rows=rows: ranged._unshuffle_rows(
                plain, var, dtype, rows
            )
        )
    kernel = []
    for _ in range(repeat):
        _clear_caches(B)
        total, reads = run_all_blocks(plan, keep_chunks=False)
        kernel.append(1e3 * total / max(reads, 1))
    n = max(len(table), 1)
    floor = 1e3 * (inflate + rows_only) / n
    return {
        "granules": len(table),
        "inflater": ranged.INFLATE,
        "chunks_per_granule": len(jobs) / n,
        "inflate_ms": 1e3 * inflate / n,
        "unshuffle_whole_ms": 1e3 * whole / n,
        "unshuffle_rows_ms": 1e3 * rows_only / n,
        "floor_ms": floor,
        "kernel_ms": min(kernel),
        "kernel_over_floor": min(kernel) / floor,
    }


def local_readers(
    table: Any,
    geojson: dict[str, Any],
    chunkings: tuple[tuple[int, int, int], ...] = ((16, 512, 512), (16, 128, 128), (16, 64, 64)),
    repeat: int = 2,
) -> list[dict[str, Any]]:
    """Local files, one process, caches cold at the start of each run: every block of the
    cube read with h5py in place (:func:`~itslive_dask.io.reader.whole_object_reader`, the
    local reader before session 4) and with the package's default reader
    (:class:`~itslive_dask.io.remote.LocalReader`: the range decoder with its decoded-chunk
    cache), for each chunking (smaller tiles: more tiles share each granule's row chunks).
    Runs alternate between the readers; the best of ``repeat`` is kept."""
    from bench_read import _clear_caches, run_all_blocks

    from itslive_dask.cube import kernel as B
    from itslive_dask.cube.lazy import make_plan
    from itslive_dask.io.reader import default_reader, whole_object_reader

    rows = []
    for chunks in chunkings:
        plan = make_plan(table, geojson, chunks=chunks)
        best: dict[str, float] = {}
        reads = 0
        for _ in range(repeat):
            for name, reader in (
                ("h5py in place", whole_object_reader),
                ("default (LocalReader)", default_reader),
            ):
                _clear_caches(B)
                secs, reads = run_all_blocks(plan, reader=reader)
                best[name] = min(best.get(name, float("inf")), secs)
        for name, secs in best.items():
            rows.append({
                "chunks": "x".join(map(str, chunks)), "reader": name, "blocks": len(plan.blocks),
                "granule_reads": reads, "s": secs, "ms_per_granule_read": 1e3 * secs / max(reads, 1),
                "ms_per_granule": 1e3 * secs / max(len(table), 1),
                "x_faster": best["h5py in place"] / secs,
            })  # fmt: skip
    return rows


def engine_runs(
    work: str | os.PathLike,
    n_granules: int,
    rounds: int,
    checkouts: tuple[str, ...] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """First and second builds only, no tutorial: ``rounds`` rounds, each running for every
    checkout (alternating, so the machine's drift falls on all) a fresh ``engine`` case (the
    first build of a fresh process) and a fresh ``engine_again`` case (a first and a second
    build on one cluster), from the local files of ``n_granules`` realistic granules.

    Returns
    -------
    dict
        ``rows``: per checkout, every first build and every second build, with medians.
    """
    import statistics

    from itslive_dask.testing.synthetic import get_region

    work = Path(work)
    table = realistic_archive(work / f"realistic-{seed}", n_granules, seed=seed)
    spec = _spec(table, get_region("svalbard").geojson, work, None)
    packages = checkouts or ("",)
    first: dict[str, list[float]] = {p: [] for p in packages}
    second: dict[str, list[float]] = {p: [] for p in packages}
    try:
        for _ in range(rounds):
            for package in packages:
                warm_page_cache(spec["urls"])
                one = run_case("engine", spec, work, package or None)
                warm_page_cache(spec["urls"])
                again = run_case("engine_again", spec, work, package or None)
                first[package] += [one["builds_s"][0], again["builds_s"][0]]
                second[package].append(again["builds_s"][1])
                log.info("%s: first %s, second %s", package or "this checkout",
                         first[package][-2:], second[package][-1])  # fmt: skip
    finally:
        Path(spec["table"]).unlink(missing_ok=True)
    rows = [
        {
            "checkout": package or "(PYTHONPATH)",
            "granules": n_granules,
            "first_builds_s": [round(v, 2) for v in first[package]],
            "first_median_s": statistics.median(first[package]),
            "second_builds_s": [round(v, 2) for v in second[package]],
            "second_median_s": statistics.median(second[package]),
        }
        for package in packages
    ]
    return {"rows": rows}


COLUMNS = [
    "source",
    "granules",
    "case",
    "elapsed_s",
    "builds_s",
    "download_s",
    "load_s",
    "to_zarr_s",
    "x_faster",
    "driver_peak_mb",
    "max_worker_peak_mb",
    "mb_fetched",
    "requests_per_granule",
    "layers",
    "loadavg_before",
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: run the comparison, print the table, write ``<out>/tutorial_realistic.json``."""
    import argparse
    import json
    import sys
    import tempfile

    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--case"]:  # one case in this fresh process (run_case)
        from bench_common import peak_rss_self

        logging.basicConfig(level=logging.WARNING)
        spec = json.loads(Path(argv[2]).read_text())
        res = CASES[argv[1]](spec)
        res["driver_peak_rss"] = peak_rss_self()
        sys.stdout.write(json.dumps(res, default=str) + "\n")
        return res
    from bench_common import machine_info, md_table, out_dir, write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--work",
        default=str(Path(tempfile.gettempdir()) / "itslive-bench-work"),
        help="archives (reused)",
    )
    ap.add_argument("--out", default=None, help="folder of the JSON result")
    ap.add_argument(
        "--s3-granules", type=int, default=128, help="granules on the local S3 server (0: skip)"
    )
    ap.add_argument(
        "--local-granules", default="128,384", help="local-file sizes, comma-separated ('' to skip)"
    )
    ap.add_argument(
        "--workers", type=int, default=2, help="engine worker processes (1 thread each)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--h5py-baseline",
        action="store_true",
        help="also run the engine with h5py for local files (the reader before session 4)",
    )
    ap.add_argument(
        "--s3-catalog",
        action="store_true",
        help="also build from the S3 objects through build_catalog's table (engine_catalog)",
    )
    ap.add_argument(
        "--again",
        action="store_true",
        help="also build the cube twice on one cluster (engine_again: the second build's time)",
    )
    ap.add_argument(
        "--local-readers",
        type=int,
        default=0,
        help="only compare the local readers (h5py vs default) on N local granules, one process",
    )
    ap.add_argument(
        "--floor",
        type=int,
        default=0,
        help="only measure the decode floor against the kernel on N local granules, one process",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        help="only cProfile the blocks of N local granules in one process",
    )
    ap.add_argument(
        "--engine-runs",
        type=int,
        default=0,
        help="only time first and second builds (no tutorial): R rounds on the local granules "
        "of --local-granules (the first size), each checkout of --checkouts in turn",
    )
    ap.add_argument(
        "--checkouts",
        default="",
        help="comma-separated package checkouts for --engine-runs (default: the PYTHONPATH's)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("distributed", "botocore", "s3fs", "aiobotocore", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    start = machine_info()
    # the one-process modes: option -> (function of (table, geojson), result name)
    modes = {
        "local_readers": (lambda t, g: {"rows": local_readers(t, g)}, "local_readers"),
        "floor": (decode_floor, "decode_floor"),
        "profile": (profile_engine, "tutorial_profile"),
    }
    for option, (measure, name) in modes.items():
        n = getattr(args, option)
        if not n:
            continue
        from itslive_dask.testing.synthetic import get_region

        table = realistic_archive(Path(args.work) / f"realistic-{args.seed}", n, seed=args.seed)
        found = measure(table, get_region("svalbard").geojson)
        found["machine_start"] = start
        if option == "local_readers":
            print(md_table(found["rows"], list(found["rows"][0])))
        else:
            print(json.dumps(found, indent=1))
        print(f"result -> {write_result(out_dir(args.out), name, found)}")
        return found
    if args.engine_runs:
        n = int(args.local_granules.split(",")[0])
        checkouts = tuple(c for c in args.checkouts.split(",") if c)
        found = engine_runs(args.work, n, args.engine_runs, checkouts, seed=args.seed)
        found["machine_start"] = start
        print(md_table(found["rows"], list(found["rows"][0])))
        print(f"result -> {write_result(out_dir(args.out), 'engine_runs', found)}")
        return found
    res = run_comparison(
        args.work,
        s3_granules=args.s3_granules,
        s3_catalog=args.s3_catalog,
        seed=args.seed,
        n_workers=args.workers,
        local_granules=tuple(int(n) for n in args.local_granules.split(",") if n.strip()),
        local_cases=(
            "tutorial",
            "engine",
            *(("engine_h5py",) if args.h5py_baseline else ()),
            *(("engine_again",) if args.again else ()),
        ),
    )
    res["machine_start"] = start
    print(
        f"\n{res['archive']['files_on_disk']} realistic granules on disk, {res['archive']['mean_granule_mb']:.1f} MB each"
    )
    print(md_table(res["rows"], COLUMNS))
    print(f"decoded pixels per granule: {json.dumps(res['decoded_pixels'])}")
    path = write_result(out_dir(args.out), "tutorial_realistic", res)
    print(f"\nresult -> {path}")
    return res


if __name__ == "__main__":
    main()
