"""Planning a cube: granule table + target grid -> which granules feed which output block.

Pure: metadata in, plan out. Nothing here opens a file, so a plan for 10^5 granules is made
in seconds and can be inspected (``plan_cube(...)``) before anything is read.

Time axis
    One layer per granule, ordered by (``mid_date``, ``granule_id``). ``mid_date`` is made
    unique: the k-th granule sharing a mid_date with earlier ones gets k microseconds added
    (the order of ties is the order of their ``granule_id``).
Blocks
    The cube is cut into blocks of ``chunks = (t, y, x)``: ``t`` layers by a ``y`` x ``x``
    tile. Block ``(tb, iy, ix)`` covers layers ``[tb*t, (tb+1)*t)`` (offset by the first
    layer's index when the plan continues an existing cube), rows ``[iy*y, ...)`` and columns
    ``[ix*x, ...)``. A block lists the layers whose granule footprint touches the part of its
    tile inside the region; blocks that list none are pure fill and cost nothing to read.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.base
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.spec import DEFAULT_CHUNKS, RESAMPLING, normalize_chunks
from itslive_dask.table import validate_granule_table
from itslive_dask.types import GranuleRef

__all__ = [
    "DEFAULT_CHUNKS",
    "LAYER_COORDS",
    "CubePlan",
    "normalize_chunks",
    "plan_cube",
    "unique_mid_dates",
]

log = logging.getLogger(__name__)

#: Granule-table column -> per-layer cube coordinate.
LAYER_COORDS: dict[str, str] = {
    "acquisition_date_img1": "acquisition_date_img1",
    "acquisition_date_img2": "acquisition_date_img2",
    "date_dt": "date_dt",
    "satellite_img1": "satellite_img1",
    "satellite_img2": "satellite_img2",
    "sensor": "sensor",
    "granule_id": "granule_id",
    "url": "granule_url",
    "epsg": "source_epsg",
    "percent_valid": "percent_valid",
    "version": "version",
}

#: Footprint buffer (metres) added before testing intersections: footprints are approximate.
_FOOTPRINT_BUFFER = 500.0
#: Tolerance (degrees) for simplifying footprints before projecting them (~110 m of latitude).
_SIMPLIFY_DEG = 0.001
#: Longest footprint edge (degrees) projected as a straight line: over ~20 km a straight
#: edge departs from the projected curve by metres, far inside ``_FOOTPRINT_BUFFER``.
_SEGMENT_DEG = 0.2


@dataclass(frozen=True, eq=False)
class CubePlan:
    """Everything needed to build a cube, decided before any file is opened.

    Attributes
    ----------
    grid
        The target grid.
    chunks
        Block shape (layers, rows, columns).
    variables
        Output data variables, in order.
    resampling
        ``"nearest"`` or ``"bilinear"``.
    region
        Clip region in the grid's CRS (pixels whose centre is outside are NaN).
    layers
        One row per layer (time step) with the per-layer coordinates; index = layer number.
    refs
        One :class:`GranuleRef` per layer.
    blocks
        ``(tb, iy, ix) -> layer numbers`` for every block that has something to read.
    dropped
        Granules of the input left out, with the reason (``granule_id``, ``reason``).
    t_offset
        Index of the first layer in the cube the plan writes into (0 for a new cube).
    unreadable
        Input granules whose header could not be read (``url``, ``error``, ``attempts``),
        when the plan was made with ``on_error="skip"``.
    """

    grid: TargetGrid
    chunks: tuple[int, int, int]
    variables: tuple[str, ...]
    resampling: str
    region: shapely.Geometry
    layers: pd.DataFrame
    refs: tuple[GranuleRef, ...]
    blocks: Mapping[tuple[int, int, int], tuple[int, ...]]
    dropped: pd.DataFrame = field(repr=False)
    t_offset: int = 0
    unreadable: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.refs)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_layers, self.grid.height, self.grid.width)

    def time_chunks(self) -> tuple[int, ...]:
        """Dask chunk sizes along time, aligned with multiples of ``chunks[0]`` of the cube."""
        return _split(self.t_offset, self.t_offset + self.n_layers, self.chunks[0])

    def space_chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dask chunk sizes along y and x."""
        return _split(0, self.grid.height, self.chunks[1]), _split(0, self.grid.width, self.chunks[2])

    def block_ids(self) -> list[tuple[int, int, int]]:
        """All blocks of the plan (including fill-only ones), in (tb, iy, ix) order."""
        t0 = self.t_offset // self.chunks[0]
        nt = len(self.time_chunks())
        ny, nx = (len(c) for c in self.space_chunks())
        return [(t0 + a, b, c) for a in range(nt) for b in range(ny) for c in range(nx)]

    def block_slices(self, block: tuple[int, int, int]) -> tuple[slice, slice, slice]:
        """Slices of a block in cube (layer, row, column) index space."""
        tb, iy, ix = block
        t, y, x = self.chunks
        t_lo = max(tb * t, self.t_offset)
        t_hi = min((tb + 1) * t, self.t_offset + self.n_layers)
        return (
            slice(t_lo, t_hi),
            slice(iy * y, min((iy + 1) * y, self.grid.height)),
            slice(ix * x, min((ix + 1) * x, self.grid.width)),
        )

    def block_refs(self, block: tuple[int, int, int]) -> tuple[tuple[int, GranuleRef], ...]:
        """(position inside the block, granule) pairs that a block reads."""
        t_lo = self.block_slices(block)[0].start
        return tuple(
            (k + self.t_offset - t_lo, self.refs[k]) for k in self.blocks.get(block, ())
        )

    @functools.cached_property
    def token(self) -> str:
        """The plan's identity: grid, chunks, variables, resampling, region, first layer and
        every granule (id, URL, EPSG). It names the graph's keys and the store's generations."""
        h = hashlib.sha256()
        for r in self.refs:  # a plain digest: dask's tokenize is slow on 10^5 tuples
            h.update(f"{r.granule_id}\x00{r.url}\x00{r.epsg}\n".encode())
        return dask.base.tokenize(
            self.grid, self.chunks, self.variables, self.resampling,
            shapely.to_wkb(self.region), self.t_offset, h.hexdigest(),
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """Counts for logs and reports."""
        n_blocks = len(self.block_ids())
        return {
            "layers": self.n_layers,
            "shape": self.shape,
            "chunks": self.chunks,
            "blocks": n_blocks,
            "blocks_with_data": len(self.blocks),
            "granule_tile_reads": int(sum(len(v) for v in self.blocks.values())),
            "dropped": len(self.dropped),
            "unreadable": len(self.unreadable),
        }

    def _repr_html_(self) -> str:
        from itslive_dask.notebook import plan_html

        return plan_html(self)


def unique_mid_dates(mid_dates: np.ndarray, taken: np.ndarray | None = None) -> np.ndarray:
    """Make sorted mid_dates unique: the k-th repeat of a date gets k microseconds added.

    ``taken`` are dates already used (the layers of an existing cube when appending): a date
    equal to one of them is moved forward, microsecond by microsecond, to a free one.
    """
    md = np.asarray(mid_dates, dtype="datetime64[ns]")
    if md.size == 0:
        return md
    if taken is not None and len(taken):
        used = set(np.asarray(taken, dtype="datetime64[ns]").astype("int64").tolist())
        out = md.astype("int64").copy()
        step = 1000  # 1 microsecond in ns
        for i in range(out.size):
            v = int(out[i])
            if i and v <= int(out[i - 1]):
                v = int(out[i - 1]) + step
            while v in used:
                v += step
            out[i] = v
            used.add(v)
        return out.astype("datetime64[ns]")
    same = np.concatenate([[False], md[1:] == md[:-1]])
    # k = number of consecutive repeats before each element
    group = np.cumsum(~same)
    first = np.flatnonzero(~same)
    k = np.arange(md.size) - first[group - 1]
    out = md + k.astype("timedelta64[us]").astype("timedelta64[ns]")
    if np.any(out[1:] <= out[:-1]):  # a shift ran into the next date: nudge forward
        for i in range(1, out.size):
            if out[i] <= out[i - 1]:
                out[i] = out[i - 1] + np.timedelta64(1, "us")
    return out


def plan_cube(
    table: gpd.GeoDataFrame,
    grid: TargetGrid,
    region: shapely.Geometry,
    *,
    chunks: Any = None,
    variables: Sequence[str] = ("vx", "vy", "v", "v_error"),
    resampling: str = "nearest",
    t_offset: int = 0,
    taken_dates: np.ndarray | None = None,
) -> CubePlan:
    """Decide the time axis and which granules feed which block. Opens no file.

    Parameters
    ----------
    table
        Granule table (see :mod:`itslive_dask.table`) with footprints and EPSG codes.
    grid
        Target grid.
    region
        Clip region, in the grid's CRS.
    chunks
        Block shape, see :func:`normalize_chunks`.
    variables
        Data variables of the cube.
    resampling
        ``"nearest"`` (default) or ``"bilinear"``.
    t_offset
        First layer index (to continue an existing cube's time axis when appending).
    taken_dates
        ``mid_date`` values the cube already has (when appending): new layers never reuse one.

    Returns
    -------
    CubePlan
    """
    chunk_tuple = normalize_chunks(chunks)
    if resampling not in RESAMPLING:
        raise InvalidInputError(f"unknown resampling {resampling!r}; use one of {', '.join(RESAMPLING)}")
    variables = tuple(variables)
    if not variables:
        raise InvalidInputError("variables must name at least one variable, e.g. ('v',)")
    table = validate_granule_table(table)
    unresolved = table.geometry.isna() | (table["epsg"] <= 0)
    if unresolved.any():
        raise InvalidInputError(
            f"{int(unresolved.sum())} granules have no footprint/EPSG in the table; "
            "open_cube reads their headers, or use itslive_dask.build_catalog"
        )
    region = shapely.make_valid(region)

    foot = _footprints_in(table.geometry.values, grid.epsg)
    ny_chunks, nx_chunks = (_split(0, n, c) for n, c in ((grid.height, chunk_tuple[1]), (grid.width, chunk_tuple[2])))
    tiles: list[tuple[int, int]] = []
    tile_geoms = []
    for iy in range(len(ny_chunks)):
        for ix in range(len(nx_chunks)):
            rows = slice(iy * chunk_tuple[1], min((iy + 1) * chunk_tuple[1], grid.height))
            cols = slice(ix * chunk_tuple[2], min((ix + 1) * chunk_tuple[2], grid.width))
            part = shapely.intersection(grid.window_box(rows, cols), region)
            if not part.is_empty:
                tiles.append((iy, ix))
                tile_geoms.append(part)
    if tile_geoms and len(foot):
        # grow the few tile parts (not the many footprints) by the footprint tolerance, index
        # them, and query with the footprints: the tree over tiles is small and fast to walk
        grown = shapely.buffer(np.array(tile_geoms, dtype=object), _FOOTPRINT_BUFFER, quad_segs=2)
        gran_idx, tile_idx = shapely.STRtree(grown).query(foot, predicate="intersects")
    else:
        tile_idx = gran_idx = np.empty(0, dtype=np.intp)
    used = np.zeros(len(table), dtype=bool)
    used[gran_idx] = True
    dropped = pd.DataFrame(
        {"granule_id": table.loc[~used, "granule_id"].to_numpy(), "reason": "footprint outside the region"}
    )
    kept = table.loc[used].reset_index(drop=True)
    # layer number of each kept granule (table is sorted by mid_date, granule_id)
    layer_of = np.full(len(table), -1, dtype=np.int64)
    layer_of[np.flatnonzero(used)] = np.arange(len(kept))

    layers = pd.DataFrame({"mid_date": unique_mid_dates(kept["mid_date"].to_numpy(), taken_dates)})
    for col, name in LAYER_COORDS.items():
        layers[name] = kept[col].to_numpy()
    refs = tuple(
        GranuleRef(g, u, int(e))
        for g, u, e in zip(kept["granule_id"], kept["url"], kept["epsg"], strict=True)
    )

    blocks: dict[tuple[int, int, int], tuple[int, ...]] = {}
    if len(gran_idx):
        lay = layer_of[gran_idx]
        tb = (lay + t_offset) // chunk_tuple[0]
        tiles_arr = np.asarray(tiles, dtype=np.int64)[tile_idx]
        order = np.lexsort((lay, tiles_arr[:, 1], tiles_arr[:, 0], tb))
        keys = np.stack([tb, tiles_arr[:, 0], tiles_arr[:, 1]], axis=1)[order]
        lay_sorted = lay[order]
        cut = np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1
        for key_rows, lays in zip(np.split(keys, cut), np.split(lay_sorted, cut), strict=True):
            tb_, iy_, ix_ = (int(v) for v in key_rows[0])
            blocks[(tb_, iy_, ix_)] = tuple(int(v) for v in lays)
    plan = CubePlan(
        grid=grid,
        chunks=chunk_tuple,
        variables=variables,
        resampling=resampling,
        region=region,
        layers=layers,
        refs=refs,
        blocks=blocks,
        dropped=dropped,
        t_offset=int(t_offset),
    )
    log.debug("plan: %s", plan.summary())
    return plan


def _footprints_in(footprints: np.ndarray, epsg: int) -> np.ndarray:
    """Lon/lat footprints -> grid CRS, cheaply and conservatively.

    Repeat-pass granules share footprints, so each distinct footprint is projected once.
    Footprints are simplified first (at most ``_SIMPLIFY_DEG`` off, well inside the
    ``_FOOTPRINT_BUFFER`` used by the intersection test) and long edges densified so they
    bend like the projection.
    """
    wkb = shapely.to_wkb(footprints)
    uniq, inverse = np.unique(wkb, return_inverse=True)
    geoms = shapely.from_wkb(uniq)
    geoms = shapely.segmentize(shapely.simplify(geoms, _SIMPLIFY_DEG), _SEGMENT_DEG)
    projected = gpd.GeoSeries(geoms, crs="EPSG:4326").to_crs(epsg).values
    return np.asarray(projected)[inverse.ravel()]


def _split(start: int, stop: int, size: int) -> tuple[int, ...]:
    """Chunk sizes covering [start, stop) with boundaries at multiples of ``size``."""
    if stop <= start:
        return ()
    edges = [start]
    nxt = (start // size + 1) * size
    while nxt < stop:
        edges.append(nxt)
        nxt += size
    edges.append(stop)
    return tuple(b - a for a, b in itertools.pairwise(edges))
