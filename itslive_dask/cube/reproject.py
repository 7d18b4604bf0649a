"""The warp kernel: one source granule window -> one target tile, with the vector rotation.

Pure numpy (plus pyproj for the coordinate transform); knows nothing about Dask or files.

The vector convention (DESIGN.md): a granule's ``vx``, ``vy`` are ground velocities along its
own grid axes. At every target pixel the source x axis points, in the target grid, in the
direction ``theta`` (found from the local Jacobian of the source -> target transform by a
finite difference). ITS_LIVE grids (UTM, polar stereographic) are conformal, so the source y
axis points at ``theta + 90 deg`` and the vector is rotated by ``theta``::

    vx_t = cos(theta) * vx_s - sin(theta) * vy_s
    vy_t = sin(theta) * vx_s + cos(theta) * vy_s

A rotation keeps the magnitude, so ``hypot(vx_t, vy_t) == hypot(vx_s, vy_s)``. Scalars
(``v``, ``v_error``, chip sizes...) are resampled, never rotated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from itslive_dask.geo.transform import transformer
from itslive_dask.spec import RESAMPLING

__all__ = ["RESAMPLING", "SourceGeometry", "rotate", "sample", "source_geometry"]


#: Step (metres, along the source x axis) of the finite difference that measures the rotation.
_FD_STEP = 10.0


@dataclass(frozen=True)
class SourceGeometry:
    """Where the pixel centres of a target tile fall in one source CRS.

    All arrays have the tile's shape (rows, cols).

    Attributes
    ----------
    xs, ys
        Target pixel centres expressed in the source CRS (float64, metres).
    cos, sin
        Cosine and sine of the angle from the target x axis to the source x axis.
    """

    xs: np.ndarray
    ys: np.ndarray
    cos: np.ndarray
    sin: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.xs.nbytes + self.ys.nbytes + self.cos.nbytes + self.sin.nbytes


def source_geometry(
    x: np.ndarray, y: np.ndarray, target_epsg: int, source_epsg: int
) -> SourceGeometry:
    """Coordinates of target pixel centres in the source CRS, and the local rotation.

    Parameters
    ----------
    x, y
        1-D pixel-centre coordinates of the target tile (columns, rows).
    target_epsg, source_epsg
        EPSG codes of the target grid and of the source granule.
    """
    xx, yy = np.meshgrid(np.asarray(x, "float64"), np.asarray(y, "float64"))
    if target_epsg == source_epsg:
        one = np.ones(xx.shape, "float64")
        return SourceGeometry(xx, yy, one, np.zeros_like(one))
    to_src = transformer(target_epsg, source_epsg)
    xs, ys = to_src.transform(xx, yy)
    # direction of the source x axis in the target grid, from a finite difference
    to_tgt = transformer(source_epsg, target_epsg)
    both_x = np.concatenate([xs.ravel(), xs.ravel() + _FD_STEP])
    both_y = np.concatenate([ys.ravel(), ys.ravel()])
    tx, ty = to_tgt.transform(both_x, both_y)
    n = xs.size
    dx = (tx[n:] - tx[:n]).reshape(xs.shape)
    dy = (ty[n:] - ty[:n]).reshape(xs.shape)
    norm = np.hypot(dx, dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dx / norm
        sin = dy / norm
    bad = ~(np.isfinite(xs) & np.isfinite(ys) & np.isfinite(cos) & np.isfinite(sin))
    if bad.any():
        xs[bad] = np.nan
        ys[bad] = np.nan
        cos[bad] = np.nan
        sin[bad] = np.nan
    return SourceGeometry(np.asarray(xs), np.asarray(ys), cos, sin)


def fractional_index(coord: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Fractional pixel index of ``coord`` on a regular, centre-based 1-D ``axis``."""
    step = axis[1] - axis[0] if axis.size > 1 else 1.0
    return (coord - axis[0]) / step


@dataclass(frozen=True)
class SourceWindow:
    """The part of a granule that a set of target pixels samples.

    Attributes
    ----------
    keep
        Boolean mask over the target pixels: True where the pixel falls on the granule grid.
    rows, cols
        Source index window ``[start, stop)`` holding every pixel the kept targets sample.
    fi, fj
        Fractional row/column indices of the kept targets, relative to the window.
    """

    keep: np.ndarray
    rows: slice
    cols: slice
    fi: np.ndarray
    fj: np.ndarray


