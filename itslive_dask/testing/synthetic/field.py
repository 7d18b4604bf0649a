"""The known truth: an analytic glacier-like ground-velocity field and its region presets.

The field is defined as East/North ground-velocity components (m/yr) as a smooth function of
lon/lat and time. :func:`truth_velocity` expresses it along the axes of any projected CRS by
rotating East/North by the CRS's meridian convergence, taken from
``pyproj.Proj(crs).get_factors(lon, lat).meridian_convergence``. That is deliberately a
different method from the cube engine's (finite-difference Jacobians of the CRS transform), so
tests of the engine compare against an independent truth.

Field shape (local coordinates in km around the region centre, rotated by ``heading_deg``):
a fast trunk whose centre line curves like a sine, flowing downstream (faster towards the
terminus), with two slow tributary bumps; away from the trunk the ice flows slowly towards it
(directions turn by up to ~110 degrees), so both signs of both components occur. Speed:
``S = 10 + (4300 - 10) * f`` with ``0 <= f < 1``, times a time factor
``1 + 0.02 * (years since 2015-01-01)``; between 2015 and 2022 every speed lies in
[10, 5000] m/yr. The time factor is linear, so the mean over an image pair's interval equals
the value at its mid_date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.geometry

from itslive_dask.errors import InvalidInputError
from itslive_dask.testing.synthetic._proj import proj, transformer

__all__ = [
    "REGIONS",
    "Region",
    "get_region",
    "ground_velocity_en",
    "meridian_convergence",
    "rotate_en_to_grid",
    "time_factor",
    "truth_speed",
    "truth_velocity",
]

#: Earth radius used for the local km coordinates of the field (a definition, not geodesy).
_R_KM = 6371.0088
#: Reference epoch of the linear time factor.
_EPOCH = np.datetime64("2015-01-01T00:00:00", "ns")
#: Relative speed-up per year.
TREND_PER_YEAR = 0.02
#: Speed bounds of the time-independent field (m/yr).
SPEED_MIN = 10.0
SPEED_MAX = 4300.0
_DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Region:
    """A synthetic-archive region preset.

    Attributes
    ----------
    name
        Preset name (``"svalbard"``, ``"pine_island"``).
    lon0, lat0
        Centre (degrees).
    width_km, height_km
        Extent of the region rectangle (East-West, North-South) in km.
    epsgs
        Projected CRSs the region's granules come in.
    epsg_weights
        Relative frequency of each CRS (same order as ``epsgs``).
    heading_deg
        Direction the trunk flows to, counter-clockwise from East (180 = towards the West).
    landsat_paths, landsat_rows
        WRS-2 path and row ranges (inclusive) used in Landsat scene names.
    """

    name: str
    lon0: float
    lat0: float
    width_km: float = 30.0
    height_km: float = 24.0
    epsgs: tuple[int, ...] = (3413,)
    epsg_weights: tuple[float, ...] = (1.0,)
    heading_deg: float = 180.0
    landsat_paths: tuple[int, int] = (1, 233)
    landsat_rows: tuple[int, int] = (1, 122)
    _cos_lat0: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (-85.0 <= self.lat0 <= 85.0) or not (-180.0 <= self.lon0 <= 180.0):
            raise InvalidInputError(
                f"region {self.name!r}: centre ({self.lon0}, {self.lat0}) out of range"
            )
        if self.width_km <= 0 or self.height_km <= 0:
            raise InvalidInputError(
                f"region {self.name!r}: width_km and height_km must be positive"
            )
        if len(self.epsgs) == 0 or len(self.epsgs) != len(self.epsg_weights):
            raise InvalidInputError(
                f"region {self.name!r}: epsgs and epsg_weights must have the same non-zero length"
            )
        if any(w < 0 for w in self.epsg_weights) or sum(self.epsg_weights) <= 0:
            raise InvalidInputError(
                f"region {self.name!r}: epsg_weights must be >= 0 with a positive sum"
            )
        for epsg in self.epsgs:
            check_epsg_for_latitude(epsg, self.lat0, what=f"region {self.name!r}")
        object.__setattr__(self, "_cos_lat0", math.cos(math.radians(self.lat0)))

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(min_lon, min_lat, max_lon, max_lat) of the region rectangle."""
        dlon = math.degrees(self.width_km / 2.0 / (_R_KM * self._cos_lat0))
        dlat = math.degrees(self.height_km / 2.0 / _R_KM)
        return (self.lon0 - dlon, self.lat0 - dlat, self.lon0 + dlon, self.lat0 + dlat)

    @property
    def polygon(self) -> shapely.Polygon:
        """The region as a lon/lat polygon (a lon/lat rectangle ``width_km`` x ``height_km``)."""
        return shapely.geometry.box(*self.bbox)

    @property
    def geojson(self) -> dict:
        """The region polygon as a GeoJSON dict."""
        return shapely.geometry.mapping(self.polygon)

    def local_km(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """Local East/North coordinates (km) of lon/lat points: the field's own frame."""
        lon = np.asarray(lon, dtype="float64")
        lat = np.asarray(lat, dtype="float64")
        dlon = (lon - self.lon0 + 180.0) % 360.0 - 180.0
        u = _R_KM * self._cos_lat0 * np.radians(dlon)
        w = _R_KM * np.radians(lat - self.lat0)
        return u, w


def check_epsg_for_latitude(epsg: int, lat: float, *, what: str) -> None:
    """Refuse CRSs that ITS_LIVE would never use at latitude ``lat``.

    UTM north zones (326xx) only north of the equator; UTM south zones (327xx) only between
    the equator and 60S (south of 60S ITS_LIVE uses EPSG:3031); EPSG:3413 north, 3031 south.
    """
    epsg = int(epsg)
    if 32601 <= epsg <= 32660:
        ok = lat >= 0
    elif 32701 <= epsg <= 32760:
        ok = -60.0 <= lat < 0
    elif epsg == 3413:
        ok = lat > 0
    elif epsg == 3031:
        ok = lat < 0
    else:
        raise InvalidInputError(
            f"{what}: EPSG:{epsg} is not an ITS_LIVE granule CRS (UTM 326xx/327xx, 3413, 3031)"
        )
    if not ok:
        raise InvalidInputError(
            f"{what}: EPSG:{epsg} is not used by ITS_LIVE at latitude {lat:.2f}"
        )


#: Built-in region presets.
REGIONS: dict[str, Region] = {
    "svalbard": Region(
        name="svalbard",
        lon0=18.0,
        lat0=78.8,
        width_km=30.0,
        height_km=24.0,
        epsgs=(32633, 32634, 32635, 3413),
        epsg_weights=(0.3, 0.3, 0.1, 0.3),
        heading_deg=180.0,
        landsat_paths=(208, 222),
        landsat_rows=(3, 4),
    ),
    "pine_island": Region(
        name="pine_island",
        lon0=-100.0,
        lat0=-75.2,
        width_km=30.0,
        height_km=24.0,
        epsgs=(3031,),
        epsg_weights=(1.0,),
        heading_deg=165.0,
        landsat_paths=(1, 12),
        landsat_rows=(112, 114),
    ),
}


def get_region(region: str | Region) -> Region:
    """A :class:`Region` from a preset name or a Region."""
    if isinstance(region, Region):
        return region
    try:
        return REGIONS[str(region)]
    except KeyError:
        raise InvalidInputError(
            f"unknown synthetic region {region!r}; use one of {sorted(REGIONS)} or a Region"
        ) from None


# ----------------------------------------------------------------------------- the field
def time_factor(time: Any = None) -> Any:
    """The linear speed factor ``1 + 0.02 * years since 2015-01-01`` (1.0 for ``time=None``).

    ``time`` is anything :func:`numpy.datetime64` / pandas understands (str, datetime,
    Timestamp, datetime64, or an array of them); years are 365.25 days.
    """
    if time is None:
        return 1.0
    t = _to_datetime64(time)
    years = (t - _EPOCH).astype("int64") / (_DAY_NS * 365.25)
    return 1.0 + TREND_PER_YEAR * years


def _to_datetime64(time: Any) -> np.ndarray:
    import pandas as pd

    if isinstance(time, np.ndarray) and np.issubdtype(time.dtype, np.datetime64):
        return time.astype("datetime64[ns]")
    try:
        ts = pd.to_datetime(time)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"cannot read time {time!r}: {exc}") from None
    if isinstance(ts, pd.Timestamp):
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts.to_datetime64().astype("datetime64[ns]")
    idx = pd.DatetimeIndex(ts)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy(dtype="datetime64[ns]")


