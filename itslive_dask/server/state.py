"""The catalog held by a running search server: the table, its spatial index, helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from itslive_dask.discovery.query import SearchQuery, match_query
from itslive_dask.geo.footprints import FootprintIndex
from itslive_dask.table import validate_granule_table

__all__ = ["CatalogState"]


class CatalogState:
    """A validated granule table plus a reusable :class:`FootprintIndex`.

    Parameters
    ----------
    table
        The granule table served.
    collection
        The STAC collection id it is served as.
    """

    def __init__(self, table: gpd.GeoDataFrame, collection: str = "itslive-granules"):
        self.table = validate_granule_table(table)
        self.collection = collection
        self.index = FootprintIndex(self.table.geometry.to_numpy())
        self._by_id = pd.Index(self.table["granule_id"])

    def __len__(self) -> int:
        return len(self.table)

    def positions(
        self,
        query: SearchQuery,
        extra: Any = None,
        *,
        regions: Sequence[shapely.Geometry] | None = None,
    ) -> np.ndarray:
        """Positions (table order) of the rows matching ``query`` and an extra mask function.

        ``extra(subtable) -> bool mask`` is evaluated on the candidate rows only. ``regions``
        (lon/lat geometries of any type) adds a spatial test: the footprint intersects any.
        """
        mask = match_query(self.table, query, index=self.index, spatial_unknown=False)
        if regions is not None:
            spatial = np.zeros(len(mask), dtype=bool)
            if mask.any():
                for region in regions:
                    spatial[self.index.query(region)] = True
            mask &= spatial
        pos = np.flatnonzero(mask)
        if extra is not None and len(pos):
            sub = self.table.iloc[pos]
            pos = pos[np.asarray(extra(sub), dtype=bool)]
        return pos

    def position_of(self, granule_id: str) -> int | None:
        """Row position of a granule id, or None."""
        try:
            loc = self._by_id.get_loc(granule_id)
        except KeyError:
            return None
        return int(loc) if isinstance(loc, int | np.integer) else None

    def extent(self) -> tuple[list[float], list[str | None]]:
        """(bbox, [first, last] mid dates) of the whole catalog."""
        t = self.table
        if len(t) == 0:
            return [-180.0, -90.0, 180.0, 90.0], [None, None]
        geoms = [g for g in t.geometry if g is not None and not g.is_empty]
        bounds = shapely.total_bounds(np.array(geoms, dtype=object)) if geoms else None
        bbox = [-180.0, -90.0, 180.0, 90.0]
        if bounds is not None and np.all(np.isfinite(bounds)):
            bbox = [
                max(-180.0, bounds[0]),
                max(-90.0, bounds[1]),
                min(180.0, bounds[2]),
                min(90.0, bounds[3]),
            ]
        first = t["mid_date"].min().strftime("%Y-%m-%dT%H:%M:%SZ")
        last = t["mid_date"].max().strftime("%Y-%m-%dT%H:%M:%SZ")
        return bbox, [first, last]
