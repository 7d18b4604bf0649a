"""Named types of the public API, and small frozen objects passed through the pipeline.

The aliases say what a parameter accepts, for readers and for the type checker; the
functions that take them validate the values at run time too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    import geopandas as gpd
    import pyproj
    import shapely

__all__ = [
    "BBox",
    "CRSLike",
    "Chunks",
    "GranuleRef",
    "Granules",
    "Region",
    "Resampling",
    "StorageOptions",
]

#: A lon/lat region: GeoJSON mapping, shapely geometry, WKT or GeoJSON text, or a sequence
#: of ``(lon, lat)`` pairs.
Region: TypeAlias = "Mapping[str, Any] | shapely.Geometry | str | Sequence[Sequence[float]]"
#: ``(min_lon, min_lat, max_lon, max_lat)``.
BBox: TypeAlias = Sequence[float]
#: A CRS: EPSG integer, ``"EPSG:3031"``, WKT, or a :class:`pyproj.CRS`.
CRSLike: TypeAlias = "int | str | pyproj.CRS"
#: Block shape ``(mid_date, y, x)``: one int for all, a 3-sequence, or a dict with keys
#: ``mid_date``/``y``/``x``.
Chunks: TypeAlias = int | Sequence[int] | Mapping[str, int]
#: What a cube is built from: a granule table (search result), a folder, a glob, or a
#: sequence of paths/URLs.
Granules: TypeAlias = "gpd.GeoDataFrame | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]"
#: fsspec options (``{"anon": True}``, or per protocol ``{"s3": {...}, "https": {...}}``).
StorageOptions: TypeAlias = Mapping[str, Any]
#: How granules are resampled onto the cube grid.
Resampling: TypeAlias = Literal["nearest", "bilinear"]


@dataclass(frozen=True, slots=True)
class GranuleRef:
    """What a task needs to read one granule.

    Attributes
    ----------
    granule_id
        File name without ``.nc``.
    url
        Local path or fsspec URL.
    epsg
        EPSG code of the granule's grid (from the search table; checked against the file).
    """

    granule_id: str
    url: str
    epsg: int
