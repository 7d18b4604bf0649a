"""Reading a granule's header: dates, satellites, grid mapping, axes, variable specs.

:func:`parse_header` works on the datasets of an open file as read-only mappings (``attrs``,
``shape``, ``dtype``, ``ndim``, ``[()]``), so it never touches bytes itself: the readers in
:mod:`itslive_dask.io` open the file and hand its datasets over.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.granule.info import GranuleGrid, GranuleInfo, VariableSpec
from itslive_dask.granule.names import GranuleName, parse_granule_name, sensor_of_satellite

__all__ = ["GRID_MAPPINGS", "attr_str", "parse_grid", "parse_header", "variable_spec"]

GRID_MAPPINGS = ("mapping", "Polar_Stereographic", "UTM_Projection")
_NOT_DATA = frozenset({"x", "y", "time", "img_pair_info", *GRID_MAPPINGS})
_NS_PER_DAY = 86_400 * 10**9
_DATE_RE = re.compile(
    r"(\d{4})-?(\d{2})-?(\d{2})(?:[T ](\d{2}):?(\d{2})(?::?(\d{2})(?:\.(\d+))?)?)?Z?"
)


def parse_header(objs: Mapping[str, Any], names: Collection[str], src: str) -> GranuleInfo:
    """The header of a granule from its root-level datasets.

    Parameters
    ----------
    objs
        Root-level datasets by name (dataset-like: ``attrs``, ``shape``, ``dtype``, ``ndim``,
        ``[()]``).
    names
        Every root-level name of the file (datasets, groups and links).
    src
        Path or URL of the file, for the result and error messages.

    Raises
    ------
    GranuleError
        Not an ITS_LIVE granule (no ``img_pair_info``/``vx``/``vy``), missing or invalid
        ``x``/``y``, unknown grid mapping, unreadable acquisition dates or satellites.
    """
    x, y, gm_name, epsg = _grid_of(objs, names, src)
    pair = objs["img_pair_info"].attrs
    name = _try_parse_name(src)

    date1 = _pair_date(pair, 1, name, src)
    date2 = _pair_date(pair, 2, name, src)
    dt_ns = abs(int((date2 - date1).astype("int64")))
    mid = min(date1, date2) + np.timedelta64(dt_ns // 2, "ns")

    sat1 = _satellite(pair, 1) or (name.satellite_img1 if name else None)
    sat2 = _satellite(pair, 2) or (name.satellite_img2 if name else None)
    if sat1 is None or sat2 is None:
        raise GranuleError(
            src, "cannot tell the satellites (img_pair_info has no satellite_img1/2)"
        )
    sensor = sensor_of_satellite(sat1) or (name.sensor if name else None)
    if sensor is None:
        raise GranuleError(src, f"unknown satellite {sat1!r}")

    pct = _attr_float(pair, "roi_valid_percentage")
    if pct is None:
        pct = name.percent_valid if name else float("nan")
    if name is not None:
        version = name.version
    else:
        version = 1 if ("aquisition_date_img1" in pair or gm_name != "mapping") else 2
    resolution = _resolution(x, y, name, src)

    specs = tuple(
        variable_spec(k, obj)
        for k, obj in objs.items()
        if k not in _NOT_DATA and k != gm_name and _is_data(obj, (len(y), len(x)))
    )
    return GranuleInfo(
        source=src,
        granule_id=name.granule_id if name else _stem(src),
        epsg=epsg,
        x=x,
        y=y,
        resolution=resolution,
        version=int(version),
        acquisition_date_img1=date1,
        acquisition_date_img2=date2,
        mid_date=mid,
        date_dt=dt_ns / _NS_PER_DAY,
        satellite_img1=sat1,
        satellite_img2=sat2,
        sensor=sensor,
        percent_valid=float(pct),
        variables=tuple(s.name for s in specs),
        specs=specs,
    )


def parse_grid(
    objs: Mapping[str, Any], names: Collection[str], src: str, variables: Sequence[str]
) -> GranuleGrid:
    """The grid of a granule and the decoding specs of ``variables``: the light header.

    It checks what :func:`parse_header` checks about the file being an ITS_LIVE granule
    (``img_pair_info``, ``vx``/``vy``, ``x``/``y``, the grid mapping) but reads no date,
    satellite or other attribute, and only the variables asked for: what a block task needs
    when the granule table already has the rest.

    Parameters
    ----------
    objs
        Root-level datasets by name; only the ones needed are accessed, so a mapping that
        opens datasets on demand keeps the read small.
    names
        Every root-level name of the file (only ``in`` is used).
    src
        Path or URL of the file, for the result and error messages.
    variables
        Variables whose specs are wanted; one the file lacks (or holds with another shape)
        has no spec.

    Raises
    ------
    GranuleError
        As :func:`parse_header` for a file that is not an ITS_LIVE granule.
    """
    x, y, _, epsg = _grid_of(objs, names, src)
    shape = (len(y), len(x))
    specs = []
    for name in dict.fromkeys(variables):
        obj = None if name in _NOT_DATA else objs.get(name)
        if _is_data(obj, shape):
            specs.append(variable_spec(name, obj))
    return GranuleGrid(source=src, epsg=epsg, x=x, y=y, specs=tuple(specs))


def _grid_of(
    objs: Mapping[str, Any], names: Collection[str], src: str
) -> tuple[np.ndarray, np.ndarray, str, int]:
    """``(x, y, grid mapping name, EPSG)`` after the checks that make a file a granule."""
    has_pair = "img_pair_info" in objs
    has_v = "vx" in objs and "vy" in objs
    if not (has_pair or has_v):
        raise GranuleError(
            src, "not an ITS_LIVE velocity granule (no img_pair_info, vx or vy variable)"
        )
    x = _axis(objs, "x", src)
    y = _axis(objs, "y", src)
    if not has_v:
        raise GranuleError(src, "not an ITS_LIVE velocity granule (no vx/vy variables)")
    if not has_pair:
        raise GranuleError(src, "not an ITS_LIVE velocity granule (no img_pair_info variable)")
    gm_name, epsg = _grid_mapping(names, objs, src)
    return x, y, gm_name, epsg


def _is_data(obj: Any, shape: tuple[int, int]) -> bool:
    return obj is not None and obj.shape in (shape, (1, *shape)) and obj.dtype.kind in "iuf"


def _axis(objs: Mapping[str, Any], key: str, src: str) -> np.ndarray:
    obj = objs.get(key)
    if obj is None:
        raise GranuleError(src, f"missing {key} coordinate variable (x/y pixel centres)")
    arr = np.asarray(obj[()], dtype="float64")
    if arr.ndim != 1 or arr.size == 0:
        raise GranuleError(src, f"{key} coordinate variable must be 1-D and non-empty")
    if not np.all(np.isfinite(arr)):
        raise GranuleError(src, f"{key} coordinate variable has non-finite values")
    if arr.size > 1:
        d = np.diff(arr)
        if not (np.all(d > 0) or np.all(d < 0)):
            raise GranuleError(src, f"{key} coordinate variable is not strictly monotonic")
    arr.flags.writeable = False  # shared by every window of this granule: keep it intact
    return arr


def _grid_mapping(names: Collection[str], objs: Mapping[str, Any], src: str) -> tuple[str, int]:
    gm = attr_str(objs["vx"].attrs, "grid_mapping")
    if gm is None:
        gm = next((k for k in GRID_MAPPINGS if k in objs), None)
        if gm is None:
            raise GranuleError(
                src, f"no grid mapping variable (expected one of {', '.join(GRID_MAPPINGS)})"
            )
    obj = objs.get(gm)
    if obj is None:
        problem = "is not a variable" if gm in names else "is missing"
        raise GranuleError(src, f"unknown grid mapping: variable {gm!r} named by vx {problem}")
    epsg = _attr_float(obj.attrs, "spatial_epsg")
    if epsg is not None and np.isfinite(epsg) and epsg > 0:
        code = int(epsg)
    else:
        code = None
        for key in ("crs_wkt", "spatial_ref"):
            wkt = attr_str(obj.attrs, key)
            if wkt:
                code = _epsg_from_wkt(wkt)
                if code is not None:
                    break
        if code is None:
            raise GranuleError(
                src, f"unknown grid mapping {gm!r} (no spatial_epsg and no EPSG-coded crs_wkt)"
            )
    if code is None or not _is_projected_epsg(code):
        raise GranuleError(
            src, f"unknown grid mapping {gm!r}: EPSG:{code} is not a known projected CRS"
        )
    return gm, code


@functools.lru_cache(maxsize=256)
def _is_projected_epsg(code: int) -> bool:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return bool(CRS.from_epsg(code).is_projected)
    except CRSError:
        return False


@functools.lru_cache(maxsize=64)
def _epsg_from_wkt(wkt: str) -> int | None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_wkt(wkt).to_epsg()
    except CRSError:
        return None


def _pair_date(
    attrs: Mapping[str, Any], img: int, name: GranuleName | None, src: str
) -> np.datetime64:
    for key in (f"acquisition_date_img{img}", f"aquisition_date_img{img}"):
        text = attr_str(attrs, key)
        if text:
            date = _parse_datetime(text)
            if date is None:
                raise GranuleError(src, f"img_pair_info {key}={text!r} is not a date")
            return date
    if name is not None:
        return getattr(name, f"acquisition_date_img{img}")
    raise GranuleError(src, f"img_pair_info has no acquisition_date_img{img}")


def _parse_datetime(text: str) -> np.datetime64 | None:
    """Parse ``20201213``, ``20201213T14:09:56.123``, ``2020-12-13T14:09:56Z``..."""
    m = _DATE_RE.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hh, mm, ss, frac = m.groups()
    iso = f"{year}-{month}-{day}T{hh or '00'}:{mm or '00'}:{ss or '00'}"
    if frac:
        iso += "." + frac[:9]
    try:
        return np.datetime64(iso, "ns")
    except ValueError:
        return None


def _satellite(attrs: Mapping[str, Any], img: int) -> str | None:
    """Normalise the img_pair_info satellite of image ``img`` to ``LC08``/``S2A``/``S1B``."""
    raw = attrs.get(f"satellite_img{img}")
    if raw is None:
        return None
    sat = _as_scalar(raw)
    if isinstance(sat, float):  # V1 stores Landsat 7 as 7.0
        if not np.isfinite(sat):
            return None
        sat = str(int(sat))
    sat = str(sat).strip()
    if sensor_of_satellite(sat):
        return sat
    mission = (attr_str(attrs, f"mission_img{img}") or "").strip().upper()
    sensor = (attr_str(attrs, f"sensor_img{img}") or "").strip().upper()
    if mission == "S" and re.fullmatch(r"[12][A-D]", sat.upper()):
        return "S" + sat.upper()
    if mission == "L" and sat.isdigit():
        number = int(sat)
        if sensor[:1] not in ("C", "O", "T", "E", "M"):
            sensor = {4: "T", 5: "T", 7: "E", 8: "C", 9: "C"}.get(number, "")
        code = f"L{sensor[:1]}{number:02d}"
        return code if sensor_of_satellite(code) else None
    return None


def _resolution(x: np.ndarray, y: np.ndarray, name: GranuleName | None, src: str) -> float:
    if x.size > 1:
        return float(abs(x[1] - x[0]))
    if y.size > 1:
        return float(abs(y[1] - y[0]))
    if name is not None:
        return name.resolution
    raise GranuleError(src, "cannot tell the pixel size of a 1x1 grid")


def variable_spec(name: str, ds: Any) -> VariableSpec:
    """How to decode dataset ``ds`` (fill values, CF packing, time axis, dtype)."""
    dtype = ds.dtype
    attrs = ds.attrs
    fills: list[int | float] = []
    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            for v in np.atleast_1d(np.asarray(attrs[key])).ravel():
                fv = _fill_in_dtype(v, dtype)
                if fv is not None and fv not in fills:
                    fills.append(fv)
    if "flag_values" in attrs:  # a fill that is also a flag (interp_mask 0=measured) is data
        flags = {float(f) for f in np.atleast_1d(np.asarray(attrs["flag_values"])).ravel()}
        fills = [f for f in fills if float(f) not in flags]
    return VariableSpec(
        name=name,
        fill_values=tuple(fills),
        scale_factor=_attr_float(attrs, "scale_factor"),
        add_offset=_attr_float(attrs, "add_offset"),
        time_axis=ds.ndim == 3,
        dtype=dtype.name,
    )


def _fill_in_dtype(value: Any, dtype: np.dtype) -> int | float | None:
    try:
        fv = float(value)
    except (TypeError, ValueError):
        return None
    if np.isnan(fv):
        return None  # NaN never equals anything: float NaNs are already missing
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if fv != int(fv) or not (info.min <= fv <= info.max):
            return None
        return int(fv)
    return fv


def _try_parse_name(src: str) -> GranuleName | None:
    try:
        return parse_granule_name(src)
    except InvalidInputError:
        return None


def _stem(src: str) -> str:
    base = src.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return base[:-3] if base.endswith(".nc") else base


def _as_scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return value
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def attr_str(attrs: Mapping[str, Any], key: str) -> str | None:
    """Attribute ``key`` as a string (bytes decoded), or None when absent or an array."""
    if key not in attrs:
        return None
    value = _as_scalar(attrs[key])
    if isinstance(value, np.ndarray):
        return None
    return str(value)


def _attr_float(attrs: Mapping[str, Any], key: str) -> float | None:
    if key not in attrs:
        return None
    value = _as_scalar(attrs[key])
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
