"""The target grid of a cube and its tiling into chunks.

A :class:`TargetGrid` is north-up, square-pixelled and aligned with the ITS_LIVE production
grid: at 120 m, pixel centres sit at x = 52.5 and y = 67.5 (mod 120) metres, so a cube built
here lines up pixel for pixel with the published datacubes. Other resolutions keep the same
anchor (centres at ``anchor + k * resolution``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from pyproj import CRS

from itslive_dask.errors import InvalidInputError

__all__ = ["PRODUCTION_ANCHOR", "TargetGrid"]

#: (x, y) of a pixel centre of the ITS_LIVE production grid, in metres (mod the resolution).
PRODUCTION_ANCHOR: tuple[float, float] = (52.5, 67.5)


@dataclass(frozen=True)
class TargetGrid:
    """A north-up grid of pixel centres in a projected CRS.

    Attributes
    ----------
    epsg
        EPSG code of the grid's CRS (ITS_LIVE grids all have one).
    resolution
        Pixel size in metres (square pixels).
    x0
        x of the centre of the first (western-most) column.
    y0
        y of the centre of the first (northern-most) row.
    width, height
        Number of columns and rows.
    """

    epsg: int
    resolution: float
    x0: float
    y0: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise InvalidInputError(
                f"grid must have at least one pixel, got {self.height}x{self.width}"
            )
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise InvalidInputError(
                f"resolution must be a positive number of metres, got {self.resolution}"
            )

    @classmethod
    def from_bounds(
        cls,
        bounds: tuple[float, float, float, float],
        crs: Any,
        resolution: float = 120.0,
        anchor: tuple[float, float] = PRODUCTION_ANCHOR,
    ) -> TargetGrid:
        """Smallest anchored grid whose pixels cover ``bounds`` = (xmin, ymin, xmax, ymax).

        Parameters
        ----------
        bounds
            Extent in the units of ``crs`` (metres).
        crs
            Anything :func:`pyproj.CRS.from_user_input` takes, with an EPSG code.
        resolution
            Pixel size in metres.
        anchor
            A pixel centre (x, y) modulo ``resolution``; the production grid's by default.
        """
        epsg = _epsg_of(crs)
        try:
            res = float(resolution)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"resolution must be a number of metres, got {resolution!r}"
            ) from None
        if not (res > 0 and math.isfinite(res)):
            raise InvalidInputError(
                f"resolution must be a positive number of metres, got {resolution!r}"
            )
        xmin, ymin, xmax, ymax = (float(b) for b in bounds)
        ax, ay = anchor
        # first/last centres whose pixels touch the bounds
        i0 = math.floor((xmin - ax) / res + 0.5)
        i1 = math.ceil((xmax - ax) / res - 0.5)
        j0 = math.floor((ymin - ay) / res + 0.5)
        j1 = math.ceil((ymax - ay) / res - 0.5)
        width = max(i1 - i0 + 1, 1)
        height = max(j1 - j0 + 1, 1)
        return cls(epsg, res, ax + i0 * res, ay + (j0 + height - 1) * res, width, height)

    @cached_property
    def crs(self) -> CRS:
        """The grid's :class:`pyproj.CRS`."""
        return CRS.from_epsg(self.epsg)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates (increasing)."""
        return self.x0 + self.resolution * np.arange(self.width, dtype="float64")

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (decreasing: north-up)."""
        return self.y0 - self.resolution * np.arange(self.height, dtype="float64")

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Outer pixel-edge bounds (xmin, ymin, xmax, ymax)."""
        h = self.resolution / 2
        return (
            self.x0 - h,
            self.y0 - (self.height - 1) * self.resolution - h,
            self.x0 + (self.width - 1) * self.resolution + h,
            self.y0 + h,
        )

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Affine (a, b, c, d, e, f) of pixel corners, as rasterio/GDAL use it."""
        xmin, _, _, ymax = self.bounds
        return (self.resolution, 0.0, xmin, 0.0, -self.resolution, ymax)

    def window_coords(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre (x, y) 1-D coordinates of a window."""
        return self.x[cols], self.y[rows]

    def window_box(self, rows: slice, cols: slice) -> shapely.Polygon:
        """Pixel-edge polygon of a window."""
        h = self.resolution / 2
        xs, ys = self.window_coords(rows, cols)
        return shapely.box(xs[0] - h, ys[-1] - h, xs[-1] + h, ys[0] + h)


def _epsg_of(crs: Any) -> int:
    try:
        c = CRS.from_user_input(crs)
    except Exception:
        raise InvalidInputError(
            f"not a coordinate reference system: {crs!r} (try 'EPSG:3413')"
        ) from None
    epsg = c.to_epsg()
    if epsg is None:
        raise InvalidInputError(
            f"CRS {crs!r} has no EPSG code; ITS_LIVE grids need one (e.g. EPSG:3031)"
        )
    if not c.is_projected:
        raise InvalidInputError(
            f"CRS EPSG:{epsg} is not projected; cubes need metres (e.g. EPSG:3031, EPSG:3413)"
        )
    return int(epsg)
