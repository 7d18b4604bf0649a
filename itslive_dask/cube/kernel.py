"""Block tasks: read the granules of one output block, warp them, return the block.

These functions run on Dask workers. They receive plain, picklable objects (a
:class:`BlockConfig`, the block's granule references and slices) and never touch bytes
themselves: each granule is read through the configured
:class:`~itslive_dask.io.reader.GranuleReader`, and no file handle outlives the task. Per worker process, the source-CRS
coordinates of a target tile (:func:`itslive_dask.cube.reproject.source_geometry`) and the tile's
clip mask are cached, so granules of the same CRS reuse them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from itslive_dask.cache import LRU
from itslive_dask.cube.reproject import (
    Sampler,
    fractional_index,
    rotate,
    source_geometry,
    source_window,
)
from itslive_dask.errors import GranuleError
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.granule.info import CATEGORICAL_VARIABLES
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.io.reader import HeaderRecords, ReaderFactory, default_reader
from itslive_dask.io.urls import redact_url
from itslive_dask.types import GranuleRef

__all__ = [
    "BlockConfig",
    "BlockReport",
    "read_block",
    "read_block_flagged",
    "read_block_with_report",
]

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
    budget
        Seconds one granule may spend on failed attempts and back-off (header and windows
        together), see :class:`~itslive_dask.io.fetch.RetryPolicy`.
    session
        Scope of the per-process byte and header caches: one build never sees bytes cached
        by another (objects can be repaired between a build and its resume).
    reader
        Factory of the :class:`~itslive_dask.io.reader.GranuleReader` that reads each
        granule (a picklable, module-level callable).
    headers
        Where the build keeps granule headers between runs (a
        :class:`~itslive_dask.io.reader.HeaderRecords`, e.g. the output store's
        :class:`~itslive_dask.store.headers.StoreHeaders`); None keeps them per process only.
    keep_chunks
        Keep decoded chunks in the reader's per-process cache for other blocks (readers that
        have a ``keep_chunks`` attribute). False for blocks whose granules no other block
        reads: caching their chunks would only hold memory (320 MiB per worker at most).
    """

    grid: TargetGrid
    variables: tuple[str, ...]
    resampling: str
    region_wkb: bytes = field(repr=False)
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    retries: int = 3
    backoff: float = 0.2
    budget: float = RetryPolicy.budget
    session: str = ""
    reader: ReaderFactory = default_reader
    headers: HeaderRecords | None = None
    keep_chunks: bool = True

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of granule reads."""
        return RetryPolicy(retries=self.retries, backoff=self.backoff, budget=self.budget)


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


def read_block_flagged(
    cfg: BlockConfig,
    refs: tuple[tuple[int, GranuleRef], ...],
    rows: tuple[int, int],
    cols: tuple[int, int],
    nt: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`read_block_with_report`, with the failures as per-layer flags.

    Returns
    -------
    (block, flags)
        The block, and int8 flags of shape ``(nt, 1, 1)``: 1 where a granule failed.
    """
    out, report = _compute(cfg, refs, rows, cols, nt, record=True)
    flags = np.zeros((nt, 1, 1), dtype="int8")
    bad = {f["granule_id"] for f in report.failed}
    for pos, ref in refs:
        if ref.granule_id in bad:
            flags[pos] = 1
    return out, flags


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
                    "url": redact_url(ref.url),
                    "error": exc.problem,
                    "attempts": getattr(exc, "attempts", 1),
                    "seconds": round(float(getattr(exc, "seconds", 0.0)), 3),
                    "block_rows": list(rows),
                    "block_cols": list(cols),
                }
            )
            log.warning("granule failed: %s", exc)
    return out, report


