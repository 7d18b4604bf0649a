"""ITS_LIVE granule file names: parse the pair metadata encoded in a name.

An image-pair granule name is ``<scene 1>_X_<scene 2>_G<res>V<version>_P<percent valid>``
with ``.nc`` appended, where the scene ids follow the naming of their mission:

=============  =====================================================================
family         scene id (acquisition time used)
=============  =====================================================================
``landsat``    ``LC08_L1GT_232113_20201213_20201219_02_T2`` (4th field, a date)
``sentinel2``  ``S2A_MSIL1C_20200101T142729_N0208_R053_T19FDV_20200101T175120``
               (datatake sensing time, 3rd field) or the COG id
               ``S2B_22WEB_20200709_0_L1C`` (a date)
``sentinel1``  ``S1A_IW_SLC__1SSH_20170221T204710_20170221T204737_015387_0193F6_AB07``
               (start time, 5th field)
=============  =====================================================================

Nothing here opens a file: this is pure string parsing, cheap enough for 10^5 names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from itslive_dask.errors import InvalidInputError

__all__ = ["GranuleName", "parse_granule_name", "sensor_of_satellite"]

_LANDSAT = re.compile(
    r"(?P<sat>L[COTEM]0\d)_L1[A-Z]{2}_\d{6}_(?P<date>\d{8})_\d{8}_\d{2}_[A-Z0-9]{2}"
)
_SENTINEL2 = re.compile(
    r"(?P<sat>S2[A-D])_MSIL[12][A-C]_(?P<date>\d{8}T\d{6})_N\d{4}_R\d{3}_T\d{2}[A-Z]{3}"
    r"_\d{8}T\d{6}"
)
_SENTINEL2_COG = re.compile(r"(?P<sat>S2[A-D])_\d{1,2}[A-Z]{3}_(?P<date>\d{8})_\d+_L[12][A-C]")
_SENTINEL1 = re.compile(
    r"(?P<sat>S1[A-D])_[A-Z0-9]{2}_[A-Z]{3}[A-Z_]_[0-9][SA][A-Z]{2}"
    r"_(?P<date>\d{8}T\d{6})_\d{8}T\d{6}_\d{6}_[0-9A-F]{6}_[0-9A-F]{4}"
)
_SCENES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("landsat", _LANDSAT),
    ("sentinel2", _SENTINEL2),
    ("sentinel2", _SENTINEL2_COG),
    ("sentinel1", _SENTINEL1),
)
_SUFFIX = re.compile(r"_G(?P<res>\d{4})V(?P<ver>\d{2})_P(?P<pct>\d{3})$")
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class GranuleName:
    """Metadata encoded in an ITS_LIVE image-pair granule name.

    Attributes
    ----------
    granule_id
        The file name without ``.nc`` (the unique key of a granule).
    scene_1_id, scene_2_id
        The two scene ids on either side of ``_X_``.
    satellite_img1, satellite_img2
        Satellite codes: ``LC08``, ``LE07``, ``LT05``, ``S2A``, ``S1B``...
    sensor
        Family: ``"landsat"``, ``"sentinel1"`` or ``"sentinel2"`` (see ``table.SENSORS``).
    acquisition_date_img1, acquisition_date_img2
        Acquisition times (``datetime64[ns]``) as precise as the name gives them.
    mid_date
        Midpoint of the two acquisitions.
    date_dt
        Absolute separation of the acquisitions in days (image 1 may be the later one).
    resolution
        Pixel size in metres (``G0120`` -> 120.0).
    version
        Product version (``V02`` -> 2).
    percent_valid
        Valid-pixel percentage (``P073`` -> 73.0).
    """

    granule_id: str
    scene_1_id: str
    scene_2_id: str
    satellite_img1: str
    satellite_img2: str
    sensor: str
    acquisition_date_img1: np.datetime64
    acquisition_date_img2: np.datetime64
    mid_date: np.datetime64
    date_dt: float
    resolution: float
    version: int
    percent_valid: float


def sensor_of_satellite(satellite: str) -> str | None:
    """Sensor family of a satellite code (``LC08`` -> ``landsat``), or None if unknown.

    Examples
    --------
    >>> sensor_of_satellite("S2B")
    'sentinel2'
    """
    if re.fullmatch(r"L[COTEM]0\d", satellite):
        return "landsat"
    if re.fullmatch(r"S1[A-D]", satellite):
        return "sentinel1"
    if re.fullmatch(r"S2[A-D]", satellite):
        return "sentinel2"
    return None


def parse_granule_name(name_or_url: str) -> GranuleName:
    """Parse an ITS_LIVE image-pair granule name.

    Parameters
    ----------
    name_or_url
        A bare file name, a local path or a URL (``s3://``, ``https://``...); the ``.nc``
        extension is optional, a URL query string or fragment is ignored.

    Returns
    -------
    GranuleName
        The metadata encoded in the name.

    Raises
    ------
    InvalidInputError
        When the name is not an ITS_LIVE Landsat, Sentinel-1 or Sentinel-2 pair name, or the
        two scenes belong to different sensor families.

    Examples
    --------
    >>> g = parse_granule_name(
    ...     "LC08_L1GT_232113_20201213_20201219_02_T2_X_"
    ...     "LC08_L1GT_232113_20201229_20210308_02_T2_G0120V02_P073.nc")
    >>> g.sensor, g.date_dt, str(g.mid_date)[:10], g.resolution, g.version, g.percent_valid
    ('landsat', 16.0, '2020-12-21', 120.0, 2, 73.0)
    """
    if not isinstance(name_or_url, str):
        raise InvalidInputError(
            f"granule name must be a string, got {type(name_or_url).__name__}: {name_or_url!r}"
        )
    granule_id = _basename(name_or_url)
    suffix = _SUFFIX.search(granule_id)
    pair = granule_id[: suffix.start()] if suffix else ""
    parts = pair.split("_X_")
    if suffix is None or len(parts) != 2:
        raise InvalidInputError(
            f"{name_or_url!r} is not an ITS_LIVE granule name "
            "(expected <scene1>_X_<scene2>_G<res>V<version>_P<valid>.nc)"
        )
    scene1, scene2 = parts
    sensor1, sat1, date1 = _parse_scene(scene1, name_or_url)
    sensor2, sat2, date2 = _parse_scene(scene2, name_or_url)
    if sensor1 != sensor2:
        raise InvalidInputError(
            f"{name_or_url!r}: the two scenes are from different sensor families "
            f"({sensor1}, {sensor2})"
        )
    dt_ns = abs(int((date2 - date1).astype("int64")))
    mid = min(date1, date2) + np.timedelta64(dt_ns // 2, "ns")
    return GranuleName(
        granule_id=granule_id,
        scene_1_id=scene1,
        scene_2_id=scene2,
        satellite_img1=sat1,
        satellite_img2=sat2,
        sensor=sensor1,
        acquisition_date_img1=date1,
        acquisition_date_img2=date2,
        mid_date=mid,
        date_dt=dt_ns / _NS_PER_DAY,
        resolution=float(int(suffix["res"])),
        version=int(suffix["ver"]),
        percent_valid=float(int(suffix["pct"])),
    )


def _basename(name_or_url: str) -> str:
    text = name_or_url.strip()
    if "://" in text:
        text = urlsplit(text).path
    text = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if text.endswith(".nc"):
        text = text[:-3]
    return text


def _parse_scene(scene: str, original: str) -> tuple[str, str, np.datetime64]:
    for sensor, pattern in _SCENES:
        m = pattern.fullmatch(scene)
        if m is None:
            continue
        raw = m["date"]
        try:
            if "T" in raw:
                iso = f"{raw[:4]}-{raw[4:6]}-{raw[6:8]}T{raw[9:11]}:{raw[11:13]}:{raw[13:15]}"
            else:
                iso = f"{raw[:4]}-{raw[4:6]}-{raw[6:8]}"
            date = np.datetime64(iso, "ns")
        except ValueError:
            raise InvalidInputError(
                f"{original!r}: scene {scene!r} has an invalid date {raw!r}"
            ) from None
        return sensor, m["sat"], date
    raise InvalidInputError(
        f"{original!r}: {scene!r} is not a Landsat, Sentinel-1 or Sentinel-2 scene id"
    )
