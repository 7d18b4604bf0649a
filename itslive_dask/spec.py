"""What cube to build: :class:`CubeSpec`, one value for every entry point.

``open_cube``, ``make_plan``, ``write_cube``, the pipeline, the CLI and the demo all take a
``CubeSpec`` (their keyword arguments build one), so region, CRS, resolution, variables,
chunks and resampling are declared and validated in one place. Turning a spec and the
granules' footprints into a target grid is pure (:meth:`CubeSpec.grid_and_region`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import shapely

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.grid import PRODUCTION_ANCHOR, TargetGrid
from itslive_dask.geo.region import default_crs, parse_region, to_crs
from itslive_dask.granule.info import CATEGORICAL_VARIABLES, KNOWN_VARIABLES, VELOCITY_VARIABLES
from itslive_dask.types import BBox, CRSLike, Region, Resampling

__all__ = [
    "CATEGORICAL_VARIABLES",
    "DEFAULT_CHUNKS",
    "DEFAULT_VARIABLES",
    "MAX_PIXELS",
    "RESAMPLING",
    "CubeSpec",
    "normalize_chunks",
]

#: Resampling methods of the kernel.
RESAMPLING: tuple[str, ...] = ("nearest", "bilinear")
#: Map-friendly default: few layers, large tiles.
DEFAULT_CHUNKS: tuple[int, int, int] = (16, 512, 512)

#: Variables built when none are named.
DEFAULT_VARIABLES: tuple[str, ...] = VELOCITY_VARIABLES
#: Largest grid (pixels per layer) a spec accepts.
MAX_PIXELS = 2**34


@dataclass(frozen=True)
class CubeSpec:
    """The cube to build: region, grid and content.

    Attributes
    ----------
    geometry
        Clip region in lon/lat (GeoJSON mapping, shapely geometry, WKT or ``(lon, lat)``
        pairs). With neither ``geometry`` nor ``bbox``: the union of the granule footprints.
    bbox
        ``(min_lon, min_lat, max_lon, max_lat)`` instead of ``geometry``.
    crs
        Target CRS; default EPSG:3031 for southern regions, EPSG:3413 for northern ones.
    resolution
        Pixel size in metres (grid aligned with the ITS_LIVE production grid).
    variables
        Data variables to build, from the ITS_LIVE granule variables.
    chunks
        Block shape ``(mid_date, y, x)``; the values are identical for any chunking.
    resampling
        ``"nearest"`` (agrees with GDAL) or ``"bilinear"`` (NaN-aware); flag variables
        (:data:`CATEGORICAL_VARIABLES`) always use nearest.
    anchor
        Pixel-centre offsets of the grid (default: the production cubes' 52.5 m, 67.5 m).

    Examples
    --------
    >>> spec = CubeSpec(bbox=(-101.2, -75.5, -99.1, -74.7), chunks=(8, 256, 256))
    >>> spec.variables
    ('vx', 'vy', 'v', 'v_error')
    """

    geometry: Region | None = None
    bbox: BBox | None = None
    crs: CRSLike | None = None
    resolution: float = 120.0
    variables: tuple[str, ...] = DEFAULT_VARIABLES
    chunks: tuple[int, int, int] = DEFAULT_CHUNKS
    resampling: Resampling = "nearest"
    anchor: tuple[float, float] = PRODUCTION_ANCHOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "chunks", normalize_chunks(self.chunks))
        object.__setattr__(self, "variables", _check_variables(self.variables))
        if self.resampling not in RESAMPLING:
            raise InvalidInputError(
                f"unknown resampling {self.resampling!r}; use one of {', '.join(RESAMPLING)}"
            )
        try:
            res = float(self.resolution)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"resolution must be a number of metres, got {self.resolution!r}"
            ) from None
        if not (np.isfinite(res) and res > 0):
            raise InvalidInputError(
                f"resolution must be a positive number of metres, got {self.resolution!r}"
            )
        object.__setattr__(self, "resolution", res)
        if self.geometry is not None or self.bbox is not None:
            parse_region(self.geometry, self.bbox)  # fail now, not when the cube is planned

    @classmethod
    def build(cls, spec: CubeSpec | None = None, **overrides: Any) -> CubeSpec:
        """A spec from ``spec`` (or the defaults) with the given fields replaced.

        ``None`` values mean "not given" and keep what ``spec`` (or the default) says, so
        functions can forward their optional keyword arguments unchanged.

        Raises
        ------
        InvalidInputError
            For an unknown field or an invalid value.
        """
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise InvalidInputError(f"unknown cube settings {sorted(unknown)}; use {sorted(names)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if spec is None:
            return cls(**given)
        if not isinstance(spec, CubeSpec):
            raise InvalidInputError(f"spec must be a CubeSpec, got {type(spec).__name__}")
        return replace(spec, **given) if given else spec

    def region_lonlat(self, footprints: Iterable[shapely.Geometry] = ()) -> shapely.Geometry:
        """The clip region in lon/lat: ``geometry``/``bbox``, else the union of ``footprints``."""
        if self.geometry is None and self.bbox is None:
            parts = list(footprints)
            if not parts:
                raise InvalidInputError("no granules and no region: nothing to build")
            return shapely.union_all(parts)
        return parse_region(self.geometry, self.bbox)

    def grid_and_region(
        self, footprints: Iterable[shapely.Geometry] = ()
    ) -> tuple[TargetGrid, shapely.Geometry]:
        """The target grid covering the region, and the region in the grid's CRS.

        Pure: no file is read. ``footprints`` (lon/lat) are used only when the spec names
        no region.

        Raises
        ------
        InvalidInputError
            When the region cannot be projected to the CRS or the grid would be too large.
        """
        region_ll = self.region_lonlat(footprints)
        target_crs = default_crs(region_ll) if self.crs is None else self.crs
        grid0 = TargetGrid.from_bounds((0, 0, 1, 1), target_crs, self.resolution, self.anchor)
        region_t = to_crs(region_ll, grid0.epsg)
        if region_t.is_empty or not np.all(np.isfinite(region_t.bounds)):
            raise InvalidInputError(f"region cannot be projected to EPSG:{grid0.epsg}")
        grid = TargetGrid.from_bounds(region_t.bounds, grid0.epsg, self.resolution, self.anchor)
        if grid.width * grid.height > MAX_PIXELS:
            raise InvalidInputError(
                f"grid of {grid.height}x{grid.width} pixels is too large; check the region and resolution"
            )
        return grid, region_t


def _check_variables(variables: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(variables, str):
        variables = (variables,)
    try:
        names = tuple(dict.fromkeys(str(v) for v in variables))
    except TypeError:
        raise InvalidInputError(f"variables must be a list of names, got {variables!r}") from None
    if not names:
        raise InvalidInputError("variables must name at least one variable")
    unknown = [v for v in names if v not in KNOWN_VARIABLES]
    if unknown:
        raise InvalidInputError(
            f"unknown variable {unknown[0]!r}; ITS_LIVE granules have {', '.join(KNOWN_VARIABLES)}"
        )
    return names


def normalize_chunks(chunks: Any) -> tuple[int, int, int]:
    """Chunks as ``(t, y, x)`` from None, an int, a 3-tuple or a dict.

    Dict keys: ``mid_date`` (or ``time``/``t``), ``y``, ``x``; missing keys take the default.
    """
    if chunks is None:
        return DEFAULT_CHUNKS
    if isinstance(chunks, int | np.integer):
        out = (int(chunks),) * 3
    elif isinstance(chunks, Mapping):
        unknown = set(chunks) - {"mid_date", "time", "t", "y", "x"}
        if unknown:
            raise InvalidInputError(
                f"unknown chunk dimensions {sorted(unknown)}; use mid_date, y, x"
            )
        t = chunks.get("mid_date", chunks.get("time", chunks.get("t", DEFAULT_CHUNKS[0])))
        out = (t, chunks.get("y", DEFAULT_CHUNKS[1]), chunks.get("x", DEFAULT_CHUNKS[2]))
    elif isinstance(chunks, Sequence) and not isinstance(chunks, str) and len(chunks) == 3:
        out = tuple(chunks)
    else:
        raise InvalidInputError(f"chunks must be an int, (t, y, x) or a dict; got {chunks!r}")
    try:
        vals = tuple(int(c) for c in out)
    except (TypeError, ValueError):
        raise InvalidInputError(f"chunk sizes must be positive integers; got {chunks!r}") from None
    if any(v <= 0 for v in vals) or any(float(c) != v for c, v in zip(out, vals, strict=True)):
        raise InvalidInputError(f"chunk sizes must be positive integers; got {chunks!r}")
    return vals  # type: ignore[return-value]
