"""Benchmark: bytes, requests and time to read an AOI window of realistic granules from S3.

Eight realistic-size synthetic V2 granules (1879 x 2016 px, (640, 2016) row chunks, gzip 2 +
shuffle, ~19 MB each; :class:`itslive_dask.testing.synthetic.SyntheticConfig` with
``size="realistic"``) are served by the local S3 server (moto, in its own process) and read
through the counting proxy (:class:`itslive_dask.testing.s3proxy.S3Proxy`). For square AOIs of
10, 50 and 180 km (in EPSG:3413, centred on the Svalbard region, mapped to each granule's CRS
as the bounding window of its densified outline), each granule's window of the default
variables ``vx, vy, v, v_error`` is read by:

* ``whole``: ``fs.cat_file(path)`` then h5py on the bytes (what the block kernel does today);
* ``ranged cold``: header through :func:`itslive_dask.io.ranged.open_header` (64 KiB block
  cache; object size unknown, so one HEAD), chunk index, then the window's chunks;
* ``ranged warm``: the chunk index already known (cached or stored): only the chunks;
* ``floor``: h5py decoding the same window from the object's bytes already in memory;
* ``ranged decode only``: the range reader on the same bytes in memory (no network).

"Needed" bytes per granule = the stored chunks of the 4 variables that the window touches plus
the HDF5 metadata h5py actually reads to index them (measured by recording its reads). For the
180 km AOI the table also shows a 3 x 3 tiling (what a cube with 60 km tiles does when every
tile reads for itself, with no cache): whole objects once per tile, or each tile's chunks.

Requests and bytes are counted through the proxy; times are measured directly against moto
(no proxy), best of ``repeat``. Nothing here is asserted: figures are printed and written.

Run::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_io.py [--work DIR] [--out DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_common import (  # noqa: E402
    best_of,
    md_table,
    out_dir,
    s3_server_process,
    synthetic_archive,
    upload_table,
    write_result,
)

log = logging.getLogger(__name__)

VARIABLES = ("vx", "vy", "v", "v_error")
AOIS_KM = (10.0, 50.0, 180.0)
N_GRANULES = 8
COLUMNS = [
    "aoi_km",
    "method",
    "granules",
    "fetched_over_needed",
    "requests_per_granule",
    "mb_per_granule",
    "ms_per_granule",
    "x_floor",
]


# ----------------------------------------------------------------------------- geometry
def aoi_window(
    epsg: int, x: np.ndarray, y: np.ndarray, centre_lonlat: tuple[float, float], km: float
) -> tuple[slice, slice] | None:
    """Pixel window (rows, cols) of a ``km`` square AOI (EPSG:3413, centred on
    ``centre_lonlat``) in a granule with pixel-centre coordinates ``x``, ``y``; ``None`` if
    they do not overlap."""
    from pyproj import Transformer

    to_ps = Transformer.from_crs(4326, 3413, always_xy=True)
    cx, cy = to_ps.transform(*centre_lonlat)
    h = km * 500.0
    t = np.linspace(-h, h, 41)
    ring_x = np.concatenate([t, np.full_like(t, h), t[::-1], np.full_like(t, -h)]) + cx
    ring_y = np.concatenate([np.full_like(t, -h), t, np.full_like(t, h), t[::-1]]) + cy
    gx, gy = Transformer.from_crs(3413, epsg, always_xy=True).transform(ring_x, ring_y)
    res = abs(float(x[1] - x[0]))
    cols = np.flatnonzero((x + res / 2 >= gx.min()) & (x - res / 2 <= gx.max()))
    rows = np.flatnonzero((y + res / 2 >= gy.min()) & (y - res / 2 <= gy.max()))
    if cols.size == 0 or rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def split_window(rows: slice, cols: slice, n: int) -> list[tuple[slice, slice]]:
    """``n`` x ``n`` tiles of a window (as a cube's spatial chunks would cut it)."""
    rb = np.linspace(rows.start, rows.stop, n + 1).round().astype(int)
    cb = np.linspace(cols.start, cols.stop, n + 1).round().astype(int)
    return [
        (slice(rb[i], rb[i + 1]), slice(cb[j], cb[j + 1]))
        for i in range(n)
        for j in range(n)
        if rb[i + 1] > rb[i] and cb[j + 1] > cb[j]
    ]


# ----------------------------------------------------------------------------- readers
class _Recorder(io.RawIOBase):
    """A file over bytes that records which byte ranges were read (to measure metadata)."""

    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0
        self.spans: list[tuple[int, int]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = {0: 0, 1: self._pos, 2: len(self._data)}[whence] + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf: Any) -> int:
        mv = memoryview(buf).cast("B")
        chunk = self._data[self._pos : self._pos + len(mv)]
        mv[: len(chunk)] = chunk
        if chunk:
            self.spans.append((self._pos, self._pos + len(chunk)))
        self._pos += len(chunk)
        return len(chunk)


def metadata_bytes(data: bytes, names: tuple[str, ...] = VARIABLES) -> int:
    """Bytes of the file h5py reads to open it and index ``names`` (union of its reads)."""
    import h5py

    from itslive_dask.io.ranged import ChunkIndex, coalesce_ranges

    rec = _Recorder(data)
    with h5py.File(rec, "r") as h5:
        ChunkIndex.from_h5(h5, names)
    return sum(b - a for a, b in coalesce_ranges(rec.spans, max_gap=0))


def granule_facts(table: Any) -> list[dict[str, Any]]:
    """Per granule: EPSG, x, y, the chunk index of the 4 variables and the metadata bytes."""
    import h5py

    from itslive_dask.io.ranged import ChunkIndex

    facts = []
    for url in table["url"]:
        data = Path(url).read_bytes()
        with h5py.File(io.BytesIO(data), "r") as h5:
            facts.append(
                {
                    "url": url,
                    "size": len(data),
                    "epsg": int(h5["mapping"].attrs["spatial_epsg"][0]),
                    "x": h5["x"][()],
                    "y": h5["y"][()],
                    "index": ChunkIndex.from_h5(h5, VARIABLES),
                    "meta": metadata_bytes(data),
                }
            )
    return facts


def read_whole(fs: Any, path: str, rows: slice, cols: slice) -> dict[str, np.ndarray]:
    """Today's kernel: the whole object, then h5py."""
    import h5py

    data = fs.cat_file(path)
    with h5py.File(io.BytesIO(data), "r") as h5:
        return {n: h5[n][rows, cols] for n in VARIABLES}


def read_floor(data: bytes, rows: slice, cols: slice) -> dict[str, np.ndarray]:
    """Decode floor: h5py on bytes already in memory."""
    import h5py

    with h5py.File(io.BytesIO(data), "r") as h5:
        return {n: h5[n][rows, cols] for n in VARIABLES}


def read_cold(fs: Any, path: str, rows: slice, cols: slice) -> dict[str, np.ndarray]:
    """Ranged, first contact: header + index, then the window's chunks."""
    from itslive_dask.io.ranged import ChunkIndex, open_header, read_window_ranged

    with open_header(fs, path) as h5:
        index = ChunkIndex.from_h5(h5, VARIABLES)
    return read_window_ranged(fs, path, index, VARIABLES, rows, cols)


def read_warm(fs: Any, path: str, index: Any, rows: slice, cols: slice) -> dict[str, np.ndarray]:
    """Ranged with a known chunk index: only the window's chunks."""
    from itslive_dask.io.ranged import read_window_ranged

    return read_window_ranged(fs, path, index, VARIABLES, rows, cols)


# ----------------------------------------------------------------------------- benchmark
def run_io(work: Path, *, repeat: int = 3, n_granules: int = N_GRANULES) -> dict[str, Any]:
    """Measure every AOI x method; returns ``{"rows": [...], "header": [...], ...}``."""
    import s3fs

    from itslive_dask.io.ranged import ChunkIndex, open_header
    from itslive_dask.testing.s3proxy import S3Proxy
    from itslive_dask.testing.synthetic import get_region

    t0 = time.perf_counter()
    table = synthetic_archive(
        work / f"archive-realistic-{n_granules}",
        n_granules,
        seed=21,
        size="realistic",
        v1_fraction=0.0,
        outside_fraction=0.0,
    )
    gen_s = time.perf_counter() - t0
    region = get_region("svalbard")
    centre = (region.lon0, region.lat0)
    local = {u: Path(u).read_bytes() for u in table["url"]}
    granules = granule_facts(table)
    import fsspec

    from itslive_dask.io.ranged import INFLATE

    memfs = fsspec.filesystem("memory")
    for k, g in enumerate(granules):
        g["mem"] = f"/bench-io/{k}.nc"
        memfs.pipe_file(g["mem"], local[g["url"]])
    rows_out: list[dict[str, Any]] = []
    header_rows: list[dict[str, Any]] = []
    with s3_server_process() as opts:
        s3table = upload_table(table, opts, bucket="its-live-data")
        for g, url in zip(granules, s3table["url"], strict=True):
            g["path"] = url.removeprefix("s3://")
        direct = s3fs.S3FileSystem(**opts, skip_instance_cache=True)
        with S3Proxy(opts) as proxy:
            counted = proxy.filesystem()
            # header cost by block size (chunk index of the 4 variables)
            for bs in (16 * 1024, 64 * 1024, 256 * 1024):
                proxy.reset_stats()
                for g in granules:
                    with open_header(counted, g["path"], size=g["size"], block_size=bs) as h5:
                        ChunkIndex.from_h5(h5, VARIABLES)
                st = proxy.reset_stats()
                header_rows.append(
                    {
                        "block_kib": bs // 1024,
                        "requests_per_granule": st.requests() / len(granules),
                        "kb_per_granule": st.bytes_out() / len(granules) / 1e3,
                        "metadata_kb_read_by_h5py": np.mean([g["meta"] for g in granules]) / 1e3,
                    }
                )
            for km in AOIS_KM:
                sel = []
                for g in granules:
                    w = aoi_window(g["epsg"], g["x"], g["y"], centre, km)
                    if w is not None:
                        sel.append((g, w))
                n = len(sel)
                needed = sum(g["index"].window_bytes(VARIABLES, *w) + g["meta"] for g, w in sel)
                chunk_bytes = sum(g["index"].window_bytes(VARIABLES, *w) for g, w in sel)
                floor_s = sum(
                    best_of(lambda g=g, w=w: read_floor(local[g["url"]], *w), repeat)[0]
                    for g, w in sel
                )
                methods = {
                    "whole": lambda fs, g, w: read_whole(fs, g["path"], *w),
                    "ranged cold": lambda fs, g, w: read_cold(fs, g["path"], *w),
                    "ranged warm": lambda fs, g, w: read_warm(fs, g["path"], g["index"], *w),
                }
                for name, fn in methods.items():
                    proxy.reset_stats()
                    for g, w in sel:
                        got = fn(counted, g, w)
                        ref = read_floor(local[g["url"]], *w)
                        assert all(np.array_equal(got[v], ref[v]) for v in VARIABLES)
                    st = proxy.reset_stats()
                    secs = sum(
                        best_of(lambda g=g, w=w, fn=fn: fn(direct, g, w), repeat)[0] for g, w in sel
                    )
                    # "needed" for warm reads excludes the metadata (the index is known)
                    base = chunk_bytes if name == "ranged warm" else needed
                    rows_out.append(_row(km, name, n, st, base, secs, floor_s))
                if km == max(AOIS_KM):
                    rows_out += run_tiles(
                        proxy, counted, direct, sel, km, needed, chunk_bytes, floor_s
                    )
                rows_out.append(
                    {
                        "aoi_km": km,
                        "method": "floor (h5py, bytes in memory)",
                        "granules": n,
                        "ms_per_granule": 1e3 * floor_s / max(n, 1),
                        "x_floor": 1.0,
                        "needed_mb_per_granule": needed / max(n, 1) / 1e6,
                    }
                )
                mem_s = sum(
                    best_of(lambda g=g, w=w: read_warm(memfs, g["mem"], g["index"], *w), repeat)[0]
                    for g, w in sel
                )
                rows_out.append(
                    {
                        "aoi_km": km,
                        "method": "ranged decode only (bytes in memory)",
                        "granules": n,
                        "ms_per_granule": 1e3 * mem_s / max(n, 1),
                        "x_floor": mem_s / max(floor_s, 1e-9),
                    }
                )
    return {
        "granules": n_granules,
        "granule_mb": float(np.mean([g["size"] for g in granules]) / 1e6),
        "generate_s": gen_s,
        "variables": list(VARIABLES),
        "repeat": repeat,
        "inflate": INFLATE,
        "rows": rows_out,
        "header": header_rows,
    }


def run_tiles(
    proxy: Any,
    counted: Any,
    direct: Any,
    sel: list,
    km: float,
    needed: int,
    chunk_bytes: int,
    floor_s: float,
) -> list[dict[str, Any]]:
    """3 x 3 tiles of the AOI, tile-major (one block task per tile reading every granule):
    whole objects with the kernel's 128 MiB per-worker file cache, and ranged reads with and
    without a :class:`~itslive_dask.io.ranged.ChunkCache`. Counted through the proxy, timed
    (once) directly against the server."""
    from collections import OrderedDict

    from itslive_dask.io.ranged import ChunkCache, read_window_ranged

    tiles = [split_window(*w, 3) for _, w in sel]
    order = [(k, t) for t in range(9) for k in range(len(sel)) if t < len(tiles[k])]
    rows = []

    def whole_lru(fs: Any, limit: int) -> None:
        import h5py

        lru: OrderedDict[str, bytes] = OrderedDict()
        held = 0
        for k, t in order:
            g = sel[k][0]
            data = lru.pop(g["path"], None)
            if data is None:
                data = fs.cat_file(g["path"])
            else:
                held -= len(data)
            lru[g["path"]] = data
            held += len(data)
            while held > limit and lru:
                held -= len(lru.popitem(last=False)[1])
            with h5py.File(io.BytesIO(data), "r") as h5:
                for v in VARIABLES:
                    h5[v][tiles[k][t]]

    def ranged(fs: Any, cache_bytes: int | None) -> None:
        cache = ChunkCache(cache_bytes) if cache_bytes else None
        for k, t in order:
            g = sel[k][0]
            read_window_ranged(fs, g["path"], g["index"], VARIABLES, *tiles[k][t], cache=cache)

    cases = [
        (
            "whole, 3x3 tiles, 128 MiB file cache (kernel today)",
            lambda fs: whole_lru(fs, 128 * 2**20),
            needed,
        ),
        ("ranged warm, 3x3 tiles, no cache", lambda fs: ranged(fs, None), chunk_bytes),
        (
            "ranged warm, 3x3 tiles, 128 MiB chunk cache",
            lambda fs: ranged(fs, 128 * 2**20),
            chunk_bytes,
        ),
        (
            "ranged warm, 3x3 tiles, 320 MiB chunk cache",
            lambda fs: ranged(fs, 320 * 2**20),
            chunk_bytes,
        ),
    ]
    for name, fn, base in cases:
        proxy.reset_stats()
        fn(counted)
        st = proxy.reset_stats()
        t1 = time.perf_counter()
        fn(direct)
        secs = time.perf_counter() - t1
        rows.append(_row(km, name, len(sel), st, base, secs, floor_s))
    return rows


def _row(
    km: float, method: str, n: int, st: Any, needed: int, secs: float, floor_s: float
) -> dict[str, Any]:
    return {
        "aoi_km": km,
        "method": method,
        "granules": n,
        "fetched_over_needed": st.bytes_out() / max(needed, 1),
        "requests_per_granule": st.requests() / max(n, 1),
        "mb_per_granule": st.bytes_out() / max(n, 1) / 1e6,
        "ms_per_granule": 1e3 * secs / max(n, 1),
        "x_floor": secs / max(floor_s, 1e-9),
        "requests": st.summary(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=None, help="folder of the synthetic archive (reused)")
    ap.add_argument("--out", default=None, help="folder of the JSON result")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import tempfile

    work = Path(args.work or Path(tempfile.gettempdir()) / "itslive-bench-work")
    work.mkdir(parents=True, exist_ok=True)
    res = run_io(work, repeat=args.repeat)
    print(
        f"\n{res['granules']} realistic granules, {res['granule_mb']:.1f} MB each, "
        f"variables {res['variables']}, inflate with {res['inflate']}"
    )
    print(md_table(res["rows"], COLUMNS))
    print("\nheader (chunk index of the 4 variables) by block size")
    print(
        md_table(
            res["header"],
            ["block_kib", "requests_per_granule", "kb_per_granule", "metadata_kb_read_by_h5py"],
        )
    )
    path = write_result(out_dir(args.out), "io", res)
    print(f"\nresult -> {path}")
    return res


if __name__ == "__main__":
    main()