def ground_velocity_en(
    lon: Any, lat: Any, region: str | Region = "svalbard", time: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Truth ground velocity (East, North) in m/yr at lon/lat points.

    Parameters
    ----------
    lon, lat
        Degrees, any broadcastable shapes.
    region
        Region preset name or :class:`Region` (the field is centred on it).
    time
        Date(s) at which to evaluate the linear trend; ``None`` = the 2015-01-01 field.

    Returns
    -------
    (ve, vn)
        float64 arrays, m/yr.
    """
    reg = get_region(region)
    u, w = reg.local_km(lon, lat)
    speed, theta = _speed_and_direction(reg, u, w)
    speed = speed * time_factor(time)
    return speed * np.cos(theta), speed * np.sin(theta)


def _speed_and_direction(
    reg: Region, u: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Speed (m/yr, 2015) and direction (rad, counter-clockwise from East) in local km."""
    a = math.radians(reg.heading_deg)
    along = u * math.cos(a) + w * math.sin(a)  # downstream distance (km)
    across = -u * math.sin(a) + w * math.cos(a)  # to the left of the flow (km)
    amp, wavelength = 3.0, 40.0
    k = 2.0 * math.pi / wavelength
    centre = amp * np.sin(k * along)
    slope = amp * k * np.cos(k * along)
    d = across - centre  # signed distance from the curving centre line (km)
    trunk = np.exp(-((d / 3.5) ** 2)) * (0.25 + 0.75 / (1.0 + np.exp(-along / 6.0)))
    trib1 = 0.35 * np.exp(-(((along + 6.0) ** 2 + (across - 8.0) ** 2) / 3.0**2))
    trib2 = 0.30 * np.exp(-(((along - 3.0) ** 2 + (across + 8.0) ** 2) / 3.0**2))
    f = 1.0 - (1.0 - trunk) * (1.0 - trib1) * (1.0 - trib2)
    speed = SPEED_MIN + (SPEED_MAX - SPEED_MIN) * np.clip(f, 0.0, 1.0)
    theta = a + np.arctan(slope) - 1.9 * np.tanh(d / 6.0)
    return speed, theta


# ----------------------------------------------------------------------------- projection
def _projected_crs(crs: Any) -> pyproj.CRS:
    try:
        c = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        raise InvalidInputError(f"cannot read CRS {crs!r}: {exc}") from None
    if not c.is_projected:
        raise InvalidInputError(f"truth velocities need a projected CRS, got {c.name!r}")
    return c


def _crs_key(c: pyproj.CRS) -> str:
    epsg = c.to_epsg(min_confidence=100)
    return f"EPSG:{epsg}" if epsg else c.to_wkt()


def _to_lonlat(c: pyproj.CRS) -> pyproj.Transformer:
    return transformer(_crs_key(c), "EPSG:4326")


def _proj_for(c: pyproj.CRS) -> pyproj.Proj:
    key = _crs_key(c)
    return proj(int(key[5:])) if key.startswith("EPSG:") else pyproj.Proj(c)


def meridian_convergence(lon: Any, lat: Any, crs: Any) -> np.ndarray:
    """Meridian convergence (degrees) of ``crs`` at lon/lat, from pyproj's ``get_factors``.

    Sign convention (checked by a finite-difference unit test): true North points at angle
    ``gamma`` counter-clockwise from the grid's +y axis.
    """
    c = _projected_crs(crs)
    factors = _proj_for(c).get_factors(
        np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64"), errcheck=True
    )
    return np.asarray(factors.meridian_convergence, dtype="float64")


def rotate_en_to_grid(ve: Any, vn: Any, gamma_deg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Express an East/North vector along grid axes whose North is rotated by ``gamma_deg``.

    With true North at ``gamma`` counter-clockwise from grid +y, East is at ``gamma``
    counter-clockwise from grid +x, so the grid components are the East/North vector rotated
    counter-clockwise by ``gamma``.
    """
    g = np.radians(gamma_deg)
    cg, sg = np.cos(g), np.sin(g)
    ve = np.asarray(ve, dtype="float64")
    vn = np.asarray(vn, dtype="float64")
    return ve * cg - vn * sg, ve * sg + vn * cg


def truth_velocity(
    x: Any, y: Any, crs: Any, time: Any = None, *, region: str | Region = "svalbard"
) -> tuple[np.ndarray, np.ndarray]:
    """Truth ground velocity along the axes of a projected CRS, at points given in that CRS.

    Parameters
    ----------
    x, y
        Coordinates in ``crs`` (metres), broadcastable arrays (e.g. ``x[None, :]``,
        ``y[:, None]`` for a grid).
    crs
        Any projected CRS pyproj understands (``3413``, ``"EPSG:32633"``, a CRS...).
    time
        Date (or array of dates, broadcastable) for the linear trend; a granule's value is
        the truth at its ``mid_date``.
    region
        The field's region preset (default ``"svalbard"``).

    Returns
    -------
    (vx, vy)
        float64 ground velocities (m/yr) along the CRS's x and y axes.

    Examples
    --------
    >>> vx, vy = truth_velocity(560_000.0, 8_750_000.0, "EPSG:32633", "2018-06-01")
    """
    c = _projected_crs(crs)
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    x, y = np.broadcast_arrays(x, y)
    lon, lat = _to_lonlat(c).transform(x, y, errcheck=True)
    ve, vn = ground_velocity_en(lon, lat, region, time)
    gamma = meridian_convergence(lon, lat, c)
    return rotate_en_to_grid(ve, vn, gamma)


def truth_speed(
    x: Any, y: Any, crs: Any, time: Any = None, *, region: str | Region = "svalbard"
) -> np.ndarray:
    """Truth ground speed (m/yr) at points in ``crs`` (independent of the CRS's axes)."""
    c = _projected_crs(crs)
    x, y = np.broadcast_arrays(np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"))
    lon, lat = pyproj.Transformer.from_crs(c, "EPSG:4326", always_xy=True).transform(
        x, y, errcheck=True
    )
    ve, vn = ground_velocity_en(lon, lat, region, time)
    return np.hypot(ve, vn)
