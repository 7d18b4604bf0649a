"""Rendering a granule's arrays from its spec (numpy only; no file format).

The time-independent truth is computed once per (region, CRS, resolution) on a canvas of
aligned pixel centres, tile by tile where granules need it, and cached; each granule cuts its
window out of the canvas and scales it by the time factor of its mid_date. Values are
computed pointwise, so they do not depend on the canvas extent or on the order of requests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from itslive_dask.testing.synthetic._proj import proj, transformer
from itslive_dask.testing.synthetic.field import (
    SPEED_MAX,
    Region,
    ground_velocity_en,
    rotate_en_to_grid,
    time_factor,
)
from itslive_dask.testing.synthetic.specs import ALIGNMENT, GranuleSpec

__all__ = ["Canvas", "GranuleArrays", "canvas", "render_granule"]

FILL_INT16 = -32767
_TILE = 64

#: Modelled displacement error (m) of one image pair, per sensor family (hyp3 uses 25.5 m
#: for optical pairs); the velocity error is this / date_dt * 365.
_DISPLACEMENT_ERROR_M = {"landsat": 25.5, "sentinel2": 25.5, "sentinel1": 10.0}


class Canvas:
    """Time-independent truth (2015-01-01) along one CRS's axes on its aligned pixel lattice.

    The lattice is infinite and indexed by integer (row, col) with pixel centres at
    ``x = ax + res * col`` and ``y = ay - res * row`` (``ax``, ``ay``: the production
    alignment). Values are computed on demand in square tiles and cached; a window is
    assembled from its tiles. Each value is computed pointwise, so it does not depend on
    which tiles were computed before.
    """

    def __init__(self, region: Region, epsg: int, resolution: float, tile: int = _TILE):
        self.region = region
        self.epsg = int(epsg)
        self.resolution = float(resolution)
        self.tile = int(tile)
        self.ax, self.ay = ALIGNMENT[self.resolution]
        self._tiles: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def index(self, x0: float, y0: float) -> tuple[int, int]:
        """(row, col) lattice index of the pixel centred at (x0, y0)."""
        return round((self.ay - y0) / self.resolution), round((x0 - self.ax) / self.resolution)

    def window(self, row0: int, col0: int, ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
        """(vx, vy) float64 arrays of the ``ny`` x ``nx`` window whose top-left is (row0, col0)."""
        t = self.tile
        trs = range(row0 // t, (row0 + ny - 1) // t + 1)
        tcs = range(col0 // t, (col0 + nx - 1) // t + 1)
        needed = [(i, j) for i in trs for j in tcs]
        with self._lock:  # one thread computes missing tiles, the others reuse them
            missing = [k for k in needed if k not in self._tiles]
            if missing:
                self._compute(missing)
            tiles = {k: self._tiles[k] for k in needed}
        vx = np.empty((ny, nx), dtype="float64")
        vy = np.empty((ny, nx), dtype="float64")
        for (i, j), (tvx, tvy) in tiles.items():
            r0, r1 = max(row0, i * t), min(row0 + ny, (i + 1) * t)
            c0, c1 = max(col0, j * t), min(col0 + nx, (j + 1) * t)
            src = (slice(r0 - i * t, r1 - i * t), slice(c0 - j * t, c1 - j * t))
            dst = (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
            vx[dst] = tvx[src]
            vy[dst] = tvy[src]
        return vx, vy

    def _compute(self, keys: list[tuple[int, int]]) -> None:
        t, res = self.tile, self.resolution
        k = np.arange(t, dtype="float64")
        xs = np.concatenate(
            [np.broadcast_to(self.ax + res * (j * t + k)[None, :], (t, t)) for _, j in keys]
        )
        ys = np.concatenate(
            [np.broadcast_to(self.ay - res * (i * t + k)[:, None], (t, t)) for i, _ in keys]
        )
        lon, lat = transformer(self.epsg, 4326).transform(xs, ys, errcheck=True)
        ve, vn = ground_velocity_en(lon, lat, self.region, None)
        gamma = proj(self.epsg).get_factors(lon, lat, errcheck=True).meridian_convergence
        vx, vy = rotate_en_to_grid(ve, vn, gamma)
        for n, key in enumerate(keys):
            a, b = vx[n * t : (n + 1) * t], vy[n * t : (n + 1) * t]
            a.setflags(write=False)
            b.setflags(write=False)
            self._tiles[key] = (a, b)

    @property
    def n_tiles(self) -> int:
        """How many tiles have been computed."""
        return len(self._tiles)


_canvases: dict[tuple, Canvas] = {}
_canvases_guard = threading.Lock()


def canvas(region: Region, epsg: int, resolution: float) -> Canvas:
    """The shared truth canvas of ``region`` in ``EPSG:<epsg>`` at ``resolution`` metres."""
    key = (region, int(epsg), float(resolution))
    with _canvases_guard:
        cv = _canvases.get(key)
        if cv is None:
            if len(_canvases) >= 32:  # bound memory across many configurations
                _canvases.clear()
            cv = _canvases[key] = Canvas(region, epsg, resolution)
        return cv


@dataclass(frozen=True)
class GranuleArrays:
    """The decoded content of one synthetic granule (int arrays as stored, fill included)."""

    x: np.ndarray
    y: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    v: np.ndarray
    v_error: np.ndarray | None
    chip_size_width: np.ndarray
    chip_size_height: np.ndarray
    interp_mask: np.ndarray
    valid: np.ndarray
    error_modeled: float


def render_granule(spec: GranuleSpec) -> GranuleArrays:
    """Compute a granule's stored arrays: the truth at its mid_date on its own grid axes,
    plus optional noise, rounded to int16 with fill -32767 where there is no data."""
    cv = canvas(spec.region, spec.epsg, spec.resolution)
    row0, col0 = cv.index(spec.x0, spec.y0)
    bvx, bvy = cv.window(row0, col0, spec.ny, spec.nx)
    factor = float(time_factor(np.datetime64(spec.mid_date, "ns")))
    vx = bvx * factor
    vy = bvy * factor
    rng = np.random.default_rng(spec.seed)
    if spec.noise_std > 0:
        vx = vx + rng.normal(0.0, spec.noise_std, vx.shape)
        vy = vy + rng.normal(0.0, spec.noise_std, vy.shape)
    speed = np.hypot(vx, vy)
    valid = spec.valid_mask()
    invalid = ~valid

    def q16(a: np.ndarray) -> np.ndarray:
        out = np.rint(np.clip(a, -32766, 32767)).astype("int16")
        out[invalid] = FILL_INT16
        return out

    err_mod = _DISPLACEMENT_ERROR_M[spec.sensor] / max(spec.date_dt, 1e-3) * 365.0
    v_error = None
    if spec.version >= 2:
        err = err_mod * (0.8 + 0.4 * np.minimum(speed, SPEED_MAX) / SPEED_MAX)
        if spec.realistic:  # production errors vary pixel to pixel (they do not compress away)
            err = np.abs(err + rng.normal(0.0, spec.noise_std, err.shape))
        v_error = q16(err)
    if spec.realistic:
        chip, interp = _realistic_chip_and_interp(rng, speed)
    else:
        chip = np.where(speed > 1500.0, 480, 240).astype("uint16")
        interp = np.zeros(valid.shape, dtype="uint8")
    chip[invalid] = 0
    return GranuleArrays(
        x=spec.x,
        y=spec.y,
        vx=q16(vx),
        vy=q16(vy),
        v=q16(speed),
        v_error=v_error,
        chip_size_width=chip,
        chip_size_height=chip.copy(),
        interp_mask=interp,
        valid=valid,
        error_modeled=round(err_mod, 1),
    )


def _realistic_chip_and_interp(
    rng: np.random.Generator, speed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chip sizes (m) that vary pixel to pixel among 240/480/960, larger where ice is fast,
    and an interpolation mask with ~3% interpolated pixels: the variety real granules have."""
    u = rng.random(speed.shape)
    fast = np.minimum(speed, SPEED_MAX) / SPEED_MAX
    chip = np.where(u < 0.6 - 0.4 * fast, 240, np.where(u < 0.9, 480, 960)).astype("uint16")
    interp = (rng.random(speed.shape) < 0.03).astype("uint8")
    return chip, interp
