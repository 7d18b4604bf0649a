"""The baseline: the ITS_LIVE tutorial's eager ``load_cube``, re-implemented for measurement.

What the tutorial (``VelocityProcessing.load_cube``, itslive-explorer notebooks) does, step by
step, and what this module does the same way:

1. open every downloaded granule of a folder with ``xarray.open_dataset`` (the default engine
   here is h5netcdf: netCDF4-python is not installed);
2. use ``img_pair_info.date_center`` as the layer time, and skip a granule whose
   ``date_center`` was already seen;
3. write the CRS from the grid-mapping variable's ``spatial_epsg`` and ``rio.clip`` the
   granule to the lon/lat polygon (this loads its pixels into RAM); keep it only if ``v``
   has at least one valid pixel;
4. group the clipped granules by CRS and, with the tutorial's default
   ``discard_residual_projections=True``, keep only the most common CRS;
5. ``xr.concat(..., dim="time")`` with xarray's default outer join, which reindexes every
   granule onto the union of all x and y coordinates (a common grid), all in RAM, then
   ``sortby("time")``.

Known defects (reported in docs/benchmarks.md, not fixed here on purpose):

* every granule of a minority CRS is dropped (the cube silently loses those dates);
* granules sharing a ``date_center`` with an earlier one are dropped (day precision: two
  pairs centred on the same day lose one);
* velocity vectors are never rotated (moot with one CRS, wrong with the tutorial's
  ``include_all_projections=True`` path, which also sets negative vx/vy to NaN);
* the whole cube, and every clipped granule on the way, lives in the driver's RAM;
* the union grid is only a grid when the granules are pixel-aligned; V1 (240 m) and V2
  (120 m) granules interleave into an irregular coordinate axis;
* V2 granules name their grid mapping ``mapping``: the tutorial only knew
  ``UTM_Projection``/``Polar_Stereographic``; this re-implementation accepts all three so
  that it runs at all.
"""

from __future__ import annotations

import gc
import logging
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

log = logging.getLogger(__name__)

_GRID_MAPPINGS = ("mapping", "UTM_Projection", "Polar_Stereographic")


def load_cube(
    paths: Sequence[str | os.PathLike],
    clip_geom: dict[str, Any],
    *,
    engine: str | None = None,
) -> tuple[xr.Dataset | None, dict[str, Any]]:
    """Build the tutorial's cube eagerly from local granule files.

    Parameters
    ----------
    paths
        Local NetCDF granule files (the tutorial globbed a download folder).
    clip_geom
        GeoJSON polygon in lon/lat.
    engine
        xarray engine (default: xarray's choice, h5netcdf here).

    Returns
    -------
    (xarray.Dataset or None, dict)
        The cube (dims ``time, y, x``; None when fewer than 2 layers survive, as in the
        tutorial) and counts of what was kept and dropped and why.
    """
    import rioxarray  # noqa: F401  (registers .rio)

    seen_dates: set[str] = set()
    clipped: list[xr.Dataset] = []
    stats: Counter[str] = Counter()
    for p in sorted(str(p) for p in paths):
        ds = xr.open_dataset(p, engine=engine)
        stats["opened"] += 1
        date_center = str(ds["img_pair_info"].attrs.get("date_center", ""))
        if date_center in seen_dates:
            stats["dropped_repeated_date_center"] += 1
            ds.close()
            continue
        seen_dates.add(date_center)
        ds = ds.assign_coords(time=pd.to_datetime(date_center[:8], format="%Y%m%d"))
        proj_var = next(v for v in _GRID_MAPPINGS if v in ds.variables)
        epsg = int(np.asarray(ds[proj_var].attrs["spatial_epsg"]).reshape(-1)[0])
        ds = ds.drop_vars(["img_pair_info", *(v for v in _GRID_MAPPINGS if v in ds.variables)])
        ds = ds.rio.write_crs(epsg, grid_mapping_name="spatial_ref")
        try:
            piece = ds.rio.clip([clip_geom], crs="EPSG:4326")
        except Exception as exc:  # rioxarray raises NoDataInBounds and friends
            log.info("out of bounds: %s (%s)", p, type(exc).__name__)
            stats["dropped_outside_region"] += 1
            ds.close()
            continue
        if np.isnan(piece["v"].max().values):
            stats["dropped_no_valid_pixel"] += 1
        else:
            clipped.append(piece.load())
        ds.close()
    gc.collect()
    if len(clipped) < 2:
        return None, dict(stats)
    by_crs: dict[str, list[xr.Dataset]] = {}
    for piece in clipped:
        by_crs.setdefault(str(piece.rio.crs), []).append(piece)
    majority = max(by_crs, key=lambda k: len(by_crs[k]))
    stats["dropped_minority_crs"] = sum(len(v) for k, v in by_crs.items() if k != majority)
    stats["kept"] = len(by_crs[majority])
    # xarray's historical default (join="outer"): the union of all x and y = a common grid
    cube = xr.concat(by_crs[majority], dim="time", join="outer").sortby("time")
    stats["crs"] = majority
    return cube, dict(stats)


def download(urls: Sequence[str], dest: str, storage_options: dict | None = None) -> list[str]:
    """Copy granules to a local folder, one object after the other (the tutorial's download step).

    Parameters
    ----------
    urls
        fsspec URLs (``s3://...``).
    dest
        Target folder (created).
    storage_options
        fsspec options.

    Returns
    -------
    list of str
        Local paths, in the order of ``urls``.
    """
    import fsspec

    os.makedirs(dest, exist_ok=True)
    out = []
    for url in urls:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        local = os.path.join(dest, os.path.basename(path))
        fs.get_file(path, local)
        out.append(local)
    return out
