"""Benchmark 2: the tutorial's eager baseline vs the engine, on the same synthetic archive.

Cases, each run in a fresh Python process (so peak RSS is the case's own), one after the
other:

* ``baseline``: :func:`baseline_load_cube.load_cube` on local files (for S3, the tutorial's
  way: download every granule first, timed separately, then load from disk);
* ``compute``: ``open_cube(table, geometry).compute()`` on a fresh ``LocalCluster`` of 2
  single-threaded worker processes; the whole cube comes back to the driver;
* ``write``: ``write_cube(table, store, geometry, client=...)`` into a local Zarr store, on
  a fresh cluster of the same shape.

Figures per case: wall time (cluster start-up excluded and reported apart), granules/s, the
driver's peak RSS (``VmHWM`` of the case process), each worker's peak RSS (peak RSS
of the worker process, ``VmHWM``, which includes its ~150 MB of imports) and the cube's
shape.

Run one case by hand: ``python benchmarks/bench_e2e.py CASE SPEC.json`` (prints JSON).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def _worker_peaks(client) -> dict[str, int]:
    """Peak RSS (VmHWM) of each worker process, in bytes."""
    from bench_common import peak_rss_self

    return {str(k): int(v) for k, v in client.run(peak_rss_self).items()}


def _worker_rss_now(client) -> dict[str, int]:
    def now() -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    return {str(k): int(v) for k, v in client.run(now).items()}


def _cluster(n_workers: int, memory_limit: str | None, env: dict[str, str] | None = None):
    import dask
    from distributed import Client, LocalCluster

    cfg: dict[str, Any] = {}
    if env:
        base = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
        cfg["distributed.nanny.pre-spawn-environ"] = {**base, **env}
    with dask.config.set(cfg):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            host="127.0.0.1",
            dashboard_address=":0",
        )
    return cluster, Client(cluster)


def _health(client, addresses_before: set[str]) -> dict[str, Any]:
    """Did any worker die or restart? (addresses change on a nanny restart)."""
    after = set(client.scheduler_info()["workers"])
    logs = client.get_worker_logs(n=500)
    bad = ("restart", "exceeded", "killed", "memory limit", "Worker is at")
    flagged = [
        line
        for lines in logs.values()
        for _level, line in lines
        if any(b.lower() in line.lower() for b in bad)
    ]
    return {
        "workers_before": len(addresses_before),
        "workers_after": len(after),
        "workers_replaced": len(addresses_before - after),
        "memory_warnings": len(flagged),
        "memory_warning_samples": flagged[:5],
    }


def case_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The tutorial's eager load (after a download when the granules are on S3)."""
    from baseline_load_cube import download, load_cube

    urls = list(spec["urls"])
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    tmp = None
    if urls and "://" in urls[0]:
        tmp = tempfile.mkdtemp(prefix="itslive-baseline-", dir=spec.get("tmp"))
        paths = download(urls, tmp, spec.get("storage_options"))
        out["download_s"] = time.perf_counter() - t0
    else:
        paths = urls
    t1 = time.perf_counter()
    try:
        cube, stats = load_cube(paths, spec["geojson"])
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    out["load_s"] = time.perf_counter() - t1
    out["elapsed_s"] = time.perf_counter() - t0
    out["stats"] = stats
    out["shape"] = [int(cube.sizes[d]) for d in ("time", "y", "x")] if cube is not None else None
    out["cube_mb"] = cube.nbytes / 2**20 if cube is not None else 0
    return out


def case_compute(spec: dict[str, Any]) -> dict[str, Any]:
    """``open_cube(...).compute()`` on a fresh LocalCluster."""
    import geopandas as gpd

    from itslive_dask.cube.lazy import open_cube

    table = gpd.read_parquet(spec["table"])
    t0 = time.perf_counter()
    cluster, client = _cluster(spec.get("n_workers", 2), spec.get("memory_limit"))
    out: dict[str, Any] = {"cluster_start_s": time.perf_counter() - t0}
    try:
        before = set(client.scheduler_info()["workers"])
        out["worker_rss_idle"] = _worker_rss_now(client)
        t1 = time.perf_counter()
        ds = open_cube(
            table,
            spec["geojson"],
            storage_options=spec.get("storage_options"),
            chunks=spec.get("chunks"),
        )
        out["graph_s"] = time.perf_counter() - t1
        plan = ds.encoding["itslive_dask_plan"]
        out["plan"] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in plan.summary().items()
        }
        t2 = time.perf_counter()
        res = ds.compute()
        out["compute_s"] = time.perf_counter() - t2
        out["elapsed_s"] = time.perf_counter() - t1
        out["shape"] = [int(res.sizes[d]) for d in ("mid_date", "y", "x")]
        out["cube_mb"] = res.nbytes / 2**20
        out["worker_peak_rss"] = _worker_peaks(client)
        out["health"] = _health(client, before)
    finally:
        client.close()
        cluster.close()
    return out


