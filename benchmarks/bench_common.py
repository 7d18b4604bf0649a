"""Shared helpers of the benchmarks: output folder, machine facts, timers, synthetic tables.

Nothing here measures anything by itself. Results are plain dicts written as JSON to a folder
given by ``--out`` (``benchmarks/run.py``) or the ``ITSLIVE_BENCH_OUT`` environment variable
(default: a fresh folder under the system temp dir), never into the repository.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Environment variable naming the folder benchmark results go to.
OUT_ENV = "ITSLIVE_BENCH_OUT"

#: Pine Island Glacier area (the tutorial's region), lon/lat box.
PIG_BBOX: tuple[float, float, float, float] = (-102.5, -75.5, -99.0, -74.7)
#: A wider box around it (~250 km across): the region of the table benchmarks.
WIDE_BBOX: tuple[float, float, float, float] = (-105.0, -76.0, -96.0, -74.0)


def out_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder results are written to (created if needed).

    Parameters
    ----------
    path
        Explicit folder; else ``$ITSLIVE_BENCH_OUT``; else a new folder in the temp dir.
    """
    chosen = path or os.environ.get(OUT_ENV)
    if chosen:
        p = Path(chosen).expanduser().resolve()
    else:
        p = Path(tempfile.mkdtemp(prefix="itslive-bench-"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def machine_info() -> dict[str, Any]:
    """Facts that make a figure interpretable: date, CPU, core count, library versions."""
    import dask
    import distributed
    import h5py
    import pyproj
    import zarr

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "zarr": zarr.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "pyproj": pyproj.__version__,
        "openblas_env": {
            k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
        },
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "argv": " ".join(sys.argv),
        "git": _git_state(),
        "package_path": _package_path(),
    }


def _git_state() -> dict[str, Any]:
    """Commit of the repository and whether the package has uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "itslive_dask"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"head": head, "package_dirty": bool(dirty)}


def _package_path() -> str:
    """Folder the measured ``itslive_dask`` was imported from (a snapshot via PYTHONPATH)."""
    import itslive_dask

    return str(Path(itslive_dask.__file__).resolve().parent)


def write_result(out: Path, name: str, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (plus machine facts) as ``<out>/<name>.json`` and return the path."""
    doc = {"benchmark": name, "machine": machine_info(), **payload}
    path = out / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=_json_default))
    log.info("wrote %s", path)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


