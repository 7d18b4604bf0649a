"""Block tasks: read the granules of one output block, warp them, return the block.

These functions run on Dask workers. They receive plain, picklable objects (a
:class:`BlockConfig`, the block's granule references and slices), open files only when they
run, and keep no file handle after they return. Per worker process, the source-CRS
coordinates of a target tile (:func:`itslive_dask.cube.reproject.source_geometry`) and the tile's
clip mask are cached, so granules of the same CRS reuse them.
"""

from __future__ import annotations

import io
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from itslive_dask.cube.reproject import fractional_index, rotate, sample, source_geometry
from itslive_dask.errors import GranuleError
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.types import GranuleRef

__all__ = ["BlockConfig", "BlockReport", "read_block", "read_block_with_report"]

log = logging.getLogger(__name__)

VECTOR = ("vx", "vy")


@dataclass(frozen=True)
class BlockConfig:
    """Settings shared by every block task of a cube (placed once in the graph).

    Attributes
    ----------
    grid
        Target grid.
    variables
        Output variables, in the order of the block's first axis.
    resampling
        ``"nearest"`` or ``"bilinear"``.
    region_wkb
        Clip region in the grid's CRS, as WKB.
    storage_options
        fsspec options for reading granules (kept out of ``repr``).
    retries
        Attempts for transient read errors (missing, forbidden and corrupt objects are not
        retried).
    backoff
        First back-off delay in seconds (doubled at each attempt).
    session
        Scope of the per-process byte and header caches: one build never sees bytes cached
        by another (objects can be repaired between a build and its resume).
    """

    grid: TargetGrid
    variables: tuple[str, ...]
    resampling: str
    region_wkb: bytes = field(repr=False)
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    retries: int = 3
    backoff: float = 0.2
    session: str = ""


@dataclass
class BlockReport:
    """What a block task did: granules read and granules that failed (with reasons)."""

    read: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def read_block(
    cfg: BlockConfig,
    refs: tuple[tuple[int, GranuleRef], ...],
    rows: tuple[int, int],
    cols: tuple[int, int],
    nt: int,
) -> np.ndarray:
    """Compute one block, raising :class:`GranuleError` on the first granule that fails.

    Returns
    -------
    numpy.ndarray
        float32 of shape (len(cfg.variables), nt, rows, cols), NaN = no data.
    """
    out, _ = _compute(cfg, refs, rows, cols, nt, record=False)
    return out


def read_block_with_report(
    cfg: BlockConfig,
    refs: tuple[tuple[int, GranuleRef], ...],
    rows: tuple[int, int],
    cols: tuple[int, int],
    nt: int,
) -> tuple[np.ndarray, BlockReport]:
    """Like :func:`read_block`, but granules that fail are recorded, not raised.

    A failed granule leaves its layer NaN in this block and is listed in the report with
    the error and the number of attempts.
    """
    return _compute(cfg, refs, rows, cols, nt, record=True)


def empty_block(nvar: int, nt: int, ny: int, nx: int) -> np.ndarray:
    """A block with no data (cheap fill task for blocks no granule touches)."""
    return np.full((nvar, nt, ny, nx), np.nan, dtype="float32")


def _compute(cfg, refs, rows, cols, nt, *, record):
    rows_s, cols_s = slice(*rows), slice(*cols)
    ny, nx = rows[1] - rows[0], cols[1] - cols[0]
    out = empty_block(len(cfg.variables), nt, ny, nx)
    report = BlockReport()
    mask = _clip_mask(cfg.grid, rows, cols, cfg.region_wkb)
    inside = np.flatnonzero(mask.ravel())
    if inside.size == 0:
        return out, report
    wanted = set(cfg.variables)
    to_read = tuple(sorted(wanted | set(VECTOR))) if wanted & set(VECTOR) else tuple(sorted(wanted))
    for pos, ref in refs:
        try:
            _warp_granule(cfg, ref, rows_s, cols_s, inside, to_read, out[:, pos])
            report.read.append(ref.granule_id)
        except GranuleError as exc:
            if not record:
                raise
            out[:, pos] = np.nan
            report.failed.append(
                {
                    "granule_id": ref.granule_id,
                    "url": ref.url,
                    "error": exc.problem,
                    "attempts": getattr(exc, "attempts", 1),
                    "block_rows": list(rows),
                    "block_cols": list(cols),
                }
            )
            log.warning("granule failed: %s", exc)
    return out, report