def _warp_granule(cfg, ref, rows_s, cols_s, inside, to_read, dest) -> None:
    """Warp one granule into ``dest`` (nvar, ny, nx) at the flat pixel indices ``inside``."""
    key = (cfg.session, ref.url)
    known = FAILED_CACHE.peek(key)
    if known is not None:  # spent its retry budget in this build and process already
        raise GranuleError(ref.url, f"{known[0]} (not retried in this block)", known[1], 0.0)
    with cfg.reader(ref.url, cfg.storage_options, cfg.policy, cfg.session) as reader:
        if not cfg.keep_chunks and hasattr(reader, "keep_chunks"):
            reader.keep_chunks = False
        used: dict[str, bool] = {}
        try:
            try:
                found = _window(cfg, ref, reader, rows_s, cols_s, inside, to_read, used=used)
            except GranuleError:
                if not used.get("stored"):
                    raise
                # the header kept by an earlier build did not fit the object: read it again
                cfg.headers.discard(ref.url)
                forget = getattr(reader, "forget", None)
                if forget is not None:
                    forget()
                found = _window(cfg, ref, reader, rows_s, cols_s, inside, to_read, used=None)
        except GranuleError as exc:
            exc.attempts = max(
                int(getattr(exc, "attempts", 1)), int(getattr(reader, "attempts", 1))
            )
            exc.seconds = max(
                float(getattr(exc, "seconds", 0.0)), float(getattr(reader, "seconds", 0.0))
            )
            if exc.attempts > 1:  # retried and still failing: other tiles need not wait again
                problem, attempts = exc.problem, exc.attempts
                FAILED_CACHE.get(key, lambda: (problem, attempts))
            raise
    if found is None:
        return
    geom, win, window = found
    sel = inside[win.keep]
    samplers: dict[str, Sampler] = {}  # one per method: the variables share the window
    sampled = {}
    for n in to_read:
        method = "nearest" if n in CATEGORICAL_VARIABLES else cfg.resampling
        if method not in samplers:
            samplers[method] = Sampler(win.fi, win.fj, window[n].shape, method)
        sampled[n] = samplers[method](window[n])
    if "vx" in sampled:
        sampled["vx"], sampled["vy"] = rotate(
            sampled["vx"], sampled["vy"], geom.cos.ravel()[sel], geom.sin.ravel()[sel]
        )
    nvar = dest.shape[0]
    flat = dest.reshape(nvar, -1)
    for k, name in enumerate(cfg.variables):
        flat[k, sel] = sampled[name]


def _window(cfg, ref, reader, rows_s, cols_s, inside, to_read, *, used):
    """``(geometry, source window, decoded window)`` of one granule, or None when the
    block's pixels fall outside it. ``used``: None to ignore kept headers, else a dict in
    which ``"stored"`` tells whether a kept header was used."""
    info = _header(cfg, ref, reader, to_read, used=used)
    if info.epsg != ref.epsg:
        raise GranuleError(
            ref.url, f"file is in EPSG:{info.epsg} but the search table says EPSG:{ref.epsg}"
        )
    geom = _geometry(cfg.grid, (rows_s.start, rows_s.stop), (cols_s.start, cols_s.stop), info.epsg)
    fi = fractional_index(geom.ys.ravel()[inside], info.y)
    fj = fractional_index(geom.xs.ravel()[inside], info.x)
    win = source_window(fi, fj, info.shape, cfg.resampling)
    if win is None:
        return None
    return geom, win, reader.window(info, to_read, win.rows, win.cols)


def _header(cfg, ref, reader, names, *, used):
    """The light header of a granule: from the build's kept records when there is one (no
    request), else from the reader (then kept for later builds when the reader offers a
    record)."""
    headers = cfg.headers
    if headers is not None and used is not None:
        record = headers.get(ref.url)
        adopt = getattr(reader, "adopt", None)
        if record is not None and adopt is not None:
            grid = adopt(record, names)
            if grid is not None:
                used["stored"] = True
                return grid
    info = reader.header(names)
    record = getattr(reader, "record", None)
    if headers is not None and record is not None:
        headers.put(ref.url, record)
    return info


#: (grid, rows, cols, source EPSG) -> SourceGeometry; shared by all tasks of a worker process.
#: 256 MiB holds e.g. 4 source CRSs x 8 tiles of 512 x 512 pixels.
GEOMETRY_CACHE: LRU = LRU(maxsize=4096, maxbytes=256 * 2**20)
#: (grid, rows, cols, region WKB) -> clip mask.
MASK_CACHE: LRU = LRU(maxsize=4096, maxbytes=64 * 2**20)
#: (session, granule URL) -> (problem, attempts): granules that spent their retry budget in this build
#: and process; the other blocks that need them fail at once (the ledger names them in every
#: block, and ``resume`` retries them with a fresh budget).
FAILED_CACHE: LRU = LRU(maxsize=4096)


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