@contextmanager
def timed(store: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the ``with`` body to ``store[key]`` (seconds)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def best_of(fn, repeat: int = 3) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` calls of ``fn()`` and the last result."""
    best = float("inf")
    res = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def peak_rss_self() -> int:
    """Peak resident memory of this process so far, in bytes.

    Read from ``VmHWM`` in ``/proc/self/status``: ``ru_maxrss`` is not reset by ``exec``, so
    in a freshly spawned interpreter it can report its parent's peak instead of its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def current_rss() -> int:
    """Current resident memory of this process in bytes (from /proc; 0 if unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class RssSampler:
    """Sample this process's RSS in a thread; ``peak`` is the largest value seen (bytes).

    ``ru_maxrss`` is a lifetime high-water mark; the sampler gives the peak of one phase
    (``peak - start`` = what the phase added).
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.start = current_rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())


def synthetic_table(
    n: int,
    *,
    seed: int = 0,
    bbox: tuple[float, float, float, float] = WIDE_BBOX,
    footprint_km: tuple[float, float] = (60.0, 185.0),
    polar_fraction: float = 0.6,
    start: str = "2013-01-01",
    years: float = 8.0,
):
    """A granule table of ``n`` made-up granules with random footprints around ``bbox``.

    No file exists behind it: the table is for planning and graph benchmarks. Footprints are
    squares of random size in ``footprint_km`` (in EPSG:3031) centred at random points of the
    box grown by half the largest footprint, so some granules miss the region; ``epsg`` is
    3031 for ``polar_fraction`` of them, else one of two UTM south zones.

    Returns
    -------
    geopandas.GeoDataFrame
        A validated granule table (see :mod:`itslive_dask.table`).
    """
    import geopandas as gpd
    import shapely
    from pyproj import Transformer

    from itslive_dask.table import granule_table

    rng = np.random.default_rng(seed)
    to_ps = Transformer.from_crs(4326, 3031, always_xy=True)
    lon0, lat0, lon1, lat1 = bbox
    lons = np.array([lon0, lon1, lon1, lon0])
    lats = np.array([lat0, lat0, lat1, lat1])
    xs, ys = to_ps.transform(lons, lats)
    grow = max(footprint_km) * 500.0
    cx = rng.uniform(min(xs) - grow, max(xs) + grow, n)
    cy = rng.uniform(min(ys) - grow, max(ys) + grow, n)
    half = rng.uniform(*footprint_km, n) * 500.0
    boxes = shapely.box(cx - half, cy - half, cx + half, cy + half)
    foot = gpd.GeoSeries(boxes, crs=3031).to_crs(4326).values
    t0 = np.datetime64(start, "ns")
    span_ns = int(years * 365.25 * 86400e9)
    dt_days = rng.choice([16.0, 32.0, 48.0, 96.0, 176.0, 352.0], n)
    img1 = t0 + rng.integers(0, span_ns, n).astype("timedelta64[ns]")
    img2 = img1 + (dt_days * 86400e9).astype("timedelta64[ns]")
    mid = img1 + (img2 - img1) // 2
    epsg = np.where(rng.random(n) < polar_fraction, 3031, rng.choice([32713, 32714], n))
    sat = rng.choice(["LC08", "LC09", "S2A", "S2B"], n)
    sensor = np.where(np.char.startswith(sat.astype(str), "LC"), "landsat", "sentinel2")
    records = (
        {
            "granule_id": f"SYN_{i:07d}_G0120V02_P{int(pv):03d}",
            "url": f"s3://bench-bucket/velocity_image_pair/synthetic/SYN_{i:07d}_G0120V02.nc",
            "https_url": "",
            "mid_date": mid[i],
            "acquisition_date_img1": img1[i],
            "acquisition_date_img2": img2[i],
            "date_dt": dt_days[i],
            "satellite_img1": sat[i],
            "satellite_img2": sat[i],
            "sensor": sensor[i],
            "epsg": int(epsg[i]),
            "percent_valid": float(pv),
            "version": 2,
            "resolution": 120.0,
            "geometry": foot[i],
        }
        for i, pv in enumerate(rng.uniform(10, 100, n))
    )
    return granule_table(records)


def fmt_bytes(n: float | None) -> str:
    """Human-readable MiB."""
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def md_table(rows: list[Mapping[str, Any]], columns: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``columns`` (floats to 3 significant digits)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- archives


def synthetic_archive(
    dest: str | os.PathLike, n: int, *, seed: int = 0, region: str = "svalbard", **config: Any
):
    """A local synthetic archive of ``n`` granules under ``dest`` (reused if already there).

    Returns
    -------
    geopandas.GeoDataFrame
        Its granule table (``url`` = local paths).
    """
    from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive, read_catalog

    dest = str(Path(dest).resolve())
    marker = Path(dest) / ".bench-config.json"
    want = json.dumps(
        {"n": n, "seed": seed, "region": region, **config}, sort_keys=True, default=str
    )
    if marker.exists() and marker.read_text() == want:
        return read_catalog(dest)
    t0 = time.perf_counter()
    table = generate_archive(
        dest,
        SyntheticConfig(region=region, n_granules=n, seed=seed, noise_std=0.0, **config),
        processes=True,
        max_workers=os.cpu_count() or 2,
    )
    marker.write_text(want)
    log.info("generated %d granules in %.0f s", n, time.perf_counter() - t0)
    return table


def replicate_table(table, dest: str | os.PathLike, copies: int):
    """``copies`` copies of every granule file (hard links where possible) as new granules.

    Copy ``k`` of a granule lives at ``<dest>/copy<k>/<file name>`` and gets the id
    ``<granule_id>_c<k>``; its dates are those of the original shifted by ``k`` hours so the
    time axis keeps one layer per file. Used to reach thousands of granules without
    rendering each one (reading and warping costs are per file, whatever its content).
    """
    import pandas as pd

    from itslive_dask.table import validate_granule_table

    dest = Path(dest)
    frames = []
    for k in range(copies):
        sub = dest / f"copy{k}"
        sub.mkdir(parents=True, exist_ok=True)
        part = table.copy()
        urls = []
        for url in table["url"]:
            target = sub / Path(url).name
            if not target.exists():
                try:
                    os.link(url, target)
                except OSError:
                    import shutil

                    shutil.copyfile(url, target)
            urls.append(str(target))
        part["url"] = urls
        part["granule_id"] = [f"{g}_c{k}" for g in table["granule_id"]]
        shift = pd.Timedelta(hours=k)
        for col in ("mid_date", "acquisition_date_img1", "acquisition_date_img2"):
            part[col] = part[col] + shift
        frames.append(part)
    import geopandas as gpd

    return validate_granule_table(
        gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=table.crs)
    )


_S3_CHILD = r"""
import json, sys, logging
from itslive_dask.testing.local_s3 import LocalS3
s3 = LocalS3().start()
sys.stdout.write(json.dumps(s3.storage_options) + "\n")
sys.stdout.flush()
sys.stdin.read()  # serve until the parent closes our stdin
s3.stop()
"""


@contextmanager
def s3_server_process() -> Iterator[dict[str, Any]]:
    """Run :class:`itslive_dask.testing.local_s3.LocalS3` (moto on 127.0.0.1) in its own process.

    Its CPU and memory then do not count against the process being measured. Yields the
    storage options (endpoint and fake credentials; never printed).
    """
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-c", _S3_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError("the local S3 server process did not start")
        yield json.loads(line)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def upload_table(
    table, storage_options: dict[str, Any], bucket: str = "its-live-data", root: str | None = None
):
    """Upload a local archive's granules to S3 (same relative keys); the table with s3:// URLs."""
    import s3fs

    fs = s3fs.S3FileSystem(**storage_options, skip_instance_cache=True)
    if not fs.exists(bucket):
        fs.call_s3("create_bucket", Bucket=bucket)
        fs.invalidate_cache()
    root = root or os.path.commonpath(list(table["url"]))
    out = table.copy()
    urls = []
    for url in table["url"]:
        key = f"{bucket}/{os.path.relpath(url, root)}"
        fs.put_file(url, key)
        urls.append(f"s3://{key}")
    out["url"] = urls
    return out


def profile_summary(
    prof: Any, total: float, stages_of: Mapping[str, str], top: int = 12
) -> dict[str, Any]:
    """Seconds per named stage (cumulative time of the functions in ``stages_of``) and the
    ``top`` functions by own time, from a :class:`cProfile.Profile`."""
    import pstats

    st = pstats.Stats(prof)
    stages: dict[str, float] = {}
    for (_file, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if func in stages_of:
            stages[stages_of[func]] = stages.get(stages_of[func], 0.0) + ct
    ranked = sorted(
        (
            (f"{func} ({file.rsplit('/', 1)[-1]}:{line})", tt)
            for (file, line, func), (_cc, _nc, tt, _ct, _c) in st.stats.items()
        ),  # type: ignore[attr-defined]
        key=lambda kv: -kv[1],
    )[:top]
    return {
        "stages_s": stages,
        "stages_pct": {k: 100 * v / total for k, v in stages.items()} if total else {},
        "top_own_s": ranked,
    }
