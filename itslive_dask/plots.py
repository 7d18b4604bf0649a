"""Figures of searches and cubes, written as PNG files.

Every function draws on its own :class:`matplotlib.figure.Figure` with the Agg canvas (no
``pyplot`` state, no display needed, safe in threads and on servers), saves a PNG of a fixed
size (``round(figsize * dpi)`` pixels) and returns its path.

* :func:`plot_granule_counts`: granules per year or per month of the year, stacked by sensor
  (the tutorial's count printout, from a search result or a cube).
* :func:`plot_yearly_mean`: one map per year of the mean speed, with the region outline and a
  shared colour bar in m/yr (the tutorial's facet plot).
* :func:`plot_point_timeseries`: speed at a point through time with error bars.
* :func:`plot_speed_histogram`: histogram of speeds over the cube (computed with Dask).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from itslive_dask._optional import require
from itslive_dask.analysis import _crs_label, as_strings, cube_crs, yearly_mean
from itslive_dask.errors import InvalidInputError

require("matplotlib", "the figures (itslive_dask.plots)")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "plot_granule_counts",
    "plot_point_timeseries",
    "plot_speed_histogram",
    "plot_yearly_mean",
]

log = logging.getLogger(__name__)

#: Colours of the sensor families (stable across figures).
SENSOR_COLORS: dict[str, str] = {
    "landsat": "#1f77b4",
    "sentinel1": "#d62728",
    "sentinel2": "#2ca02c",
}
_MONTH_LABELS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _new_figure(figsize: tuple[float, float], dpi: int) -> Figure:
    """A figure whose PNG is exactly ``round(figsize * dpi)`` pixels (Agg truncates sizes)."""
    w, h = round(figsize[0] * dpi), round(figsize[1] * dpi)
    fig = Figure(figsize=((w + 0.5) / dpi, (h + 0.5) / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InvalidInputError(f"plot path must end with .png, got {str(path)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png", facecolor="white")
    log.info("wrote %s", out)
    return out


def _sensor_color(name: str, k: int) -> str:
    if name in SENSOR_COLORS:
        return SENSOR_COLORS[name]
    cycle = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
    return cycle[k % len(cycle)]


def _dates_and_sensors(data: Any) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """mid_date and sensor of each granule of a granule table or each layer of a cube."""
    if isinstance(data, xr.Dataset | xr.DataArray):
        if "mid_date" not in data.coords:
            raise InvalidInputError("the cube has no mid_date coordinate")
        dates = pd.DatetimeIndex(data["mid_date"].values)
        if "sensor" in data.coords:
            sensors = as_strings(data["sensor"].values)
        else:
            sensors = np.full(len(dates), "all")
        return dates, sensors
    if isinstance(data, pd.DataFrame):
        if "mid_date" not in data.columns:
            raise InvalidInputError("the granule table has no mid_date column")
        dates = pd.DatetimeIndex(pd.to_datetime(data["mid_date"]))
        sensors = (
            as_strings(data["sensor"].to_numpy())
            if "sensor" in data.columns
            else np.full(len(dates), "all")
        )
        return dates, sensors
    raise InvalidInputError(f"expected a granule table or a cube, got {type(data).__name__}")


# --------------------------------------------------------------------------- counts


def plot_granule_counts(
    data: Any,
    path: str | os.PathLike,
    *,
    by: str = "year",
    title: str | None = None,
    figsize: tuple[float, float] = (9.0, 4.5),
    dpi: int = 100,
) -> Path:
    """Bar chart of granules (or cube layers) per year or per month of the year, by sensor.

    Parameters
    ----------
    data
        A granule table (search result) or a cube (one layer per granule).
    path
        Output ``.png`` file (folders are created).
    by
        ``"year"`` (calendar year of ``mid_date``) or ``"month"`` (month of the year, all
        years together: the seasonal sampling).
    title
        Figure title (default says what is counted).
    figsize, dpi
        Figure size in inches and resolution: the PNG is ``round(figsize * dpi)`` pixels.

    Returns
    -------
    pathlib.Path
        The PNG written.
    """
    if by not in ("year", "month"):
        raise InvalidInputError(f"by must be 'year' or 'month', got {by!r}")
    dates, sensors = _dates_and_sensors(data)
    what = "cube layers" if isinstance(data, xr.Dataset | xr.DataArray) else "granules"
    df = pd.DataFrame({"key": dates.year if by == "year" else dates.month, "sensor": sensors})
    index: pd.Index
    if by == "month":
        index = pd.Index(range(1, 13), name="month")
    elif len(df):
        index = pd.Index(range(int(df["key"].min()), int(df["key"].max()) + 1), name="year")
    else:
        index = pd.Index([], name="year")
    counts = pd.crosstab(df["key"], df["sensor"]).reindex(index, fill_value=0)
    counts = counts[sorted(counts.columns)]
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    bottom = np.zeros(len(counts))
    positions = np.arange(len(counts))
    for k, name in enumerate(counts.columns):
        vals = counts[name].to_numpy()
        ax.bar(
            positions,
            vals,
            bottom=bottom,
            color=_sensor_color(name, k),
            label=f"{name} ({int(vals.sum())})",
        )
        bottom += vals
    labels = (
        [_MONTH_LABELS[m - 1] for m in counts.index]
        if by == "month"
        else [str(y) for y in counts.index]
    )
    ax.set_xticks(positions)
    ax.set_xticklabels(
        labels, rotation=45 if len(labels) > 12 else 0, ha="right" if len(labels) > 12 else "center"
    )
    ax.set_xlabel("month of the year (of mid_date)" if by == "month" else "year (of mid_date)")
    ax.set_ylabel(f"number of {what}")
    if len(counts.columns):
        ax.legend(title="sensor", loc="upper left", fontsize="small", ncols=len(counts.columns))
    else:
        ax.text(0.5, 0.5, f"no {what}", transform=ax.transAxes, ha="center", va="center")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(float(bottom.max()) if len(bottom) else 0.0, 1.0) * 1.25)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or f"{len(dates)} {what} per {by}")
    fig.tight_layout()
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- yearly means


def _region_in_crs(region: Any, crs: Any):
    """A region (lon/lat, any form parse_region takes) as a shapely geometry in ``crs``."""
    from itslive_dask.geo.region import parse_region, to_crs

    return to_crs(parse_region(region), crs)


def _outline_xy(geom) -> list[tuple[np.ndarray, np.ndarray]]:
    import shapely

    parts = []
    polys = getattr(geom, "geoms", [geom])
    for poly in polys:
        if poly.is_empty or not hasattr(poly, "exterior"):
            continue
        for ring in [poly.exterior, *poly.interiors]:
            xy = shapely.get_coordinates(ring)
            parts.append((xy[:, 0], xy[:, 1]))
    return parts


def plot_yearly_mean(
    data: xr.Dataset | xr.DataArray,
    path: str | os.PathLike,
    *,
    region: Any = None,
    var: str = "v",
    speed_of_mean: bool = False,
    weighted: bool = False,
    title: str | None = None,
    col_wrap: int = 4,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    panel_size: float = 3.0,
    dpi: int = 100,
) -> Path:
    """Facet plot: one map of the mean speed per year, region outline, shared colour bar.

    Parameters
    ----------
    data
        A cube (its yearly mean of ``var`` is computed with :func:`~itslive_dask.yearly_mean`)
        or yearly means already computed (DataArray with dims ``year, y, x``).
    path
        Output ``.png`` file.
    region
        Outline to draw, in lon/lat (any form :func:`itslive_dask.parse_region` takes). By
        default, the cube's clip region (its ``region_wkt`` attribute, in the cube's CRS).
    var, speed_of_mean, weighted
        Passed to :func:`~itslive_dask.yearly_mean` when ``data`` is a cube.
    title
        Figure title.
    col_wrap
        Maps per row.
    cmap, vmin, vmax
        Colour map and limits (default: 0 and the 99th percentile of the means).
    panel_size
        Width of one map in inches (height follows the grid's aspect ratio).
    dpi
        Resolution.

    Returns
    -------
    pathlib.Path
        The PNG written: ``round((panel_size * ncols + 1) * dpi)`` by
        ``round((panel_height * nrows + 2) * dpi)`` pixels, where ``ncols = min(col_wrap,
        years)``, ``nrows = ceil(years / ncols)`` and ``panel_height = panel_size * ny / nx``
        clipped to ``[1.2, 3 * panel_size]`` inches.
    """
    import shapely

    if isinstance(data, xr.Dataset):
        means = yearly_mean(data, var, speed_of_mean=speed_of_mean, weighted=weighted)
        region_wkt = data.attrs.get("region_wkt")
    elif isinstance(data, xr.DataArray):
        means = data
        region_wkt = data.attrs.get("region_wkt")
    else:
        raise InvalidInputError(f"expected a cube or yearly means, got {type(data).__name__}")
    if "year" not in means.dims or "x" not in means.dims or "y" not in means.dims:
        raise InvalidInputError(f"yearly means must have dims (year, y, x), got {means.dims}")
    if col_wrap < 1:
        raise InvalidInputError(f"col_wrap must be at least 1, got {col_wrap}")
    crs = cube_crs(means if not isinstance(data, xr.Dataset) else data)
    crs_label = _crs_label(crs)
    means = means.transpose("year", "y", "x").load()
    outline = None
    if region is not None:
        outline = _region_in_crs(region, crs)
    elif region_wkt:
        try:
            outline = shapely.from_wkt(region_wkt)
        except Exception:  # a damaged attribute: skip the outline, not the figure
            outline = None
    years = [int(y) for y in means["year"].values]
    n = max(len(years), 1)
    ncols = min(col_wrap, n)
    nrows = math.ceil(n / ncols)
    xs = np.asarray(means["x"].values, dtype="float64")
    ys = np.asarray(means["y"].values, dtype="float64")
    dx = float(np.median(np.abs(np.diff(xs)))) if xs.size > 1 else 120.0
    dy = float(np.median(np.abs(np.diff(ys)))) if ys.size > 1 else dx
    extent_m = (xs.min() - dx / 2, xs.max() + dx / 2, ys.min() - dy / 2, ys.max() + dy / 2)
    extent = tuple(v / 1000.0 for v in extent_m)
    aspect = (extent[3] - extent[2]) / max(extent[1] - extent[0], 1e-9)
    panel_h = min(max(panel_size * aspect, 1.2), 3 * panel_size)
    figsize = (panel_size * ncols + 1.0, panel_h * nrows + 2.0)
    fig = _new_figure(figsize, dpi)
    fig.set_layout_engine("constrained")
    values = means.values
    finite = values[np.isfinite(values)]
    lo = 0.0 if vmin is None else float(vmin)
    hi = (
        float(vmax)
        if vmax is not None
        else (float(np.nanpercentile(finite, 99)) if finite.size else 1.0)
    )
    if not hi > lo:
        hi = lo + 1.0
    units = means.attrs.get("units", "meter/year").replace("meter/year", "m/yr")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    image = None
    for k, ax in enumerate(axes.ravel()):
        if k >= len(years):
            ax.set_axis_off()
            continue
        row, col = divmod(k, ncols)
        image = ax.imshow(
            values[k],
            extent=extent,
            origin="upper" if ys[0] > ys[-1] else "lower",
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            interpolation="nearest",
        )
        if outline is not None:
            for ox, oy in _outline_xy(outline):
                ax.plot(ox / 1000.0, oy / 1000.0, color="white", lw=1.8)
                ax.plot(ox / 1000.0, oy / 1000.0, color="black", lw=0.8)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        label = str(years[k])
        if "count" in means.coords:
            n_layers = int(np.nanmax(means["count"].values[k]))
            label += f" ({n_layers} layer{'s' if n_layers != 1 else ''})"
        ax.set_title(label, fontsize="medium")
        ax.tick_params(labelsize="x-small")
        if col == 0:
            ax.set_ylabel(f"y (km, {crs_label})", fontsize="small")
        if row == nrows - 1 or k + ncols >= len(years):
            ax.set_xlabel(f"x (km, {crs_label})", fontsize="small")
            ax.xaxis.set_tick_params(labelbottom=True)
    if image is not None:
        cbar = fig.colorbar(
            image,
            ax=axes.ravel().tolist(),
            orientation="horizontal",
            extend="max",
            shrink=0.8,
            aspect=40,
        )
        what = (
            "speed of the yearly mean velocity"
            if means.attrs.get("speed_of_mean")
            else "yearly mean speed"
        )
        cbar.set_label(f"{what} ({units})")
    else:
        fig.text(0.5, 0.5, "no data", ha="center", va="center")
    fig.suptitle(
        title
        or f"Yearly mean velocity ({units}), {crs_label}, {means.sizes['x']}x{means.sizes['y']} px of {dx:g} m",
        fontsize="large",
        fontweight="bold",
    )
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- time series


def plot_point_timeseries(
    ts: xr.Dataset,
    path: str | os.PathLike,
    *,
    var: str = "v",
    title: str | None = None,
    figsize: tuple[float, float] = (10.0, 4.5),
    dpi: int = 100,
) -> Path:
    """Speed at one pixel through time, with error bars.

    Parameters
    ----------
    ts
        A time series from :func:`~itslive_dask.point_timeseries` (loaded here if lazy).
    path
        Output ``.png`` file.
    var
        Variable to plot (``"v"`` by default).
    title
        Figure title (default: the point, the pixel and its distance).
    figsize, dpi
        PNG size is ``round(figsize * dpi)`` pixels.

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Vertical bars are ``v_error`` (when present); horizontal bars span the two acquisitions
    of each image pair (``acquisition_date_img1`` to ``acquisition_date_img2``), the period
    the velocity is an average over. Points are coloured by sensor.
    """
    if not isinstance(ts, xr.Dataset) or var not in ts.data_vars or "mid_date" not in ts.dims:
        raise InvalidInputError(
            f"expected a point time series with a {var!r} variable (from point_timeseries)"
        )
    ts = ts.load()
    t = pd.DatetimeIndex(ts["mid_date"].values)
    v = np.asarray(ts[var].values, dtype="float64")
    err = (
        np.asarray(ts["v_error"].values, dtype="float64")
        if "v_error" in ts and var == "v"
        else None
    )
    if "acquisition_date_img1" in ts.coords and "acquisition_date_img2" in ts.coords:
        t1 = pd.DatetimeIndex(ts["acquisition_date_img1"].values)
        t2 = pd.DatetimeIndex(ts["acquisition_date_img2"].values)
        xerr = np.vstack([(t - t1).to_numpy(), (t2 - t).to_numpy()])
        xerr = np.abs(xerr)
    elif "date_dt" in ts.coords:
        half = pd.to_timedelta(np.asarray(ts["date_dt"].values, dtype="float64") / 2, unit="D")
        xerr = np.vstack([half.to_numpy(), half.to_numpy()])
    else:
        xerr = None
    sensors = as_strings(ts["sensor"].values) if "sensor" in ts.coords else np.full(len(t), "all")
    units = (
        ts[var]
        .attrs.get("units", ts.attrs.get("units", "meter/year"))
        .replace("meter/year", "m/yr")
    )
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    ok = np.isfinite(v)
    for k, name in enumerate(sorted(set(sensors[ok]))):
        sel = ok & (sensors == name)
        ax.errorbar(
            t[sel].to_numpy(),
            v[sel],
            yerr=None if err is None else np.where(np.isfinite(err[sel]), err[sel], 0.0),
            xerr=None if xerr is None else xerr[:, sel],
            fmt="o",
            ms=4,
            color=_sensor_color(name, k),
            ecolor=_sensor_color(name, k),
            elinewidth=0.8,
            alpha=0.85,
            capsize=0,
            label=f"{name} ({int(sel.sum())})",
        )
    if ok.any():
        ax.legend(title="sensor", fontsize="small", loc="best")
    else:
        ax.text(0.5, 0.5, "no data at this pixel", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("mid_date (bars: image-pair interval)")
    label = "speed" if var == "v" else var
    ax.set_ylabel(f"{label} ({units})" + (" ± v_error" if err is not None else ""))
    ax.grid(alpha=0.3)
    a = ts.attrs
    if title is None:
        if "requested_lon" in a:
            title = (
                f"{label} at lon {a['requested_lon']:.4f}, lat {a['requested_lat']:.4f}: pixel "
                f"x={float(ts['x']):.1f}, y={float(ts['y']):.1f} m ({a.get('crs', '')}), "
                f"{a.get('distance_m', float('nan')):.0f} m away"
            )
        else:
            title = f"{label} time series"
    ax.set_title(title, fontsize="medium")
    fig.autofmt_xdate()
    fig.tight_layout()
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- histogram


def plot_speed_histogram(
    cube: xr.Dataset,
    path: str | os.PathLike,
    *,
    var: str = "v",
    bins: int = 60,
    vmax: float | None = None,
    figsize: tuple[float, float] = (7.0, 4.5),
    dpi: int = 100,
) -> Path:
    """Histogram of all finite values of ``var`` in the cube (the tutorial's outlier check).

    Counts are computed chunk by chunk with :func:`dask.array.histogram` when the cube is
    lazy, so the cube is never loaded whole. ``vmax`` (default: the maximum) sets the range.
    """
    if not isinstance(cube, xr.Dataset) or var not in cube.data_vars:
        raise InvalidInputError(f"expected a cube with a {var!r} variable")
    import dask.array as da

    arr = cube[var].data
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr), chunks="auto")
    finite = arr[da.isfinite(arr)]
    top = float(vmax) if vmax is not None else float(da.nanmax(arr).compute()) if arr.size else 1.0
    if not np.isfinite(top) or top <= 0:
        top = 1.0
    counts, edges = da.histogram(finite, bins=bins, range=(0.0, top))
    counts = counts.compute()
    units = cube[var].attrs.get("units", "meter/year").replace("meter/year", "m/yr")
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(
        edges[:-1],
        counts,
        width=np.diff(edges),
        align="edge",
        color="#4c72b0",
        edgecolor="white",
        lw=0.3,
    )
    ax.set_xlabel(f"{var} ({units})")
    ax.set_ylabel("number of pixels")
    ax.set_title(
        f"Histogram of {var}: {int(counts.sum()):,} valid pixels in {cube.sizes['mid_date']} layers"
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path, dpi)
