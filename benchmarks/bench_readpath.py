"""Benchmark: the read path end to end, ``write_cube`` with the range reader vs whole objects.

Realistic-size synthetic V2 granules (``SyntheticConfig(size="realistic")``: 1879 x 2016 px,
(640, 2016) row chunks, gzip 2 + shuffle, ~17 MB each; the same archive as ``bench_io.py``,
generated once into the work folder and reused) are uploaded to the local S3 server (moto, in
its own process) and read through the counting proxy
(:class:`itslive_dask.testing.s3proxy.S3Proxy`). For square AOIs of 10, 50 and 180 km
(EPSG:3413, centred on the Svalbard region) a cube (EPSG:3413, 120 m, default variables and
chunks) is written with :func:`itslive_dask.write_cube` on a fresh ``LocalCluster`` of 2
single-threaded worker processes, once per reader:

* ``ranged``: the package's default reader for remote granules
  (:class:`itslive_dask.io.remote.RangedReader`);
* ``catalog``: the same reader, given the table of :func:`itslive_dask.discovery.build_catalog`
  run over the bucket (through the proxy, counted once per run as ``catalog_requests``):
  its ``chunk_index`` column spares the blocks every header read;
* ``whole``: :func:`itslive_dask.io.reader.whole_object_reader` (one GET of the whole object,
  then h5py), selected by giving the block configuration ``reader=`` for the duration of the
  build (:func:`builds_with`: a benchmark-only switch, the package has no public one).

``--latency S`` makes the proxy hold every request ``S`` seconds before forwarding it, an
object store's time to first byte (concurrent requests wait together, as on S3): moto on
127.0.0.1 answers in about a millisecond, S3 in the same region in 10-50 ms.

Per build: bytes fetched / bytes needed ("needed" as in ``bench_io.py``: the stored chunks of
the 4 variables that the AOI's bounding window touches in each granule's CRS, plus the HDF5
metadata h5py reads to index them), requests per granule, wall time of ``write_cube``
(cluster start excluded) and the peak RSS of each worker (``VmHWM``). Then, on the same
store: a resume of the finished build (``mode="resume"``, counted through the proxy) and, for
the ``ranged`` reader, a resume after deleting one block's marker (only that block re-reads).
The two readers' cubes are compared value for value.

``run_tutorial`` runs the tutorial's eager ``load_cube`` (``baseline_load_cube.py``) against
``write_cube`` on ``n`` default-size synthetic granules from local files, each in its own
process (``bench_e2e.run_case``).

Nothing is asserted here; ``test_bench_readpath.py`` checks counts, never times.

Run::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_readpath.py [--work DIR] [--out DIR]
        [--granules 8] [--repeat 1] [--aois 10,50,180] [--workers 2]
        [--readers ranged,catalog,whole]
        [--tutorial-granules 384] [--skip-readers] [--profile-tutorial] [--scan 48]
        [--scaling 50,100,200,384 --plot FILE.png]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_common import (  # noqa: E402
    md_table,
    out_dir,
    peak_rss_self,
    profile_summary,
    s3_server_process,
    synthetic_archive,
    upload_table,
    write_result,
)
from bench_io import VARIABLES, aoi_window, granule_facts  # noqa: E402

log = logging.getLogger(__name__)

AOIS_KM = (10.0, 50.0, 180.0)
READERS = ("ranged", "catalog", "whole")
COLUMNS = [
    "aoi_km",
    "latency_s",
    "reader",
    "workers",
    "granules",
    "blocks",
    "fetched_over_needed",
    "requests_per_granule",
    "header_requests_per_granule",
    "mb_per_granule",
    "write_s",
    "max_worker_peak_mb",
    "resume_requests",
    "resume_mb",
    "partial_resume_requests_per_granule",
    "partial_resume_mb",
]
TUTORIAL_COLUMNS = [
    "case",
    "granules",
    "elapsed_s",
    "x_baseline",
    "driver_peak_mb",
    "max_worker_peak_mb",
    "shape",
]


# ----------------------------------------------------------------------------- helpers
def aoi_geojson(centre_lonlat: tuple[float, float], km: float) -> dict[str, Any]:
    """A ``km`` square (EPSG:3413) centred on ``centre_lonlat``, as a lon/lat GeoJSON polygon
    (edges densified so it stays the square after projection)."""
    from pyproj import Transformer

    cx, cy = Transformer.from_crs(4326, 3413, always_xy=True).transform(*centre_lonlat)
    h = km * 500.0
    t = np.linspace(-h, h, 21)
    rx = np.concatenate([t, np.full_like(t, h), t[::-1], np.full_like(t, -h)]) + cx
    ry = np.concatenate([np.full_like(t, -h), t, np.full_like(t, h), t[::-1]]) + cy
    lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(rx, ry)
    ring = [(float(a), float(b)) for a, b in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def relocate(table: Any, dest: Path) -> Any:
    """The table with its ``url`` column pointing into ``dest`` (an archive copied or moved
    from elsewhere keeps the absolute paths of where it was generated)."""
    out = table.copy()
    urls = []
    for u in out["url"]:
        p = Path(u)
        if not p.exists():
            rel = u[u.index("velocity_image_pair") :]
            p = dest / rel
        urls.append(str(p))
    out["url"] = urls
    return out


#: The builds this benchmark compares: reader name -> fields of the block configuration.
BUILDS: dict[str, dict[str, str | int]] = {
    "ranged": {},  # the package's defaults
    # the package's defaults, from a catalog that keeps each granule's chunk index
    # (build_catalog's chunk_index column): no header read in the blocks
    "catalog": {},
    "whole": {"reader": "whole_object_reader"},  # one GET of each whole object, then h5py
}


@contextlib.contextmanager
def builds_with(name: str) -> Iterator[None]:
    """Make the ``write_cube`` builds started in this block use :data:`BUILDS` ``[name]``.

    The store runner builds its :class:`~itslive_dask.cube.kernel.BlockConfig` by name; for the
    duration of the block that name gives the fields of ``name`` (e.g.
    ``reader=whole_object_reader``). The configuration is pickled to the workers with them,
    so nothing needs patching there.
    """
    from itslive_dask.cube.kernel import BlockConfig
    from itslive_dask.io import reader as readers
    from itslive_dask.store import runner

    fields = {k: getattr(readers, v) if k == "reader" else v for k, v in BUILDS[name].items()}
    known = {f.name for f in dataclasses.fields(BlockConfig)}
    if not set(fields) <= known:  # pragma: no cover
        raise RuntimeError(f"BlockConfig has no field {sorted(set(fields) - known)}")
    original = runner.BlockConfig
    if fields:
        runner.BlockConfig = functools.partial(BlockConfig, **fields)  # type: ignore[assignment]
    try:
        yield
    finally:
        runner.BlockConfig = original


def _cluster(n_workers: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=None,
        host="127.0.0.1",
        dashboard_address=":0",
    )
    return cluster, Client(cluster)


def needed_bytes(
    facts: list[dict[str, Any]], centre: tuple[float, float], km: float
) -> tuple[int, int, int]:
    """(granules touched, chunk bytes, chunk + metadata bytes) of a ``km`` AOI."""
    n = chunks = meta = 0
    for g in facts:
        w = aoi_window(g["epsg"], g["x"], g["y"], centre, km)
        if w is None:
            continue
        n += 1
        chunks += g["index"].window_bytes(VARIABLES, *w)
        meta += g["meta"]
    return n, chunks, chunks + meta


def _drop_one_marker(store: str) -> str | None:
    """Delete the marker of the middle block (by name order); its name, or None."""
    markers = sorted(Path(store).glob("_itslive/blocks/*.json"))
    if not markers:
        return None
    victim = markers[len(markers) // 2]
    victim.unlink()
    return victim.name


# ----------------------------------------------------------------------------- benchmark
def build_once(
    table: Any,
    geojson: dict[str, Any],
    reader: str,
    proxy: Any,
    work: Path,
    *,
    n_workers: int,
    partial: bool,
    chunk_offsets: dict[str, set[int]] | None = None,
) -> dict[str, Any]:
    """One ``write_cube`` on a fresh cluster, its resume(s); counts through the proxy.
    ``chunk_offsets`` (file name -> offsets of its chunks of the cube's variables) counts
    the build's GETs that start at a chunk (``chunk_gets``; the others read metadata)."""
    import xarray as xr

    from itslive_dask import write_cube

    store_dir = tempfile.mkdtemp(prefix=f"readpath-{reader}-", dir=work)
    store = os.path.join(store_dir, "cube.zarr")
    opts = proxy.storage_options
    out: dict[str, Any] = {"reader": reader}
    t0 = time.perf_counter()
    cluster, client = _cluster(n_workers)
    out["cluster_start_s"] = time.perf_counter() - t0
    try:
        with builds_with(reader):
            proxy.reset_stats()
            t1 = time.perf_counter()
            res = write_cube(
                table,
                store,
                geojson,
                crs=3413,
                resolution=120.0,
                storage_options=opts,
                client=client,
            )
            out["write_s"] = time.perf_counter() - t1
            st = proxy.reset_stats()
            out["chunk_gets"] = _chunk_gets(st, chunk_offsets or {})
            out["worker_peak_rss"] = {str(k): int(v) for k, v in client.run(peak_rss_self).items()}
            out.update(
                shape=list(res.shape),
                blocks=res.blocks_written,
                granules_read=res.granules_read,
                failed=len(res.failed),
                build=st.summary(),
            )
            # a resume of the finished build: nothing to redo, nothing to read
            res2 = write_cube(table, store, mode="resume", storage_options=opts, client=client)
            st2 = proxy.reset_stats()
            out["resume"] = {"blocks_written": res2.blocks_written, **st2.summary()}
            if partial:
                dropped = _drop_one_marker(store)
                res3 = write_cube(table, store, mode="resume", storage_options=opts, client=client)
                st3 = proxy.reset_stats()
                out["partial_resume"] = {
                    "dropped_marker": dropped,
                    "blocks_written": res3.blocks_written,
                    "granules_read": res3.granules_read,
                    **st3.summary(),
                }
        with xr.open_zarr(store, consolidated=False) as ds:
            out["cube"] = {v: ds[v].load().values for v in VARIABLES if v in ds}
    finally:
        _close(client, cluster, out)
        shutil.rmtree(store_dir, ignore_errors=True)
    return out


def _chunk_gets(stats: Any, chunk_offsets: dict[str, set[int]]) -> int:
    """Ranged GETs of ``stats`` that start at a chunk of the cube's variables."""
    n = 0
    for rec in stats.select(method="GET"):
        start = rec.range.removeprefix("bytes=").split("-", 1)[0]
        offsets = chunk_offsets.get(rec.key.rsplit("/", 1)[-1], ())
        n += bool(start.isdigit() and int(start) in offsets)
    return n


def _close(client: Any, cluster: Any, out: dict[str, Any]) -> None:
    """Close a cluster; a worker that does not exit in time is recorded, not raised (the
    nanny kills it after its timeout)."""
    t0 = time.perf_counter()
    client.close()
    try:
        cluster.close(timeout=30)
    except Exception as exc:  # distributed raises bare TimeoutErrors here
        out["shutdown_error"] = type(exc).__name__
    out["shutdown_s"] = time.perf_counter() - t0


def run_readpath(
    work: str | os.PathLike,
    *,
    n_granules: int = 8,
    aois_km: tuple[float, ...] = AOIS_KM,
    readers: tuple[str, ...] = READERS,
    repeat: int = 1,
    n_workers: int = 2,
    latency: float = 0.0,
) -> dict[str, Any]:
    """Every AOI x reader (readers alternate within an AOI; ``repeat`` rounds); ``latency``
    seconds added to every request by the proxy."""
    from itslive_dask.testing.s3proxy import S3Proxy
    from itslive_dask.testing.synthetic import get_region

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    dest = work / f"archive-realistic-{n_granules}"
    t0 = time.perf_counter()
    # same settings as bench_io.py, so the two benchmarks read the same archive
    table = synthetic_archive(
        dest, n_granules, seed=21, size="realistic", v1_fraction=0.0, outside_fraction=0.0
    )
    table = relocate(table, dest.resolve())
    gen_s = time.perf_counter() - t0
    facts = granule_facts(table)
    offsets = {
        Path(g["url"]).name: {r.offset for v in g["index"].variables for r in v.refs} for g in facts
    }
    region = get_region("svalbard")
    centre = (region.lon0, region.lat0)
    rows: list[dict[str, Any]] = []
    mismatches: list[str] = []
    catalog_stats: dict[str, Any] | None = None
    with s3_server_process() as so:
        s3table = upload_table(table, so, bucket="its-live-data")
        with S3Proxy(so, latency=latency) as proxy:
            tables = {name: s3table for name in readers}
            if "catalog" in readers:
                from itslive_dask.discovery.catalog import build_catalog

                proxy.reset_stats()
                tables["catalog"] = build_catalog(
                    "s3://its-live-data/", storage_options=proxy.storage_options
                )
                catalog_stats = proxy.reset_stats().summary()
                catalog_stats["granules"] = len(tables["catalog"])
            for rnd in range(repeat):
                for km in aois_km:
                    n, chunk_b, need_b = needed_bytes(facts, centre, km)
                    geo = aoi_geojson(centre, km)
                    order = readers if rnd % 2 == 0 else tuple(reversed(readers))
                    cubes: dict[str, dict[str, np.ndarray]] = {}
                    for reader in order:
                        r = build_once(
                            tables[reader],
                            geo,
                            reader,
                            proxy,
                            work,
                            n_workers=n_workers,
                            partial=reader == "ranged",
                            chunk_offsets=offsets,
                        )
                        cubes[reader] = r.pop("cube")
                        b = r["build"]
                        peaks = r["worker_peak_rss"]
                        row = {
                            "round": rnd,
                            "aoi_km": km,
                            "latency_s": latency,
                            "workers": n_workers,
                            "granules": n,
                            "needed_mb": need_b / 1e6,
                            "needed_chunks_mb": chunk_b / 1e6,
                            "fetched_over_needed": b["bytes_out"] / max(need_b, 1),
                            "requests_per_granule": b["requests"] / max(n, 1),
                            "header_requests_per_granule": None
                            if reader == "whole"
                            else (b["requests"] - r["chunk_gets"]) / max(n, 1),
                            "mb_per_granule": b["bytes_out"] / max(n, 1) / 1e6,
                            "max_worker_peak_mb": max(peaks.values()) / 2**20 if peaks else None,
                            "resume_requests": r["resume"]["requests"],
                            "resume_mb": r["resume"]["bytes_out"] / 1e6,
                            **r,
                        }
                        if "partial_resume" in r:
                            pr = r["partial_resume"]
                            row["partial_resume_requests_per_granule"] = pr["requests"] / max(
                                pr["granules_read"], 1
                            )
                            row["partial_resume_mb"] = pr["bytes_out"] / 1e6
                        rows.append(row)
                        log.info(
                            "readpath %s km %s: %.1fx, %.1f req/granule, %.1f s",
                            km,
                            reader,
                            row["fetched_over_needed"],
                            row["requests_per_granule"],
                            row["write_s"],
                        )
                    first, *others = cubes.values()
                    for name, other in zip(order[1:], others, strict=True):
                        for v in first:
                            if not np.array_equal(first[v], other[v], equal_nan=True):
                                mismatches.append(f"{km} km {v}: {order[0]} vs {name}")
    return {
        "granules": n_granules,
        "granule_mb": float(np.mean([g["size"] for g in facts]) / 1e6),
        "archive_s": gen_s,
        "variables": list(VARIABLES),
        "n_workers": n_workers,
        "rows": rows,
        "reader_mismatches": mismatches,
        "catalog": catalog_stats,
    }


def run_scan(
    work: str | os.PathLike,
    *,
    n_granules: int = 48,
    latency: float = 0.02,
    processes: tuple[int | None, ...] = (0, 2, 8, None),
) -> dict[str, Any]:
    """``scan_headers`` (what ``build_catalog`` and planning from URLs run) over ``n_granules``
    realistic granules on the local S3 server, through the proxy holding every request
    ``latency`` seconds: 16 threads (``processes=0``) against worker processes and the
    automatic choice (``None``). Each row: wall time, requests, the most requests in flight
    at once; the results are compared."""
    from itslive_dask.io.listing import scan_headers
    from itslive_dask.testing.s3proxy import S3Proxy

    work = Path(work)
    dest = work / f"archive-realistic-{n_granules}"
    table = synthetic_archive(
        dest, n_granules, seed=21, size="realistic", v1_fraction=0.0, outside_fraction=0.0
    )
    table = relocate(table, dest.resolve())
    rows: list[dict[str, Any]] = []
    same = True
    with s3_server_process() as so:
        s3table = upload_table(table, so, bucket="its-live-data")
        urls = list(s3table["url"])
        with S3Proxy(so, latency=latency) as proxy:
            first = None
            for p in processes:
                proxy.reset_stats()
                t0 = time.perf_counter()
                scan = scan_headers(urls, proxy.storage_options, processes=p)
                wall = time.perf_counter() - t0
                st = proxy.reset_stats()
                rows.append(
                    {
                        "processes": "auto" if p is None else p,
                        "latency_s": latency,
                        "granules": len(scan.infos),
                        "failures": len(scan.failures),
                        "scan_s": wall,
                        "requests_per_granule": st.requests() / max(len(urls), 1),
                        "max_in_flight": st.max_keys_in_flight(),
                    }
                )
                log.info("scan %s processes: %.2f s", p, wall)
                if first is None:
                    first = scan.records
                same = same and scan.records == first
    return {"rows": rows, "same_records": same}


def run_tutorial(work: str | os.PathLike, n: int = 384, *, seed: int = 0) -> dict[str, Any]:
    """The tutorial's eager ``load_cube`` vs ``write_cube`` on ``n`` default-size synthetic
    granules (local files; each case in a fresh process, 2 worker processes for the engine)."""
    from bench_e2e import run_case

    from itslive_dask.testing.synthetic import get_region

    work = Path(work)
    t0 = time.perf_counter()
    table = synthetic_archive(work / f"archive-{n}-{seed}", n, seed=seed)
    gen_s = time.perf_counter() - t0
    path = work / f"tutorial-table-{time.time_ns()}.parquet"
    table.to_parquet(path)
    spec = {
        "table": str(path),
        "urls": list(table["url"]),
        "geojson": get_region("svalbard").geojson,
        "storage_options": None,
        "tmp": str(work),
        "chunks": None,
    }
    rows = []
    try:
        for case in ("baseline", "write"):
            r = run_case(case, spec, work)
            r.update(case=case, granules=n)
            rows.append(r)
            log.info("tutorial %s: %.1f s", case, r["elapsed_s"])
    finally:
        path.unlink(missing_ok=True)
    base = rows[0]["elapsed_s"]
    for r in rows:
        r["x_baseline"] = r["elapsed_s"] / base
        r["driver_peak_mb"] = r["driver_peak_rss"] / 2**20
        peaks = r.get("worker_peak_rss") or {}
        r["max_worker_peak_mb"] = max(peaks.values()) / 2**20 if peaks else None
    return {"granules": n, "archive_s": gen_s, "rows": rows}


def run_scaling(
    work: str | os.PathLike, sizes: tuple[int, ...] = (50, 100, 200, 384)
) -> dict[str, Any]:
    """:func:`run_tutorial` at each size: wall time and peak memory versus granules."""
    rows = []
    for n in sizes:
        for r in run_tutorial(work, n)["rows"]:
            rows.append({k: r.get(k) for k in TUTORIAL_COLUMNS})
    return {"rows": rows}


def plot_scaling(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Two panels: wall time and peak RSS versus granules, baseline vs ``write_cube``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for case, label, style in (
        ("baseline", "tutorial load_cube (1 process)", "o-"),
        ("write", "write_cube (2 workers)", "s-"),
    ):
        rs = sorted((r for r in rows if r["case"] == case), key=lambda r: r["granules"])
        n = [r["granules"] for r in rs]
        ax1.plot(n, [r["elapsed_s"] for r in rs], style, label=label)
        mem = [
            r["driver_peak_mb"]
            if case == "baseline"
            else max(r["driver_peak_mb"], r["max_worker_peak_mb"] or 0)
            for r in rs
        ]
        ax2.plot(
            n, mem, style, label=label + (" driver" if case == "baseline" else ", largest process")
        )
    ax1.set(
        xlabel="granules in the archive",
        ylabel="wall time (s)",
        title="Time (one run, shared 2 cores)",
    )
    ax2.set(
        xlabel="granules in the archive", ylabel="peak RSS (MB)", title="Peak memory of one process"
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def profile_blocks(work: str | os.PathLike, n: int = 384, *, seed: int = 0) -> dict[str, Any]:
    """cProfile every block of the tutorial-size cube in this one process (caches cold at the
    start, as in a fresh worker): where ``write_cube``'s worker time goes, per stage."""
    import cProfile

    from bench_read import _STAGES, _clear_caches, run_all_blocks

    from itslive_dask.cube import kernel as B
    from itslive_dask.cube.lazy import make_plan
    from itslive_dask.testing.synthetic import get_region

    table = synthetic_archive(Path(work) / f"archive-{n}-{seed}", n, seed=seed)
    plan = make_plan(table, get_region("svalbard").geojson)
    stages_of = {**_STAGES, "header": "header (read_info)", "window": "window (decode)"}
    _clear_caches(B)
    prof = cProfile.Profile()
    total, reads = run_all_blocks(plan, prof=prof)
    prof_sum = profile_summary(prof, total, stages_of)
    return {
        "granules": n,
        "granule_block_reads": reads,
        "total_s": total,
        "ms_per_granule_read": 1e3 * total / max(reads, 1),
        "stages_s": prof_sum["stages_s"],
        "stages_pct": prof_sum["stages_pct"],
        "top_self_time": [
            {"function": f, "s": t, "pct": 100 * t / total} for f, t in prof_sum["top_own_s"]
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=None, help="folder of the synthetic archives (reused)")
    ap.add_argument("--out", default=None, help="folder of the JSON result")
    ap.add_argument("--granules", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="rounds (reader order alternates)")
    ap.add_argument("--aois", default="10,50,180", help="AOI sizes in km, comma-separated")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument(
        "--readers",
        default=",".join(READERS),
        help=f"builds, comma-separated, of {', '.join(BUILDS)}",
    )
    ap.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the proxy holds every request (time to first byte)",
    )
    ap.add_argument(
        "--tutorial-granules",
        type=int,
        default=0,
        help="also run load_cube vs write_cube at this size",
    )
    ap.add_argument("--skip-readers", action="store_true", help="only the tutorial comparison")
    ap.add_argument(
        "--scan",
        type=int,
        default=0,
        help="also time scan_headers on N granules: threads vs processes (at --latency)",
    )
    ap.add_argument(
        "--scaling", default="", help="load_cube vs write_cube at these sizes, e.g. 50,100,200,384"
    )
    ap.add_argument(
        "--plot", default=None, help="PNG of the --scaling figures (time and memory vs granules)"
    )
    ap.add_argument(
        "--profile-tutorial",
        action="store_true",
        help="cProfile the tutorial-size cube's blocks in one process",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("distributed", "botocore", "s3fs", "aiobotocore", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from bench_common import machine_info

    work = Path(args.work or Path(tempfile.gettempdir()) / "itslive-bench-work")
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"machine_start": machine_info()}
    if not args.skip_readers:
        res["readpath"] = run_readpath(
            work,
            n_granules=args.granules,
            repeat=args.repeat,
            n_workers=args.workers,
            aois_km=tuple(float(a) for a in args.aois.split(",")),
            readers=tuple(args.readers.split(",")),
            latency=args.latency,
        )
        rp = res["readpath"]
        print(
            f"\n{rp['granules']} realistic granules, {rp['granule_mb']:.1f} MB each; reader mismatches: {rp['reader_mismatches']}"
        )
        print(md_table(rp["rows"], COLUMNS))
    if args.scan:
        res["scan"] = run_scan(work, n_granules=args.scan, latency=args.latency)
        print(md_table(res["scan"]["rows"], list(res["scan"]["rows"][0])))
        print(f"same records: {res['scan']['same_records']}")
    if args.tutorial_granules:
        res["tutorial"] = run_tutorial(work, args.tutorial_granules)
        print(md_table(res["tutorial"]["rows"], TUTORIAL_COLUMNS))
    if args.scaling:
        res["scaling"] = run_scaling(work, tuple(int(n) for n in args.scaling.split(",")))
        print(md_table(res["scaling"]["rows"], TUTORIAL_COLUMNS))
        if args.plot:
            print(f"plot -> {plot_scaling(res['scaling']['rows'], args.plot)}")
    if args.profile_tutorial:
        import json

        res["profile"] = profile_blocks(work, args.tutorial_granules or 384)
        print(json.dumps(res["profile"], indent=1))
    path = write_result(out_dir(args.out), "readpath", res)
    print(f"\nresult -> {path}")
    return res


if __name__ == "__main__":
    main()