def _warp_granule(cfg, ref, rows_s, cols_s, inside, to_read, dest) -> None:
    """Warp one granule into ``dest`` (nvar, ny, nx) at the flat pixel indices ``inside``."""
    from itslive_dask.granule.header import read_info, read_window  # IO stays at the edge

    key = (cfg.session, ref.url)
    data, attempts = BYTES_CACHE.get(
        key, lambda: _fetch(ref.url, cfg.storage_options, cfg.retries, cfg.backoff)
    )
    try:
        import h5py

        try:
            if isinstance(data, bytes):
                h5 = h5py.File(io.BytesIO(data), "r")
            else:  # a local path; no HDF5 file locking (same flags as itslive_dask.granule.header)
                h5 = h5py.File(data, "r", locking=False)
        except OSError as exc:
            raise GranuleError(ref.url, f"not a readable NetCDF4/HDF5 file ({exc})") from None
        with h5:
            info = INFO_CACHE.get(key, lambda: read_info(h5, ref.url))
            if info.epsg != ref.epsg:
                raise GranuleError(
                    ref.url, f"file is in EPSG:{info.epsg} but the search table says EPSG:{ref.epsg}"
                )
            geom = _geometry(cfg.grid, (rows_s.start, rows_s.stop), (cols_s.start, cols_s.stop), info.epsg)
            xs = geom.xs.ravel()[inside]
            ys = geom.ys.ravel()[inside]
            fi = fractional_index(ys, info.y)
            fj = fractional_index(xs, info.x)
            nrow, ncol = info.y.size, info.x.size
            ok = (fi >= -0.5) & (fi <= nrow - 0.5) & (fj >= -0.5) & (fj <= ncol - 0.5)
            if not ok.any():
                return
            sel = inside[ok]
            fi, fj = fi[ok], fj[ok]
            if cfg.resampling == "nearest":
                lo_i, hi_i = np.floor(fi + 0.5), np.floor(fi + 0.5)
                lo_j, hi_j = np.floor(fj + 0.5), np.floor(fj + 0.5)
            else:
                lo_i, hi_i = np.floor(fi), np.floor(fi) + 1
                lo_j, hi_j = np.floor(fj), np.floor(fj) + 1
            r0 = int(max(lo_i.min(), 0))
            r1 = int(min(hi_i.max() + 1, nrow))
            c0 = int(max(lo_j.min(), 0))
            c1 = int(min(hi_j.max() + 1, ncol))
            window = read_window(h5, info, to_read, slice(r0, r1), slice(c0, c1))
    except GranuleError as exc:
        BYTES_CACHE.discard(key)
        INFO_CACHE.discard(key)
        exc.attempts = attempts
        raise
    fi_w, fj_w = fi - r0, fj - c0
    sampled = {name: sample(window[name], fi_w, fj_w, cfg.resampling) for name in to_read}
    if "vx" in sampled:
        sampled["vx"], sampled["vy"] = rotate(
            sampled["vx"], sampled["vy"], geom.cos.ravel()[sel], geom.sin.ravel()[sel]
        )
    nvar = dest.shape[0]
    flat = dest.reshape(nvar, -1)
    for k, name in enumerate(cfg.variables):
        flat[k, sel] = sampled[name]