def source_window(
    fi: np.ndarray, fj: np.ndarray, shape: tuple[int, int], method: str
) -> SourceWindow | None:
    """The source window that target pixels at fractional indices ``fi``, ``fj`` need.

    Pure index arithmetic: a target is kept when its point lies within the source pixel
    extent (``-0.5 .. n - 0.5``); the window covers the nearest pixel of each kept target
    (``"nearest"``) or its 4 surrounding centres (``"bilinear"``), clipped to the grid.

    Parameters
    ----------
    fi, fj
        Fractional row and column indices (0 = centre of the first pixel).
    shape
        ``(rows, cols)`` of the source grid.
    method
        ``"nearest"`` or ``"bilinear"``.

    Returns
    -------
    SourceWindow or None
        None when no target falls on the source grid.
    """
    nrow, ncol = shape
    keep = (fi >= -0.5) & (fi <= nrow - 0.5) & (fj >= -0.5) & (fj <= ncol - 0.5)
    if not keep.any():
        return None
    fi, fj = fi[keep], fj[keep]
    if method == "nearest":
        lo_i = hi_i = np.floor(fi + 0.5)
        lo_j = hi_j = np.floor(fj + 0.5)
    else:
        lo_i, hi_i = np.floor(fi), np.floor(fi) + 1
        lo_j, hi_j = np.floor(fj), np.floor(fj) + 1
    r0 = int(max(lo_i.min(), 0))
    r1 = int(min(hi_i.max() + 1, nrow))
    c0 = int(max(lo_j.min(), 0))
    c1 = int(min(hi_j.max() + 1, ncol))
    return SourceWindow(keep, slice(r0, r1), slice(c0, c1), fi - r0, fj - c0)


def sample(
    src: np.ndarray, fi: np.ndarray, fj: np.ndarray, method: str = "nearest"
) -> np.ndarray:
    """Resample a 2-D source array at fractional (row ``fi``, column ``fj``) indices.

    Parameters
    ----------
    src
        Source values (float32, NaN = no data), shape (rows, cols).
    fi, fj
        1-D fractional row and column indices (0 = centre of the first pixel).
    method
        ``"nearest"``: the source pixel that contains the point (GDAL's rule).
        ``"bilinear"``: NaN-aware bilinear weights of the 4 surrounding centres, renormalised
        over the valid ones; the point must lie inside the source pixel extent.

    Returns
    -------
    numpy.ndarray
        float32 values, NaN where the point is outside the source or has no data.
    """
    ny, nx = src.shape
    out = np.full(fi.shape, np.nan, dtype="float32")
    if method == "nearest":
        i = np.floor(fi + 0.5)
        j = np.floor(fj + 0.5)
        ok = (i >= 0) & (i < ny) & (j >= 0) & (j < nx)
        out[ok] = src[i[ok].astype(np.intp), j[ok].astype(np.intp)]
        return out
    if method != "bilinear":
        raise ValueError(f"unknown resampling {method!r}; use one of {RESAMPLING}")
    inside = (fi >= -0.5) & (fi <= ny - 0.5) & (fj >= -0.5) & (fj <= nx - 0.5)
    fi_in, fj_in = fi[inside], fj[inside]
    i0 = np.floor(fi_in).astype(np.intp)
    j0 = np.floor(fj_in).astype(np.intp)
    wi = (fi_in - i0).astype("float64")
    wj = (fj_in - j0).astype("float64")
    acc = np.zeros(fi_in.shape, "float64")
    wsum = np.zeros(fi_in.shape, "float64")
    for di, dj, w in (
        (0, 0, (1 - wi) * (1 - wj)),
        (0, 1, (1 - wi) * wj),
        (1, 0, wi * (1 - wj)),
        (1, 1, wi * wj),
    ):
        ii = i0 + di
        jj = j0 + dj
        ok = (ii >= 0) & (ii < ny) & (jj >= 0) & (jj < nx)
        vals = np.full(fi_in.shape, np.nan)
        vals[ok] = src[ii[ok], jj[ok]]
        good = ok & np.isfinite(vals) & (w > 0)
        acc[good] += w[good] * vals[good]
        wsum[good] += w[good]
    with np.errstate(invalid="ignore", divide="ignore"):
        res = np.where(wsum > 0, acc / wsum, np.nan)
    out[inside] = res.astype("float32")
    return out


def rotate(
    vx: np.ndarray, vy: np.ndarray, cos: np.ndarray, sin: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate source-axis components into target-axis components (see module docstring)."""
    c = cos.astype("float64", copy=False)
    s = sin.astype("float64", copy=False)
    vx64 = vx.astype("float64", copy=False)
    vy64 = vy.astype("float64", copy=False)
    return (c * vx64 - s * vy64).astype("float32"), (s * vx64 + c * vy64).astype("float32")