def case_write(spec: dict[str, Any]) -> dict[str, Any]:
    """``write_cube(...)`` to a local Zarr store on a fresh LocalCluster."""
    import geopandas as gpd

    from itslive_dask.store.write import write_cube

    table = gpd.read_parquet(spec["table"])
    store_dir = tempfile.mkdtemp(prefix="itslive-bench-zarr-", dir=spec.get("tmp"))
    store = os.path.join(store_dir, "cube.zarr")
    t0 = time.perf_counter()
    cluster, client = _cluster(
        spec.get("n_workers", 2), spec.get("memory_limit"), spec.get("worker_env")
    )
    out: dict[str, Any] = {
        "cluster_start_s": time.perf_counter() - t0,
        "worker_env": spec.get("worker_env") or {},
    }
    try:
        before = set(client.scheduler_info()["workers"])
        out["worker_rss_idle"] = _worker_rss_now(client)
        t1 = time.perf_counter()
        res = write_cube(
            table,
            store,
            spec["geojson"],
            storage_options=spec.get("storage_options"),
            client=client,
            chunks=spec.get("chunks"),
        )
        out["elapsed_s"] = time.perf_counter() - t1
        out["write_result_elapsed_s"] = res.elapsed
        out["shape"] = list(res.shape)
        out["blocks_written"] = res.blocks_written
        out["granules_read"] = res.granules_read
        out["failed"] = len(res.failed)
        out["peak_worker_rss"] = res.peak_worker_rss
        out["worker_peak_rss"] = _worker_peaks(client)
        out["health"] = _health(client, before)
        out["store_mb"] = (
            sum(f.stat().st_size for f in Path(store).rglob("*") if f.is_file()) / 2**20
        )
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(store_dir, ignore_errors=True)
    return out


CASES = {"baseline": case_baseline, "compute": case_compute, "write": case_write}


def run_case(case: str, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run one case in a fresh interpreter and return its JSON result (plus the driver peak)."""
    spec_path = workdir / f"spec-{case}-{time.time_ns()}.json"
    spec_path.write_text(json.dumps(spec, default=str))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(HERE / "bench_e2e.py"), case, str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    spec_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_e2e(
    n: int = 200,
    *,
    workdir: str | os.PathLike,
    seed: int = 0,
    with_s3: bool = True,
    chunks: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """All cases on local files, then (``with_s3``) on the local S3 server.

    Parameters
    ----------
    n
        Granules in the synthetic archive (Svalbard region: 3 UTM zones + EPSG:3413).
    workdir
        Where the archive, temporary stores and downloads go (reused between runs).
    """
    from bench_common import s3_server_process, synthetic_archive, upload_table

    from itslive_dask.testing.synthetic import get_region

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    table = synthetic_archive(work / f"archive-{n}-{seed}", n, seed=seed)
    geojson = get_region("svalbard").geojson
    rows = []

    def spec_for(tab, storage_options=None) -> dict[str, Any]:
        path = work / f"table-{time.time_ns()}.parquet"
        tab.to_parquet(path)
        return {
            "table": str(path),
            "urls": list(tab["url"]),
            "geojson": geojson,
            "storage_options": storage_options,
            "tmp": str(work),
            "chunks": list(chunks) if chunks else None,
        }

    sources = [("local files", table, None)]
    s3_ctx = s3_server_process() if with_s3 else None
    try:
        if s3_ctx is not None:
            so = s3_ctx.__enter__()
            sources.append(("local S3 (moto)", upload_table(table, so), so))
        for source, tab, so in sources:
            spec = spec_for(tab, so)
            try:
                for case in ("baseline", "compute", "write"):
                    res = run_case(case, spec, work)
                    res.update({"source": source, "case": case, "granules": n})
                    rows.append(res)
                    log.info("e2e %s %s: %.1f s", source, case, res["elapsed_s"])
            finally:
                Path(spec["table"]).unlink(missing_ok=True)
    finally:
        if s3_ctx is not None:
            s3_ctx.__exit__(None, None, None)
    for r in rows:
        base = next(b for b in rows if b["source"] == r["source"] and b["case"] == "baseline")
        r["x_baseline"] = r["elapsed_s"] / base["elapsed_s"]
        r["granules_per_s"] = n / r["elapsed_s"]
        peaks = r.get("worker_peak_rss") or {}
        r["max_worker_peak_mb"] = max(peaks.values()) / 2**20 if peaks else None
        r["driver_peak_mb"] = r["driver_peak_rss"] / 2**20
    return {"granules": n, "epsg_counts": table["epsg"].value_counts().to_dict(), "rows": rows}


E2E_COLUMNS = [
    "source",
    "case",
    "elapsed_s",
    "x_baseline",
    "granules_per_s",
    "driver_peak_mb",
    "max_worker_peak_mb",
    "shape",
]


def _main(argv: list[str]) -> None:
    from bench_common import peak_rss_self

    case, spec_path = argv
    spec = json.loads(Path(spec_path).read_text())
    logging.basicConfig(level=logging.WARNING)
    out = CASES[case](spec)
    out["driver_peak_rss"] = peak_rss_self()
    sys.stdout.write(json.dumps(out, default=str) + "\n")


if __name__ == "__main__":
    _main(sys.argv[1:])
