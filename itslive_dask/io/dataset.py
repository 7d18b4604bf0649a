"""The xarray view of one granule: :func:`open_granule`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.granule.info import KNOWN_VARIABLES, VELOCITY_VARIABLES
from itslive_dask.io.hdf5 import open_h5, read_info, read_raw, read_window, variable_attrs
from itslive_dask.io.urls import source_str

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["open_granule"]


#: Most pixels :func:`open_granule` loads (a hostile file can claim billions: a clear error
#: instead of a memory blow-up; production granules have ~2016 x 1879).
MAX_PIXELS = 50_000_000


def open_granule(
    source: str | os.PathLike,
    *,
    storage_options: dict | None = None,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """Open a granule as a normalised, in-memory :class:`xarray.Dataset`.

    Parameters
    ----------
    source
        Local path or fsspec URL (remote objects are fetched in one request).
    storage_options
        Passed to fsspec for remote URLs.
    variables
        Variables to load. Default: ``vx``, ``vy``, ``v``, ``v_error`` and every other 2-D
        variable of the file.

    Returns
    -------
    xarray.Dataset
        Dims ``(y, x)``; float32 variables with NaN for no data (``interp_mask`` stays
        uint8); ``vx``/``vy``/``v``/``v_error`` always present (all-NaN when the file lacks
        one); a ``spatial_ref`` grid-mapping coordinate readable by rioxarray
        (``ds.rio.crs``); scalar coordinates ``acquisition_date_img1``,
        ``acquisition_date_img2``, ``mid_date`` (datetime64), ``date_dt`` (days),
        ``satellite_img1``, ``satellite_img2``, ``sensor``, ``percent_valid``, ``version``,
        ``epsg``, ``granule_id``; attributes ``granule_id``, ``source``, ``epsg``,
        ``version``, ``resolution``.

    Raises
    ------
    GranuleError
        When the granule cannot be read.
    InvalidInputError
        When ``variables`` names something that is neither in the file nor a known
        ITS_LIVE variable.

    Examples
    --------
    >>> ds = open_granule("s3://its-live-data/velocity_image_pair/.../X.nc",
    ...                   storage_options={"anon": True})  # doctest: +SKIP
    >>> ds.v.mean().item(), ds.rio.crs.to_epsg()  # doctest: +SKIP
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    src = source_str(source)
    with open_h5(source, storage_options) as h5:
        info = read_info(h5, src)
        if variables is None:
            names = list(VELOCITY_VARIABLES) + [
                v for v in info.variables if v not in VELOCITY_VARIABLES
            ]
        else:
            names = list(dict.fromkeys(variables))
            unknown = [v for v in names if v not in info.variables and v not in KNOWN_VARIABLES]
            if unknown:
                raise InvalidInputError(
                    f"{src}: no variable {unknown[0]!r} (the file has {', '.join(info.variables)})"
                )
        ny, nx = info.shape
        if ny * nx > MAX_PIXELS:
            raise GranuleError(
                src,
                f"claims {ny} x {nx} pixels, more than open_granule reads into memory "
                f"({MAX_PIXELS:,}; real granules have about 4 million)",
            )
        data_vars: dict[str, Any] = {}
        for name in names:
            spec = info.spec(name)
            raw = None
            if name == "interp_mask" and spec is not None and spec.dtype == "uint8":
                raw = read_raw(h5, src, spec, 0, ny, 0, nx)  # a flag: keep it as stored
            if raw is not None:
                arr = raw
            else:
                arr = read_window(h5, info, [name], slice(None), slice(None))[name]
            data_vars[name] = (("y", "x"), arr, variable_attrs(h5, name))

    coords = {
        "x": ("x", info.x, {"standard_name": "projection_x_coordinate", "units": "m"}),
        "y": ("y", info.y, {"standard_name": "projection_y_coordinate", "units": "m"}),
        "acquisition_date_img1": info.acquisition_date_img1,
        "acquisition_date_img2": info.acquisition_date_img2,
        "mid_date": info.mid_date,
        "date_dt": ((), np.float64(info.date_dt), {"units": "days"}),
        "satellite_img1": info.satellite_img1,
        "satellite_img2": info.satellite_img2,
        "sensor": info.sensor,
        "percent_valid": np.float64(info.percent_valid),
        "version": np.int64(info.version),
        "epsg": np.int64(info.epsg),
        "granule_id": info.granule_id,
    }
    attrs = {
        "granule_id": info.granule_id,
        "source": src,
        "epsg": int(info.epsg),
        "version": int(info.version),
        "resolution": float(info.resolution),
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds.rio.write_crs(f"EPSG:{info.epsg}", grid_mapping_name="spatial_ref", inplace=True)
    ds["spatial_ref"].attrs["spatial_epsg"] = int(info.epsg)
    return ds
