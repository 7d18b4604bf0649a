"""Analysis of velocity cubes: yearly and monthly means, a point time series, layer counts.

Every function takes a cube as :func:`itslive_dask.open_cube` returns it or as
``xarray.open_zarr`` reads a store written by :func:`itslive_dask.write_cube`: dims
``(mid_date, y, x)``, float32 variables in m/yr with NaN for no data, per-layer coordinates
(``sensor``, ``date_dt``, ...) and a CF grid mapping. Results stay lazy (Dask-backed) where the
input is; call ``.compute()`` or ``.load()`` on them.

Two ways to average speed
-------------------------
``yearly_mean(cube, "v")`` is the **mean of the speeds** ``mean(v)`` of the layers of a year.
``yearly_mean(cube, speed_of_mean=True)`` is the **speed of the mean velocity**
``hypot(mean(vx), mean(vy))``. They differ whenever the direction varies between layers (the
mean of magnitudes is larger or equal; noise in the components biases ``mean(v)`` upwards but
cancels in ``mean(vx)``, ``mean(vy)``). The ITS_LIVE annual mosaics report the latter.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS, Geod

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.transform import transformer

__all__ = [
    "as_strings",
    "cube_crs",
    "describe_cube",
    "layer_counts",
    "monthly_mean",
    "point_timeseries",
    "yearly_mean",
]

log = logging.getLogger(__name__)

_UNITS = "meter/year"


# --------------------------------------------------------------------------- helpers


def cube_crs(cube: xr.Dataset | xr.DataArray) -> CRS:
    """The projected CRS of a cube.

    Read from the CF grid-mapping variable (``mapping``, or the one a variable's
    ``grid_mapping`` attribute names): its ``crs_wkt``, ``spatial_ref`` or ``spatial_epsg``
    attribute; else from rioxarray (``ds.rio.crs``); else from the ``projection`` attribute.

    Raises
    ------
    InvalidInputError
        The cube carries no CRS.
    """
    names = ["mapping"]
    for v in getattr(cube, "data_vars", {}) or [cube]:
        gm = (cube[v] if isinstance(cube, xr.Dataset) else cube).attrs.get("grid_mapping")
        if gm and gm not in names:
            names.append(str(gm))
    candidates: list[Any] = []
    for name in names:
        if name in cube.coords or (isinstance(cube, xr.Dataset) and name in cube.variables):
            attrs = cube[name].attrs
            candidates += [
                attrs.get("crs_wkt"),
                attrs.get("spatial_ref"),
                attrs.get("spatial_epsg"),
            ]
    crs = _first_crs(candidates)
    if crs is not None:
        return crs
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        rio_crs = cube.rio.crs
    except Exception:  # rioxarray raises several types for odd grid mappings
        rio_crs = None
    if rio_crs is not None:
        return CRS.from_user_input(rio_crs.to_wkt())
    crs = _first_crs([cube.attrs.get("projection")])
    if crs is not None:
        return crs
    raise InvalidInputError(
        "the cube has no CRS (no grid mapping 'mapping' with spatial_epsg/crs_wkt)"
    )


def _first_crs(candidates: list[Any]) -> CRS | None:
    for cand in candidates:
        if cand is None or (isinstance(cand, str) and not cand.strip()):
            continue
        try:
            return CRS.from_user_input(int(cand) if str(cand).strip().isdigit() else cand)
        except Exception:  # pyproj raises CRSError, TypeError... for junk
            continue
    return None


def as_strings(values: Any) -> np.ndarray:
    """Any array of text (bytes, ``str``, object, numpy ``StringDType``) -> object array of str."""
    arr = np.asarray(values)
    out = np.empty(arr.shape, dtype=object)
    for i, v in enumerate(arr.ravel().tolist()):
        out.flat[i] = v.decode() if isinstance(v, bytes) else str(v)
    return out


def _check_cube(cube: Any, var: str | None = None) -> xr.Dataset:
    if isinstance(cube, xr.DataArray):
        cube = cube.to_dataset(name=cube.name or "v")
    if not isinstance(cube, xr.Dataset):
        raise InvalidInputError(
            f"expected a cube (xarray.Dataset from open_cube/open_zarr), got {type(cube).__name__}"
        )
    missing = [d for d in ("mid_date", "y", "x") if d not in cube.dims]
    if missing:
        raise InvalidInputError(
            f"the cube has no dimension(s) {', '.join(missing)}; expected (mid_date, y, x)"
        )
    if var is not None and var not in cube.data_vars:
        raise InvalidInputError(
            f"the cube has no variable {var!r}; it has {', '.join(map(str, cube.data_vars)) or 'none'}"
        )
    return cube


def _with_crs(da: xr.DataArray, crs: CRS | None) -> xr.DataArray:
    """Attach ``crs`` as a CF grid mapping ``mapping`` (readable by rioxarray and GDAL)."""
    if crs is None:
        return da
    da = da.drop_vars([c for c in ("mapping", "spatial_ref") if c in da.coords])
    attrs = dict(crs.to_cf())
    attrs["spatial_ref"] = attrs.get("crs_wkt", crs.to_wkt())
    epsg = crs.to_epsg()
    if epsg is not None:
        attrs["spatial_epsg"] = int(epsg)
    da = da.assign_coords(mapping=xr.Variable((), np.int64(0), attrs))
    da.attrs["grid_mapping"] = "mapping"
    return da


def _safe_crs(cube: xr.Dataset) -> CRS | None:
    try:
        return cube_crs(cube)
    except InvalidInputError:
        return None


def _weights(cube: xr.Dataset, var: str) -> xr.DataArray:
    """1/v_error^2 where both ``var`` and ``v_error`` are finite and v_error > 0, else 0."""
    if "v_error" not in cube.data_vars:
        raise InvalidInputError(
            "weighted=True needs a v_error variable; build the cube with variables including 'v_error' "
            "(V1 granules have none) or use weighted=False"
        )
    err = cube["v_error"]
    ok = np.isfinite(err) & (err > 0) & np.isfinite(cube[var])
    return xr.where(ok, 1.0 / (err.astype("float64") ** 2), 0.0)


def _grouped_mean(
    cube: xr.Dataset, var: str, key: str, weighted: bool
) -> tuple[xr.DataArray, xr.DataArray]:
    """Mean of ``var`` per group of mid_date (key ``mid_date.year`` or ``mid_date.month``), and count."""
    data = cube[var]
    if weighted:
        w = _weights(cube, var)
        num = (data.astype("float64").fillna(0.0) * w).groupby(key).sum("mid_date")
        den = w.groupby(key).sum("mid_date")
        count = (w > 0).groupby(key).sum("mid_date")
        mean = (num / den.where(den > 0)).astype("float32")
    else:
        mean = data.groupby(key).mean("mid_date", skipna=True)
        count = data.notnull().groupby(key).sum("mid_date")
    return mean, count


def _period_mean(
    cube: Any, var: str, key: str, weighted: bool, speed_of_mean: bool, label: str
) -> xr.DataArray:
    if speed_of_mean:
        cube = _check_cube(cube, "vx")
        _check_cube(cube, "vy")
        mx, cx = _grouped_mean(cube, "vx", key, weighted)
        my, _ = _grouped_mean(cube, "vy", key, weighted)
        out = np.hypot(mx, my).astype("float32")
        count = cx
        name, what = "v", f"speed of the {label} mean velocity, hypot(mean(vx), mean(vy))"
    else:
        cube = _check_cube(cube, var)
        out, count = _grouped_mean(cube, var, key, weighted)
        name, what = var, f"{label} mean of {var}"
    out = out.assign_coords(count=count.astype("int32"))  # type: ignore[union-attr]
    out["count"].attrs = {
        "description": "number of layers with data that enter the mean at each pixel"
    }
    out.name = name
    out.attrs = {
        "units": cube[var if not speed_of_mean else "vx"].attrs.get("units", _UNITS),
        "long_name": what + (" weighted by 1/v_error^2" if weighted else ""),
        "weighted": int(bool(weighted)),
        "speed_of_mean": int(bool(speed_of_mean)),
    }
    if "region_wkt" in cube.attrs:  # the clip region (cube CRS), for map outlines
        out.attrs["region_wkt"] = cube.attrs["region_wkt"]
    return _with_crs(out, _safe_crs(cube))


# --------------------------------------------------------------------------- public


def yearly_mean(
    cube: xr.Dataset,
    var: str = "v",
    *,
    weighted: bool = False,
    speed_of_mean: bool = False,
) -> xr.DataArray:
    """Mean velocity map of every calendar year (of the layers' ``mid_date``).

    Parameters
    ----------
    cube
        Velocity cube (dims ``mid_date, y, x``).
    var
        Variable to average (``"v"``, ``"vx"``, ``"vy"``, ``"v_error"``...). Ignored when
        ``speed_of_mean=True``.
    weighted
        Weight each layer by ``1 / v_error**2``. Needs a ``v_error`` variable. A pixel of a
        layer enters the weighted mean only where the averaged value is finite **and** its
        ``v_error`` is finite and positive; pixels without a usable error (NaN, e.g. from V1
        granules, or 0) are left out, not given weight 1. Where no layer of a year has a
        usable error, the result is NaN.
    speed_of_mean
        Return ``hypot(mean(vx), mean(vy))`` (the speed of the mean velocity vector) instead
        of ``mean(var)``. A pixel counts in the mean of ``vx`` and ``vy`` where the layer has
        data (``vx`` and ``vy`` are NaN together).

    Returns
    -------
    xarray.DataArray
        Dims ``(year, y, x)``, float32, m/yr, lazy when the cube is. NaN where a year has no
        data at a pixel. Coordinate ``count`` (year, y, x): layers that entered the mean.
        The cube's CRS is kept (``.rio.crs``).

    Raises
    ------
    InvalidInputError
        Not a cube, unknown ``var``, or ``weighted=True`` without ``v_error``.

    Notes
    -----
    NaN layers are skipped (``skipna``): the mean at a pixel uses only the layers that have
    data there. ``mean(v)`` is not ``hypot(mean(vx), mean(vy))``; see the module docstring.

    Examples
    --------
    >>> cube = xr.open_zarr("pine.zarr")                # doctest: +SKIP
    >>> yearly_mean(cube).sel(year=2018).plot()          # doctest: +SKIP
    >>> yearly_mean(cube, speed_of_mean=True, weighted=True).compute()  # doctest: +SKIP
    """
    return _period_mean(cube, var, "mid_date.year", weighted, speed_of_mean, "yearly")


def monthly_mean(
    cube: xr.Dataset,
    var: str = "v",
    *,
    weighted: bool = False,
    speed_of_mean: bool = False,
    climatology: bool = False,
) -> xr.DataArray:
    """Mean velocity map of every month.

    Parameters
    ----------
    cube, var, weighted, speed_of_mean
        As in :func:`yearly_mean`.
    climatology
        ``False`` (default): one map per calendar month of the record (dimension ``month``
        holding the first day of each month, e.g. ``2018-11-01``). ``True``: one map per
        month of the year over all years (dimension ``month`` = 1..12, the seasonal cycle).

    Returns
    -------
    xarray.DataArray
        Dims ``(month, y, x)``, float32, m/yr, with the coordinate ``count``; see
        :func:`yearly_mean` for NaN handling.
    """
    cube = _check_cube(cube)
    if climatology:
        out = _period_mean(
            cube, var, "mid_date.month", weighted, speed_of_mean, "monthly (climatology)"
        )
        return out
    month = pd.DatetimeIndex(cube["mid_date"].values).to_period("M").to_timestamp()
    cube = cube.assign_coords(month=("mid_date", month.to_numpy(dtype="datetime64[ns]")))
    out = _period_mean(cube, var, "month", weighted, speed_of_mean, "monthly")
    return out


def point_timeseries(
    cube: xr.Dataset,
    lon: float,
    lat: float,
    var: str = "v",
) -> xr.Dataset:
    """Time series of the pixel nearest to a lon/lat point.

    The point is transformed into the cube's CRS with pyproj, and the pixel whose centre is
    nearest is selected. A point outside the grid (beyond half a pixel from the outer pixel
    centres) is an error, not silently moved to the edge.

    Parameters
    ----------
    cube
        Velocity cube.
    lon, lat
        The point, in degrees (WGS84).
    var
        Main variable (``"v"`` by default); ``v_error``, ``vx`` and ``vy`` come along when
        the cube has them.

    Returns
    -------
    xarray.Dataset
        Along ``mid_date`` (sorted), lazy when the cube is: ``var`` and, if present,
        ``v_error``, ``vx``, ``vy``; the per-layer coordinates (``date_dt``, ``sensor``,
        acquisition dates...). Scalar coordinates ``x``, ``y`` (the pixel centre, cube CRS)
        and attributes: ``requested_lon``, ``requested_lat``, ``requested_x``,
        ``requested_y`` (the point in the cube CRS), ``offset_x_m``, ``offset_y_m`` (pixel
        centre minus point, in grid metres), ``distance_m`` (geodesic ground distance
        between the point and the pixel centre, metres), ``pixel_lon``, ``pixel_lat``,
        ``crs`` (e.g. ``EPSG:3413``). ``.to_dataframe()`` gives a table.

    Raises
    ------
    InvalidInputError
        Unknown ``var``, a non-finite or out-of-range lon/lat, or a point outside the grid.

    Examples
    --------
    >>> ts = point_timeseries(cube, lon=-100.0, lat=-75.2).load()    # doctest: +SKIP
    >>> ts.attrs["distance_m"]                                       # doctest: +SKIP
    """
    cube = _check_cube(cube, var)
    try:
        lon_f, lat_f = float(lon), float(lat)
    except (TypeError, ValueError):
        raise InvalidInputError(f"lon and lat must be numbers, got {lon!r}, {lat!r}") from None
    if not (np.isfinite(lon_f) and np.isfinite(lat_f)) or abs(lat_f) > 90 or abs(lon_f) > 360:
        raise InvalidInputError(f"point ({lon!r}, {lat!r}) is not a valid lon, lat in degrees")
    crs = cube_crs(cube)
    to_grid = transformer(4326, crs)
    px, py = to_grid.transform(lon_f, lat_f)
    xs = np.asarray(cube["x"].values, dtype="float64")
    ys = np.asarray(cube["y"].values, dtype="float64")
    if xs.size == 0 or ys.size == 0:
        raise InvalidInputError("the cube has an empty grid")
    ix = int(np.argmin(np.abs(xs - px))) if np.isfinite(px) else -1
    iy = int(np.argmin(np.abs(ys - py))) if np.isfinite(py) else -1
    half = _half_pixel(xs, ys)
    inside = (
        ix >= 0
        and iy >= 0
        and abs(xs[ix] - px) <= half[0] * (1 + 1e-9)
        and abs(ys[iy] - py) <= half[1] * (1 + 1e-9)
    )
    if not inside:
        xmin, xmax = xs.min() - half[0], xs.max() + half[0]
        ymin, ymax = ys.min() - half[1], ys.max() + half[1]
        raise InvalidInputError(
            f"point lon={lon_f:g}, lat={lat_f:g} is outside the cube: it is at x={px:.0f}, y={py:.0f} in "
            f"{_crs_label(crs)}, the grid spans x {xmin:.0f}..{xmax:.0f}, y {ymin:.0f}..{ymax:.0f}"
        )
    names = [var] + [v for v in ("v_error", "vx", "vy") if v in cube.data_vars and v != var]
    layer_coords = [c for c in cube.coords if cube[c].dims == ("mid_date",) and c != "mid_date"]
    ts = cube[names].isel(x=ix, y=iy)
    ts = ts.drop_vars([c for c in ts.coords if c not in ("mid_date", "x", "y", *layer_coords)])
    ts = ts.sortby("mid_date")
    gx, gy = float(xs[ix]), float(ys[iy])
    plon, plat = transformer(crs, 4326).transform(gx, gy)
    _, _, dist = Geod(ellps="WGS84").inv(lon_f, lat_f, plon, plat)
    ts.attrs = {
        "requested_lon": lon_f,
        "requested_lat": lat_f,
        "requested_x": float(px),
        "requested_y": float(py),
        "pixel_lon": float(plon),
        "pixel_lat": float(plat),
        "offset_x_m": gx - float(px),
        "offset_y_m": gy - float(py),
        "distance_m": float(dist),
        "crs": _crs_label(crs),
        "units": cube[var].attrs.get("units", _UNITS),
    }
    log.debug("point (%g, %g) -> pixel x=%g y=%g, %.1f m away", lon_f, lat_f, gx, gy, dist)
    return ts


def layer_counts(cube: xr.Dataset) -> pd.DataFrame:
    """Number of layers per year (of ``mid_date``) and sensor family.

    Parameters
    ----------
    cube
        Velocity cube; the ``sensor`` per-layer coordinate gives the family (``landsat``,
        ``sentinel1``, ``sentinel2``); without it, ``satellite_img1``; without either, all
        layers are counted under ``"all"``.

    Returns
    -------
    pandas.DataFrame
        Index ``year`` (int, increasing, only years with layers), one integer column per
        sensor (sorted by name), a ``total`` column, and a ``failed`` column (layers whose
        granule failed to read, from the store's ``granule_status``) when the cube has that
        coordinate.
    """
    cube = _check_cube(cube)
    years = pd.DatetimeIndex(cube["mid_date"].values).year
    if "sensor" in cube.coords:
        sensor = as_strings(cube["sensor"].values)
    elif "satellite_img1" in cube.coords:
        sensor = as_strings(cube["satellite_img1"].values)
    else:
        sensor = np.full(len(years), "all")
    df = pd.DataFrame({"year": years.astype(int), "sensor": sensor})
    if len(df) == 0:
        return pd.DataFrame(
            {"total": pd.Series(dtype="int64")}, index=pd.Index([], name="year", dtype="int64")
        )
    table = pd.crosstab(df["year"], df["sensor"]).sort_index()
    table = table[sorted(table.columns)]
    table.columns.name = None
    table["total"] = table.sum(axis=1)
    if "granule_status" in cube.coords:
        failed = np.asarray(cube["granule_status"].values) == 1
        table["failed"] = (
            pd.Series(failed, index=df.index)
            .groupby(df["year"])
            .sum()
            .reindex(table.index)
            .fillna(0)
        )
    table.index.name = "year"
    return table.astype("int64")


def describe_cube(cube: xr.Dataset) -> dict[str, Any]:
    """Facts about a cube for reports: shape, CRS, extent, dates, resolution, variables.

    Returns
    -------
    dict
        ``shape`` (mid_date, y, x), ``crs`` (``EPSG:xxxx`` or a name), ``resolution`` (m),
        ``extent`` (xmin, ymin, xmax, ymax; pixel edges, cube CRS), ``extent_lonlat``
        (min_lon, min_lat, max_lon, max_lat of the extent's outline), ``start``/``end``
        (first and last ``mid_date``, ISO dates or None), ``variables``, ``chunks`` (of the
        first variable, when chunked).
    """
    cube = _check_cube(cube)
    xs = np.asarray(cube["x"].values, dtype="float64")
    ys = np.asarray(cube["y"].values, dtype="float64")
    half = _half_pixel(xs, ys)
    res = 2 * half[0]
    out: dict[str, Any] = {
        "shape": (int(cube.sizes["mid_date"]), int(cube.sizes["y"]), int(cube.sizes["x"])),
        "variables": [str(v) for v in cube.data_vars if cube[v].dims == ("mid_date", "y", "x")],
        "resolution": float(res),
    }
    crs = _safe_crs(cube)
    out["crs"] = _crs_label(crs) if crs is not None else "unknown"
    if xs.size and ys.size:
        extent = (xs.min() - half[0], ys.min() - half[1], xs.max() + half[0], ys.max() + half[1])
        out["extent"] = tuple(float(v) for v in extent)
        if crs is not None:
            tr = transformer(crs, 4326)
            bx = np.linspace(extent[0], extent[2], 21)
            by = np.linspace(extent[1], extent[3], 21)
            ex = np.concatenate([bx, np.full(21, extent[2]), bx[::-1], np.full(21, extent[0])])
            ey = np.concatenate([np.full(21, extent[1]), by, np.full(21, extent[3]), by[::-1]])
            lon, lat = tr.transform(ex, ey)
            out["extent_lonlat"] = (
                float(np.min(lon)),
                float(np.min(lat)),
                float(np.max(lon)),
                float(np.max(lat)),
            )
    md = pd.DatetimeIndex(cube["mid_date"].values)
    out["start"] = md.min().date().isoformat() if len(md) else None
    out["end"] = md.max().date().isoformat() if len(md) else None
    first = out["variables"][0] if out["variables"] else None
    if first is not None and cube[first].chunks is not None:
        out["chunks"] = tuple(int(c[0]) for c in cube[first].chunks)
    return out


def _half_pixel(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """Half the pixel size along x and y (from the coordinate spacing; 60 m for 1 pixel)."""
    dx = float(np.median(np.abs(np.diff(xs)))) if xs.size > 1 else np.nan
    dy = float(np.median(np.abs(np.diff(ys)))) if ys.size > 1 else np.nan
    if not np.isfinite(dx):
        dx = dy if np.isfinite(dy) else 120.0
    if not np.isfinite(dy):
        dy = dx
    return dx / 2, dy / 2


def _crs_label(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.name
