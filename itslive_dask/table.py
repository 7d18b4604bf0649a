"""The granule table: the one shape that search results take everywhere in the package.

Search backends (STAC API, legacy NSIDC-style API, local catalog file), the filters, the
downloader and the cube engine all pass around a :class:`geopandas.GeoDataFrame` with the
columns below, one row per granule, geometry = footprint polygon in lon/lat (EPSG:4326).

=========================  ==================  ==============================================
column                     dtype               meaning
=========================  ==================  ==============================================
``granule_id``             str                 file name without ``.nc`` (unique key)
``url``                    str                 where to read it (``s3://...``, path, https)
``https_url``              str                 public https form ('' when unknown)
``mid_date``               datetime64[ns]      midpoint of the two acquisitions
``acquisition_date_img1``  datetime64[ns]      acquisition of image 1
``acquisition_date_img2``  datetime64[ns]      acquisition of image 2
``date_dt``                float64             separation in days (img2 - img1, >= 0)
``satellite_img1``         str                 e.g. ``LC08``, ``S2A``, ``S1A``
``satellite_img2``         str                 e.g. ``LC09``, ``S2B``, ``S1B``
``sensor``                 str                 family: ``landsat``, ``sentinel1``, ``sentinel2``
``epsg``                   int64               EPSG code of the granule's own grid
``percent_valid``          float64             valid-pixel percentage (``P0xx`` of the name)
``version``                int64               product version (1 for ``V01``, 2 for ``V02``)
``resolution``             float64             pixel size in metres (240, 120, ...)
``geometry``               Polygon (EPSG:4326)  footprint
=========================  ==================  ==============================================

One column is optional (:data:`OPTIONAL_COLUMNS`): ``chunk_index`` (str), the granule's grid
and the byte ranges of its HDF5 chunks as JSON ('' when unknown). Catalogs built with
:func:`itslive_dask.discovery.build_catalog` and tables read from paths or URLs carry it for
remote granules; a build from such a table fetches only the chunks it needs and reads no
header from the archive (see :func:`itslive_dask.io.remote.read_header_record`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from itslive_dask.errors import InvalidInputError

__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "SENSORS",
    "chunk_index_record",
    "chunk_index_text",
    "empty_granule_table",
    "granule_table",
    "validate_granule_table",
]

#: Column name -> pandas dtype (the geometry column is added by geopandas).
COLUMNS: dict[str, str] = {
    "granule_id": "object",
    "url": "object",
    "https_url": "object",
    "mid_date": "datetime64[ns]",
    "acquisition_date_img1": "datetime64[ns]",
    "acquisition_date_img2": "datetime64[ns]",
    "date_dt": "float64",
    "satellite_img1": "object",
    "satellite_img2": "object",
    "sensor": "object",
    "epsg": "int64",
    "percent_valid": "float64",
    "version": "int64",
    "resolution": "float64",
}

#: Columns a granule table may have besides :data:`COLUMNS` (name -> pandas dtype).
OPTIONAL_COLUMNS: dict[str, str] = {"chunk_index": "object"}

#: Sensor families, as used in the ``sensor`` column and the ``sensors=`` filters.
SENSORS: tuple[str, ...] = ("landsat", "sentinel1", "sentinel2")


def empty_granule_table() -> gpd.GeoDataFrame:
    """A granule table with the documented columns and no rows."""
    df = pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")


def granule_table(records: Iterable[Mapping[str, Any]]) -> gpd.GeoDataFrame:
    """Build a granule table from dict-like records (one per granule).

    Each record has the keys of :data:`COLUMNS` plus ``geometry`` (a shapely polygon in
    lon/lat). Missing ``https_url`` becomes ``''``. Rows are sorted by (``mid_date``,
    ``granule_id``) and indexed 0..n-1.
    """
    records = list(records)
    if not records:
        return empty_granule_table()
    df = pd.DataFrame.from_records(records)
    if "https_url" not in df:
        df["https_url"] = ""
    gdf = gpd.GeoDataFrame(df, geometry="geometry", crs="EPSG:4326")
    return validate_granule_table(gdf)


def validate_granule_table(table: Any) -> gpd.GeoDataFrame:
    """Check and normalise a granule table (columns, dtypes, CRS, unique ids, order).

    Raises
    ------
    InvalidInputError
        When ``table`` is not a GeoDataFrame with the documented columns, or has duplicate
        ``granule_id`` values.
    """
    if not isinstance(table, gpd.GeoDataFrame):
        raise InvalidInputError(
            f"expected a granule table (GeoDataFrame from itslive_dask.discovery.api), got {type(table).__name__}"
        )
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InvalidInputError(f"granule table is missing columns: {', '.join(missing)}")
    gdf = table.copy()
    if gdf.crs is None:
        gdf = gdf.set_crs("EPSG:4326")
    elif not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    present = {c: t for c, t in OPTIONAL_COLUMNS.items() if c in gdf.columns}
    for col, dtype in {**COLUMNS, **present}.items():
        if dtype.startswith("datetime64"):
            # text dates (GeoJSON, STAC) may mix whole and fractional seconds
            fmt = None if pd.api.types.is_datetime64_any_dtype(gdf[col]) else "mixed"
            gdf[col] = (
                pd.to_datetime(gdf[col], utc=True, format=fmt).dt.tz_localize(None).astype(dtype)
            )
        elif dtype == "object":  # text: '' where unknown
            gdf[col] = gdf[col].fillna("").astype(str)
        else:
            gdf[col] = gdf[col].astype(dtype)
    dup = gdf["granule_id"].duplicated()
    if dup.any():
        raise InvalidInputError(
            f"granule table has duplicate granule_id values, e.g. {gdf['granule_id'][dup].iloc[0]!r}"
        )
    gdf = gdf.sort_values(["mid_date", "granule_id"], kind="stable").reset_index(drop=True)
    if len(gdf) and not np.all(gdf["date_dt"].to_numpy() >= 0):
        raise InvalidInputError("granule table has negative date_dt values")
    return gdf


def chunk_index_text(record: Mapping[str, Any] | None) -> str:
    """The ``chunk_index`` cell of a granule's header record (compact JSON; '' for None)."""
    return "" if record is None else json.dumps(dict(record), separators=(",", ":"))


def chunk_index_record(text: Any) -> dict[str, Any] | None:
    """The header record in a ``chunk_index`` cell; None when the cell is empty or is not a
    JSON object (the build then reads the granule's header instead)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
