"""A STAC item for a built cube, so that a catalog (or the package's own server) can list it.

The item (STAC 1.1.0, plain JSON: no pystac needed to write it) uses the datacube extension
for the dimensions (``mid_date``, ``y``, ``x``) and variables, the projection extension for
the cube's CRS and grid, and carries the store as its one asset (media type
``application/vnd+zarr``). Its geometry is the outline of the cube's extent in lon/lat and its
time range goes from the first to the last acquisition.
"""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any

import numpy as np
import pandas as pd

from itslive_dask.store.state import ATTR, open_store
from itslive_dask.store.target import StoreTarget, resolve_target
from itslive_dask.types import StorageOptions

__all__ = [
    "DATACUBE_SCHEMA",
    "PROJECTION_SCHEMA",
    "ZARR_MEDIA_TYPE",
    "cube_stac_item",
    "write_stac_item",
]

STAC_VERSION = "1.1.0"
DATACUBE_SCHEMA = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
#: The media type of a Zarr store in STAC (pystac's ``MediaType.ZARR``).
ZARR_MEDIA_TYPE = "application/vnd+zarr"

_DIMS = ("mid_date", "y", "x")


def _iso(t: Any) -> str:
    return pd.Timestamp(t).tz_localize(None).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cube_stac_item(
    store: str | os.PathLike[str],
    store_options: StorageOptions | None = None,
    *,
    item_id: str | None = None,
    asset_href: str | None = None,
) -> dict[str, Any]:
    """The STAC item of a cube written by :func:`itslive_dask.write_cube`, as a dict.

    Parameters
    ----------
    store
        The cube (path or URL).
    store_options
        fsspec options for a remote store.
    item_id
        The item's id (default: the store's name without ``.zarr``).
    asset_href
        Where catalog users find the store (default: the store's URL or absolute path).

    Returns
    -------
    dict
        A STAC 1.1.0 item (GeoJSON Feature) with the datacube and projection extensions.

    Examples
    --------
    >>> item = cube_stac_item("pig.zarr")  # doctest: +SKIP
    >>> item["properties"]["cube:dimensions"]["mid_date"]["extent"]  # doctest: +SKIP
    """
    import rioxarray  # noqa: F401  (registers .rio)
    from pyproj import CRS, Transformer

    target: StoreTarget = resolve_target(store, store_options)
    ds = open_store(target)
    xs = np.asarray(ds["x"].values, dtype="float64")
    ys = np.asarray(ds["y"].values, dtype="float64")
    res = float(abs(xs[1] - xs[0])) if xs.size > 1 else float(abs(ys[1] - ys[0]))
    half = res / 2
    x0, x1 = float(xs.min() - half), float(xs.max() + half)
    y0, y1 = float(ys.min() - half), float(ys.max() + half)
    crs = ds.rio.crs
    epsg = crs.to_epsg() if crs is not None else None
    # outline of the extent in lon/lat, densified (edges are curves in lon/lat)
    n = 21
    ex = np.concatenate(
        [np.linspace(x0, x1, n), np.full(n, x1), np.linspace(x1, x0, n), np.full(n, x0)]
    )
    ey = np.concatenate(
        [np.full(n, y0), np.linspace(y0, y1, n), np.full(n, y1), np.linspace(y1, y0, n)]
    )
    lon, lat = Transformer.from_crs(CRS.from_user_input(crs), 4326, always_xy=True).transform(
        ex, ey
    )
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]
    ring = [p for k, p in enumerate(ring) if k == 0 or p != ring[k - 1]]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    bbox = [
        min(p[0] for p in ring),
        min(p[1] for p in ring),
        max(p[0] for p in ring),
        max(p[1] for p in ring),
    ]

    md = pd.DatetimeIndex(ds["mid_date"].values)
    start = (
        pd.DatetimeIndex(ds["acquisition_date_img1"].values).min()
        if "acquisition_date_img1" in ds
        else md.min()
    )
    end = (
        pd.DatetimeIndex(ds["acquisition_date_img2"].values).max()
        if "acquisition_date_img2" in ds
        else md.max()
    )

    ref = epsg if epsg is not None else crs.to_wkt()
    dims: dict[str, Any] = {
        "mid_date": {
            "type": "temporal",
            "description": ds["mid_date"].attrs.get("long_name", "mid_date"),
            "extent": [_iso(md.min()), _iso(md.max())],
        },
        "x": {
            "type": "spatial",
            "axis": "x",
            "extent": [x0, x1],
            "step": res,
            "reference_system": ref,
            "description": ds["x"].attrs.get("long_name", "x"),
        },
        "y": {
            "type": "spatial",
            "axis": "y",
            "extent": [y0, y1],
            "step": -res,
            "reference_system": ref,
            "description": ds["y"].attrs.get("long_name", "y"),
        },
    }
    variables: dict[str, Any] = {}
    for name, var in ds.variables.items():
        if name in _DIMS or name == "mapping":
            continue
        entry: dict[str, Any] = {
            "dimensions": list(var.dims),
            "type": "data" if var.dims == _DIMS else "auxiliary",
        }
        desc = var.attrs.get("long_name") or var.attrs.get("description")
        if desc:
            entry["description"] = str(desc)
        if "units" in var.attrs:
            entry["unit"] = str(var.attrs["units"])
        variables[str(name)] = entry

    state = ds.attrs.get(ATTR)
    encoding = "float32"
    if state:
        encoding = (json.loads(state) if isinstance(state, str) else state).get(
            "velocity_encoding", "float32"
        )
    name = posixpath.basename(target.url.rstrip("/"))
    props: dict[str, Any] = {
        "datetime": None,
        "start_datetime": _iso(start),
        "end_datetime": _iso(end),
        "title": str(ds.attrs.get("title", name)),
        "description": f"{ds.sizes['mid_date']} image-pair velocity layers on a {res:g} m grid",
        "cube:dimensions": dims,
        "cube:variables": variables,
        "proj:code": f"EPSG:{epsg}" if epsg is not None else None,
        "proj:shape": [int(ys.size), int(xs.size)],
        "proj:bbox": [x0, y0, x1, y1],
        # affine of the pixel corners, rows top-down (GDAL order: a, b, c, d, e, f)
        "proj:transform": [res, 0.0, x0, 0.0, -res, y1],
        "itslive_dask:velocity_encoding": encoding,
    }
    if epsg is None:
        props["proj:wkt2"] = crs.to_wkt()
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [DATACUBE_SCHEMA, PROJECTION_SCHEMA],
        "id": item_id or (name[: -len(".zarr")] if name.endswith(".zarr") else name),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": bbox,
        "properties": props,
        "links": [],
        "assets": {
            "zarr": {
                "href": asset_href or target.url,
                "type": ZARR_MEDIA_TYPE,
                "title": "the cube (Zarr store; xarray.open_zarr)",
                "roles": ["data"],
            }
        },
    }


def write_stac_item(
    store: str | os.PathLike[str],
    path: str | os.PathLike[str],
    store_options: StorageOptions | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Write :func:`cube_stac_item` of ``store`` as JSON to the local file ``path``; returns it."""
    item = cube_stac_item(store, store_options, **kwargs)
    with open(path, "w") as f:
        json.dump(item, f, indent=1)
        f.write("\n")
    return item