def _fetch(url: str, storage_options: dict, retries: int, backoff: float):
    """Bytes of a granule in one request, retrying transient errors with back-off.

    Local paths are returned as paths (h5py reads them directly). Missing, forbidden and
    empty objects fail at once; other errors are retried ``retries`` times.
    """
    import os

    import fsspec

    if "://" not in url or url.startswith("file://"):
        path = url[7:] if url.startswith("file://") else url
        if not os.path.exists(path):
            raise GranuleError(url, "file not found")
        return path, 1
    attempt = 0
    while True:
        attempt += 1
        try:
            fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
            data = fs.cat_file(path)
            if not data:
                raise GranuleError(url, "object is empty")
            return data, attempt
        except FileNotFoundError:
            exc = GranuleError(url, "object not found")
            exc.attempts = attempt
            raise exc from None
        except PermissionError:
            exc = GranuleError(url, "access denied (check credentials / requester-pays settings)")
            exc.attempts = attempt
            raise exc from None
        except GranuleError:
            raise
        except Exception as err:  # transient network / server errors
            if attempt > retries:
                exc = GranuleError(url, f"read failed after {attempt} attempts: {type(err).__name__}: {err}")
                exc.attempts = attempt
                raise exc from None
            delay = backoff * 2 ** (attempt - 1)
            log.info("retrying %s in %.1fs after %s", url, delay, type(err).__name__)
            time.sleep(delay)


class _LRU:
    """A tiny per-process LRU cache, bounded by entry count and by bytes."""

    def __init__(self, maxsize: int, maxbytes: int | None = None):
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self.data: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key, make):
        try:
            value = self.data[key]
        except KeyError:
            self.misses += 1
            value = make()
            self.data[key] = value
            self.nbytes += _sizeof(value)
            while self.data and (
                len(self.data) > self.maxsize or (self.maxbytes is not None and self.nbytes > self.maxbytes)
            ):
                _, old = self.data.popitem(last=False)
                self.nbytes -= _sizeof(old)
            return value
        self.hits += 1
        self.data.move_to_end(key)
        return value

    def discard(self, key) -> None:
        value = self.data.pop(key, None)
        if value is not None:
            self.nbytes -= _sizeof(value)

    def clear(self) -> None:
        self.data.clear()
        self.nbytes = 0
        self.hits = self.misses = 0


def _sizeof(value) -> int:
    if isinstance(value, tuple):
        return sum(_sizeof(v) for v in value)
    if isinstance(value, bytes | bytearray):
        return len(value)
    return int(getattr(value, "nbytes", 0))


#: (grid, rows, cols, source EPSG) -> SourceGeometry; shared by all tasks of a worker process.
#: 256 MiB holds e.g. 4 source CRSs x 8 tiles of 512 x 512 pixels.
GEOMETRY_CACHE = _LRU(maxsize=4096, maxbytes=256 * 2**20)
#: (grid, rows, cols, region WKB) -> clip mask.
MASK_CACHE = _LRU(maxsize=4096, maxbytes=64 * 2**20)
#: granule URL -> GranuleInfo (header), so a granule read for several tiles is parsed once.
INFO_CACHE = _LRU(maxsize=1024)
#: granule URL -> (bytes, attempts): a granule spanning several tiles of one time block is
#: usually fetched once per worker (ITS_LIVE granules are a few MB).
BYTES_CACHE = _LRU(maxsize=256, maxbytes=128 * 2**20)


def _geometry(grid: TargetGrid, rows, cols, epsg: int):
    def make():
        x, y = grid.window_coords(slice(*rows), slice(*cols))
        return source_geometry(x, y, grid.epsg, epsg)

    return GEOMETRY_CACHE.get((grid, rows, cols, epsg), make)


def _clip_mask(grid: TargetGrid, rows, cols, region_wkb: bytes) -> np.ndarray:
    def make():
        region = shapely.from_wkb(region_wkb)
        shapely.prepare(region)
        x, y = grid.window_coords(slice(*rows), slice(*cols))
        xx, yy = np.meshgrid(x, y)
        return shapely.intersects_xy(region, xx, yy)  # centre inside or on the boundary

    return MASK_CACHE.get((grid, rows, cols, region_wkb), make)
