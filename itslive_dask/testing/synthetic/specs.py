"""Planning a synthetic archive: configuration and per-granule specifications (pure, no IO).

:func:`make_granule_specs` turns a :class:`SyntheticConfig` into a list of frozen
:class:`GranuleSpec` objects that hold everything needed to render one granule (dates,
satellites, scene ids, CRS, grid window, data gaps, valid percentage, file name and archive
key). Rendering (:mod:`.render`) and encoding (:mod:`.netcdf`) only read the spec, so a spec
can be shipped to a thread or process and always yields the same granule.

Determinism: granule ``i`` draws from ``numpy.random.default_rng([seed, i])``, so the same seed
gives the same granules and a larger ``n_granules`` only appends granules.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import shapely

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.region import to_crs
from itslive_dask.testing.synthetic._proj import transformer
from itslive_dask.testing.synthetic.field import Region, check_epsg_for_latitude, get_region

__all__ = [
    "REALISTIC_CHUNK_ROWS",
    "REALISTIC_NOISE_STD",
    "REALISTIC_SHAPE",
    "SENSOR_FOLDERS",
    "SIZES",
    "GapSpec",
    "GranuleSpec",
    "SyntheticConfig",
    "make_granule_specs",
    "tile_folder",
]

#: Sensor family -> folder of the public archive (``velocity_image_pair/<folder>/v02/...``).
SENSOR_FOLDERS: dict[str, str] = {
    "landsat": "landsatOLI",
    "sentinel1": "sentinel1",
    "sentinel2": "sentinel2",
}

#: Granule size modes of :class:`SyntheticConfig`.
SIZES: tuple[str, ...] = ("small", "realistic")
#: (ny, nx) of a realistic-size V2 granule (the real G0120V02 file in shared/data/real);
#: realistic V1 granules cover the same ground with half as many 240 m pixels per axis.
REALISTIC_SHAPE: tuple[int, int] = (1879, 2016)
#: Rows of the full-width row chunks of realistic V2 granules (chunks ``(640, nx)``).
REALISTIC_CHUNK_ROWS = 640
#: Noise (m/yr) of realistic granules when ``noise_std`` is left at 0: with it each int16
#: velocity variable compresses to about 1 byte per pixel (gzip 2 + shuffle), as real ones do.
REALISTIC_NOISE_STD = 25.0

#: Pixel-centre alignment (metres, modulo the resolution) of production grids.
ALIGNMENT: dict[float, tuple[float, float]] = {120.0: (52.5, 67.5), 240.0: (112.5, 127.5)}


@dataclass(frozen=True)
class _Satellite:
    name: str
    family: str
    repeat_days: int
    phase_days: int
    first: np.datetime64
    last: np.datetime64 | None = None


# Exact-repeat cycles and the interleaving of the twin satellites; operating periods.
_SATELLITES: tuple[_Satellite, ...] = (
    _Satellite("LC08", "landsat", 16, 0, np.datetime64("2013-04-11")),
    _Satellite("LC09", "landsat", 16, 8, np.datetime64("2021-11-01")),
    _Satellite("S2A", "sentinel2", 10, 0, np.datetime64("2015-07-01")),
    _Satellite("S2B", "sentinel2", 10, 5, np.datetime64("2017-07-01")),
    _Satellite("S1A", "sentinel1", 12, 0, np.datetime64("2014-10-03")),
    _Satellite("S1B", "sentinel1", 12, 6, np.datetime64("2016-09-26"), np.datetime64("2021-12-22")),
)
_FAMILY_HOUR = {"landsat": 11, "sentinel2": 12, "sentinel1": 15}
_DAY0 = np.datetime64("2000-01-01")


@dataclass(frozen=True)
class SyntheticConfig:
    """What synthetic archive to generate.

    Attributes
    ----------
    region
        Region preset name (``"svalbard"``, ``"pine_island"``) or a :class:`Region`.
    n_granules
        Number of granules.
    seed
        Random seed; the same seed gives the same archive.
    start, end
        Acquisition dates of all images lie in ``[start, end]`` (ISO dates).
    separation_days
        (min, max) days between the two images of a pair.
    sensor_weights
        Relative frequency of the sensor families ``landsat`` (Landsat 8/9), ``sentinel1``
        (Sentinel-1 A/B), ``sentinel2`` (Sentinel-2 A/B). Satellites are only used within
        their operating periods.
    epsg_weights
        Relative frequency of each granule CRS; ``None`` = the region's own mix.
    v1_fraction
        Fraction of version-1 granules (240 m, Landsat 8, V1 encoding).
    granule_pixels
        (min, max) width/height in pixels of V2 (120 m) granules; V1 granules have half as
        many 240 m pixels (same ground size).
    outside_fraction
        Fraction of granules placed just outside the region (they do not intersect it).
    swath_fraction
        Fraction of granules cut by a partial-swath edge.
    cloud_holes
        Mean number of random data holes per optical granule (a fifth of that for radar).
    noise_std
        Standard deviation (m/yr) of Gaussian noise added to vx and vy before quantisation;
        0 (default) makes every granule reproduce the truth within int16 rounding. With
        ``size="realistic"``, 0 means :data:`REALISTIC_NOISE_STD`.
    size
        ``"small"`` (default): granules of ``granule_pixels`` pixels, V2 chunks of
        ``min(512, n)``. ``"realistic"``: the size and layout of production granules (see
        :data:`REALISTIC_SHAPE`): V2 granules of 1879 x 2016 px at 120 m in full-width row
        chunks ``(640, 2016)``, gzip 2 + shuffle, with noise on every velocity variable and
        varying chip sizes so that each file is ~20 MB (about 1 byte per pixel per velocity
        variable); ``granule_pixels`` is ignored. The truth functions are unchanged, and the
        same seed gives the same pairs, dates and CRSs as ``"small"`` (sizes, corners, noise
        and valid percentages differ).
    """

    region: str | Region = "svalbard"
    n_granules: int = 300
    seed: int = 0
    start: str = "2015-01-01"
    end: str = "2022-12-31"
    separation_days: tuple[int, int] = (5, 400)
    sensor_weights: Mapping[str, float] = field(
        default_factory=lambda: {"landsat": 0.4, "sentinel2": 0.35, "sentinel1": 0.25}
    )
    epsg_weights: Mapping[int, float] | None = None
    v1_fraction: float = 0.1
    granule_pixels: tuple[int, int] = (200, 300)
    outside_fraction: float = 0.05
    swath_fraction: float = 0.5
    cloud_holes: float = 2.0
    noise_std: float = 0.0
    size: str = "small"

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise InvalidInputError(f"size must be one of {SIZES}, got {self.size!r}")
        reg = get_region(self.region)
        object.__setattr__(self, "region", reg)
        if not isinstance(self.n_granules, (int, np.integer)) or self.n_granules < 0:
            raise InvalidInputError(
                f"n_granules must be a non-negative integer, got {self.n_granules!r}"
            )
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InvalidInputError(f"seed must be a non-negative integer, got {self.seed!r}")
        try:
            start, end = np.datetime64(self.start, "D"), np.datetime64(self.end, "D")
        except ValueError as exc:
            raise InvalidInputError(f"start/end must be ISO dates: {exc}") from None
        if start >= end:
            raise InvalidInputError(f"start ({self.start}) must be before end ({self.end})")
        lo, hi = self.separation_days
        if not (1 <= lo <= hi):
            raise InvalidInputError(
                f"separation_days must be (min, max) with 1 <= min <= max, got {self.separation_days}"
            )
        weights = dict(self.sensor_weights)
        unknown = set(weights) - set(SENSOR_FOLDERS)
        if (
            unknown
            or not weights
            or any(w < 0 for w in weights.values())
            or sum(weights.values()) <= 0
        ):
            raise InvalidInputError(
                f"sensor_weights must map some of {sorted(SENSOR_FOLDERS)} to weights >= 0 with a positive sum, got {weights}"
            )
        object.__setattr__(self, "sensor_weights", weights)
        if self.epsg_weights is not None:
            ew = {int(k): float(v) for k, v in dict(self.epsg_weights).items()}
            if not ew or any(w < 0 for w in ew.values()) or sum(ew.values()) <= 0:
                raise InvalidInputError(
                    f"epsg_weights must have weights >= 0 with a positive sum, got {ew}"
                )
            for epsg in ew:
                check_epsg_for_latitude(epsg, reg.lat0, what="epsg_weights")
            object.__setattr__(self, "epsg_weights", ew)
        for name in ("v1_fraction", "outside_fraction", "swath_fraction"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise InvalidInputError(f"{name} must be in [0, 1], got {value!r}")
        pmin, pmax = self.granule_pixels
        if not (8 <= pmin <= pmax <= 4000):
            raise InvalidInputError(
                f"granule_pixels must be (min, max) with 8 <= min <= max <= 4000, got {self.granule_pixels}"
            )
        if self.cloud_holes < 0 or self.noise_std < 0:
            raise InvalidInputError("cloud_holes and noise_std must be >= 0")

    @property
    def region_obj(self) -> Region:
        """The :class:`Region` (``region`` is normalised to one at construction)."""
        assert isinstance(self.region, Region)
        return self.region

    @property
    def epsg_mix(self) -> dict[int, float]:
        """CRS -> weight actually used."""
        if self.epsg_weights is not None:
            return dict(self.epsg_weights)
        reg = self.region_obj
        return dict(zip(reg.epsgs, reg.epsg_weights, strict=True))


_OUTSIDE_GAP_M = (1000.0, 4000.0)


@dataclass(frozen=True)
class GapSpec:
    """Where a granule has no data: a partial-swath edge and elliptical holes.

    ``swath`` is ``(angle_rad, cut)`` or ``None``: pixels whose normalised distance along the
    direction ``angle`` from the granule centre exceeds ``cut`` are missing. ``holes`` are
    ``(row, col, r_row, r_col, angle_rad)`` ellipses in pixel units.
    """

    swath: tuple[float, float] | None = None
    holes: tuple[tuple[float, float, float, float, float], ...] = ()

    def valid_mask(self, ny: int, nx: int) -> np.ndarray:
        """Boolean (ny, nx) array, True where the granule has data."""
        valid = np.ones((ny, nx), dtype=bool)
        if self.swath is not None:
            angle, cut = self.swath
            rows = np.arange(ny, dtype="float64")[:, None]
            cols = np.arange(nx, dtype="float64")[None, :]
            half = 0.5 * math.hypot(nx, ny)
            t = (
                (cols - (nx - 1) / 2) * math.cos(angle) + (rows - (ny - 1) / 2) * math.sin(angle)
            ) / half
            valid &= t <= cut
        for r0, c0, rr, rc, ang in self.holes:
            reach = max(rr, rc)
            ra, rb = max(0, math.floor(r0 - reach)), min(ny, math.ceil(r0 + reach) + 1)
            ca_, cb = max(0, math.floor(c0 - reach)), min(nx, math.ceil(c0 + reach) + 1)
            if ra >= rb or ca_ >= cb:
                continue
            dr = np.arange(ra, rb, dtype="float64")[:, None] - r0
            dc = np.arange(ca_, cb, dtype="float64")[None, :] - c0
            cs, sn = math.cos(ang), math.sin(ang)
            a = (dr * cs + dc * sn) / rr
            b = (-dr * sn + dc * cs) / rc
            valid[ra:rb, ca_:cb] &= a * a + b * b > 1.0
        return valid


@dataclass(frozen=True)
class GranuleSpec:
    """Everything needed to render and name one synthetic granule.

    ``x0``/``y0`` are the centres of the first column / first (top) row; ``y`` decreases
    down the rows, as in production granules.
    """

    index: int
    granule_id: str
    key: str
    version: int
    sensor: str
    satellite_img1: str
    satellite_img2: str
    scene_id_img1: str
    scene_id_img2: str
    acquisition_img1: dt.datetime
    acquisition_img2: dt.datetime
    epsg: int
    resolution: float
    x0: float
    y0: float
    nx: int
    ny: int
    gaps: GapSpec
    percent_valid: int
    seed: int
    noise_std: float
    region: Region
    flight_direction: str = ""
    processing_delay_s: int = 0
    size: str = "small"

    @property
    def realistic(self) -> bool:
        """True for a granule of the ``size="realistic"`` mode (production size and layout)."""
        return self.size == "realistic"

    @property
    def mid_date(self) -> dt.datetime:
        """Midpoint of the two acquisitions."""
        return self.acquisition_img1 + (self.acquisition_img2 - self.acquisition_img1) / 2

    @property
    def date_dt(self) -> float:
        """Separation in days (float)."""
        return (self.acquisition_img2 - self.acquisition_img1) / dt.timedelta(days=1)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates (float64, increasing)."""
        return self.x0 + self.resolution * np.arange(self.nx, dtype="float64")

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (float64, decreasing)."""
        return self.y0 - self.resolution * np.arange(self.ny, dtype="float64")

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) pixel-edge bounds in the granule CRS."""
        h = self.resolution / 2
        return (
            self.x0 - h,
            self.y0 - self.resolution * (self.ny - 1) - h,
            self.x0 + self.resolution * (self.nx - 1) + h,
            self.y0 + h,
        )

    @cached_property
    def footprint(self) -> shapely.Polygon:
        """Lon/lat footprint polygon of the pixel-edge bounds (edges densified, CCW)."""
        return _footprint_lonlat(self.epsg, self.bounds)

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        """Lon/lat of the grid centre."""
        xmin, ymin, xmax, ymax = self.bounds
        lon, lat = transformer(self.epsg, 4326).transform((xmin + xmax) / 2, (ymin + ymax) / 2)
        return float(lon), float(lat)

    def valid_mask(self) -> np.ndarray:
        """Boolean (ny, nx) array, True where the granule has data."""
        return self.gaps.valid_mask(self.ny, self.nx)


def _footprint_lonlat(
    epsg: int, bounds: tuple[float, float, float, float], per_edge: int = 4
) -> shapely.Polygon:
    xmin, ymin, xmax, ymax = bounds
    f = np.linspace(0.0, 1.0, per_edge + 1)[:-1]
    xs = np.concatenate(
        [
            xmin + f * (xmax - xmin),
            np.full_like(f, xmax),
            xmax - f * (xmax - xmin),
            np.full_like(f, xmin),
        ]
    )
    ys = np.concatenate(
        [
            np.full_like(f, ymin),
            ymin + f * (ymax - ymin),
            np.full_like(f, ymax),
            ymax - f * (ymax - ymin),
        ]
    )
    lon, lat = transformer(epsg, 4326).transform(xs, ys)
    poly = shapely.Polygon(np.column_stack([lon, lat]))
    return (
        shapely.orient_polygons(poly)
        if hasattr(shapely, "orient_polygons")
        else shapely.geometry.polygon.orient(poly)
    )


def tile_folder(lon: float, lat: float) -> str:
    """The archive's 10-degree folder name of a point, e.g. ``N70E010`` for (18E, 78.8N)."""
    la = int(math.floor(lat / 10.0) * 10)
    lo = int(math.floor(((lon + 180.0) % 360.0 - 180.0) / 10.0) * 10)
    return f"{'N' if la >= 0 else 'S'}{abs(la):02d}{'E' if lo >= 0 else 'W'}{abs(lo):03d}"


# ----------------------------------------------------------------------------- planning
def make_granule_specs(config: SyntheticConfig | None = None) -> list[GranuleSpec]:
    """Plan every granule of the archive described by ``config`` (pure, deterministic).

    Examples
    --------
    >>> specs = make_granule_specs(SyntheticConfig(n_granules=3, seed=1))
    >>> [s.granule_id.endswith(f"P{s.percent_valid:03d}") for s in specs]
    [True, True, True]
    """
    config = config or SyntheticConfig()
    planner = _Planner(config)
    specs = [planner.plan(i) for i in range(config.n_granules)]
    ids = [s.granule_id for s in specs]
    if len(set(ids)) != len(ids):  # astronomically unlikely (random scene ids); keep the contract
        raise InvalidInputError("synthetic granule names collided; use another seed")
    return specs


class _Planner:
    def __init__(self, config: SyntheticConfig):
        self.config = config
        self.region = config.region_obj
        self.start = np.datetime64(config.start, "D")
        self.end = np.datetime64(config.end, "D")
        fam = {k: v for k, v in config.sensor_weights.items() if v > 0}
        self.families = sorted(fam)
        p = np.array([fam[f] for f in self.families], dtype="float64")
        self.family_p = p / p.sum()
        mix = config.epsg_mix
        self.epsgs = sorted(e for e, w in mix.items() if w > 0)
        q = np.array([mix[e] for e in self.epsgs], dtype="float64")
        self.epsg_p = q / q.sum()
        self.acquisitions = {f: self._acquisitions(f, None) for f in self.families}
        self.acquisitions_v1 = self._acquisitions("landsat", ("LC08",))
        self.region_bounds = {e: to_crs(self.region.polygon, e).bounds for e in self.epsgs}

    def _acquisitions(
        self, family: str, only: tuple[str, ...] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(days, satellite index) of every acquisition of ``family`` within [start, end]."""
        days = np.arange(self.start, self.end + 1)
        out_days, out_sats = [], []
        for k, sat in enumerate(_SATELLITES):
            if sat.family != family or (only is not None and sat.name not in only):
                continue
            n = (days - _DAY0).astype("int64")
            ok = (n % sat.repeat_days == sat.phase_days) & (days >= sat.first)
            if sat.last is not None:
                ok &= days <= sat.last
            out_days.append(days[ok])
            out_sats.append(np.full(int(ok.sum()), k))
        d = np.concatenate(out_days) if out_days else np.array([], dtype="datetime64[D]")
        s = np.concatenate(out_sats) if out_sats else np.array([], dtype=int)
        order = np.argsort(d, kind="stable")
        return d[order], s[order]

    def plan(self, i: int) -> GranuleSpec:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, i])
        version = 1 if rng.random() < cfg.v1_fraction else 2
        family = (
            "landsat"
            if version == 1
            else self.families[rng.choice(len(self.families), p=self.family_p)]
        )
        acq = self.acquisitions_v1 if version == 1 else self.acquisitions[family]
        (d1, s1), (d2, s2) = self._pick_pair(rng, acq, family)
        sat1, sat2 = _SATELLITES[s1], _SATELLITES[s2]
        t1, t2 = self._times(rng, d1, d2, family, version)
        epsg = int(self.epsgs[rng.choice(len(self.epsgs), p=self.epsg_p)])
        res = 240.0 if version == 1 else 120.0
        pmin, pmax = cfg.granule_pixels
        if version == 1:
            pmin, pmax = max(4, pmin // 2), max(4, pmax // 2)
        nx, ny = (int(v) for v in rng.integers(pmin, pmax + 1, size=2))
        noise = float(cfg.noise_std)
        if cfg.size == "realistic":  # same draws as "small": only the size changes
            ny, nx = (
                REALISTIC_SHAPE
                if version >= 2
                else (REALISTIC_SHAPE[0] // 2, REALISTIC_SHAPE[1] // 2)
            )
            noise = noise or REALISTIC_NOISE_STD
        x0, y0 = self._place(rng, epsg, res, nx, ny)
        gaps = self._gaps(rng, nx, ny, family)
        valid = gaps.valid_mask(ny, nx)
        percent = (100 * int(valid.sum())) // valid.size
        flight = ("ascending" if t1.hour >= 12 else "descending") if family == "sentinel1" else ""
        geo1 = _SceneGeometry.draw(rng, self.region, epsg)
        id1 = _scene_id(rng, sat1.name, t1, version, geo1, _scene_proc(rng, t1, version))
        geo2 = geo1.other(rng, self.region) if family == "landsat" and rng.random() < 0.2 else geo1
        id2 = _scene_id(rng, sat2.name, t2, version, geo2, _scene_proc(rng, t2, version))
        name = f"{id1}_X_{id2}_G{int(res):04d}V{version:02d}_P{percent:03d}"
        spec = GranuleSpec(
            index=i,
            granule_id=name,
            key="",
            version=version,
            sensor=family,
            satellite_img1=sat1.name,
            satellite_img2=sat2.name,
            scene_id_img1=id1,
            scene_id_img2=id2,
            acquisition_img1=t1,
            acquisition_img2=t2,
            epsg=epsg,
            resolution=res,
            x0=x0,
            y0=y0,
            nx=nx,
            ny=ny,
            gaps=gaps,
            percent_valid=percent,
            seed=int(rng.integers(0, 2**31 - 1)),
            noise_std=noise,
            region=self.region,
            flight_direction=flight,
            processing_delay_s=int(rng.integers(2 * 86400, 20 * 86400)),
            size=cfg.size,
        )
        lon, lat = spec.centre_lonlat
        key = f"velocity_image_pair/{SENSOR_FOLDERS[family]}/v{version:02d}/{tile_folder(lon, lat)}/{name}.nc"
        return _replace_key(spec, key)

    def _pick_pair(self, rng: np.random.Generator, acq: tuple[np.ndarray, np.ndarray], family: str):
        days, sats = acq
        lo, hi = self.config.separation_days
        for _ in range(200):
            if days.size < 2:
                break
            k1 = int(rng.integers(0, days.size))
            d1 = days[k1]
            gap = (days - d1).astype("int64")
            ok = np.flatnonzero((gap >= lo) & (gap <= hi))
            if ok.size == 0:
                continue
            target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            dist = np.abs(gap[ok] - target)
            best = ok[dist == dist.min()]
            k2 = int(best[rng.integers(0, best.size)])
            return (days[k1], int(sats[k1])), (days[k2], int(sats[k2]))
        raise InvalidInputError(
            f"no {family} image pair with separation {self.config.separation_days} days between "
            f"{self.config.start} and {self.config.end}; widen the dates or the separation range"
        )

    def _times(
        self,
        rng: np.random.Generator,
        d1: np.datetime64,
        d2: np.datetime64,
        family: str,
        version: int,
    ) -> tuple[dt.datetime, dt.datetime]:
        """Acquisition times: same pass time of day for both images, +- a minute."""
        b1 = dt.datetime.fromisoformat(str(d1))
        b2 = dt.datetime.fromisoformat(str(d2))
        if version == 1:  # V1 files store acquisition dates at day precision
            return b1, b2
        hour = 6 if family == "sentinel1" and rng.random() < 0.5 else _FAMILY_HOUR[family]
        t1 = b1 + dt.timedelta(
            hours=hour, seconds=int(rng.integers(0, 3600)), milliseconds=int(rng.integers(1, 1000))
        )
        jitter_ms = int(rng.integers(-60_000, 60_001))
        gap = (d2 - d1).astype("int64")
        lo, hi = self.config.separation_days
        if gap <= lo:
            jitter_ms = abs(jitter_ms)
        elif gap >= hi:
            jitter_ms = -abs(jitter_ms)
        t2 = b2 + (t1 - b1) + dt.timedelta(milliseconds=jitter_ms)
        return t1, t2

    def _place(
        self, rng: np.random.Generator, epsg: int, res: float, nx: int, ny: int
    ) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.region_bounds[epsg]
        w, h = nx * res, ny * res
        if rng.random() < self.config.outside_fraction:
            gap = rng.uniform(*_OUTSIDE_GAP_M)
            side = int(rng.integers(0, 4))
            if side == 0:
                cx, cy = xmin - gap - w / 2, rng.uniform(ymin, ymax)
            elif side == 1:
                cx, cy = xmax + gap + w / 2, rng.uniform(ymin, ymax)
            elif side == 2:
                cx, cy = rng.uniform(xmin, xmax), ymin - gap - h / 2
            else:
                cx, cy = rng.uniform(xmin, xmax), ymax + gap + h / 2
        else:
            cx, cy = rng.uniform(xmin, xmax), rng.uniform(ymin, ymax)
        ax, ay = ALIGNMENT[res]
        x0 = ax + res * math.floor((cx - w / 2 - ax) / res)
        y0 = ay + res * math.floor((cy + h / 2 - ay) / res)
        return float(x0), float(y0)

    def _gaps(self, rng: np.random.Generator, nx: int, ny: int, family: str) -> GapSpec:
        cfg = self.config
        swath = None
        if rng.random() < cfg.swath_fraction:
            swath = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.2, 0.8)))
        mean = cfg.cloud_holes * (0.2 if family == "sentinel1" else 1.0)
        holes = []
        size = min(nx, ny)
        for _ in range(int(rng.poisson(mean))):
            holes.append(
                (
                    float(rng.uniform(0, ny)),
                    float(rng.uniform(0, nx)),
                    float(rng.uniform(0.04, 0.3) * size),
                    float(rng.uniform(0.04, 0.3) * size),
                    float(rng.uniform(0, math.pi)),
                )
            )
        return GapSpec(swath=swath, holes=tuple(holes))


def _replace_key(spec: GranuleSpec, key: str) -> GranuleSpec:
    from dataclasses import replace

    return replace(spec, key=key)


# ----------------------------------------------------------------------------- scene names
_MGRS_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _scene_proc(rng: np.random.Generator, t: dt.datetime, version: int) -> dt.datetime:
    """Processing date of a scene (Collection 2 reprocessing happened from late 2020)."""
    proc = t + dt.timedelta(days=int(rng.integers(1, 30)))
    if version == 2:
        c2 = dt.datetime(2020, 12, 1) + dt.timedelta(days=int(rng.integers(0, 120)))
        proc = max(proc, c2)
    return proc


@dataclass(frozen=True)
class _SceneGeometry:
    """Where a scene sits in each mission's reference system (shared by a pair's images)."""

    path: int
    row: int
    mgrs_tile: str
    s2_orbit: int

    @classmethod
    def draw(cls, rng: np.random.Generator, region: Region, epsg: int) -> _SceneGeometry:
        path = int(rng.integers(region.landsat_paths[0], region.landsat_paths[1] + 1))
        row = int(rng.integers(region.landsat_rows[0], region.landsat_rows[1] + 1))
        zone = epsg % 100 if 32601 <= epsg <= 32760 else int((region.lon0 + 180.0) // 6.0) + 1
        band = "CDEFGHJKLMNPQRSTUVWX"[min(19, max(0, int((region.lat0 + 80.0) // 8.0)))]
        square = "".join(_MGRS_LETTERS[int(k)] for k in rng.integers(0, len(_MGRS_LETTERS), size=2))
        return cls(path, row, f"{zone:02d}{band}{square}", int(rng.integers(1, 144)))

    def other(self, rng: np.random.Generator, region: Region) -> _SceneGeometry:
        """The same scene seen from a neighbouring Landsat path (cross-path pair)."""
        lo, hi = region.landsat_paths
        path = lo + (self.path - lo + int(rng.integers(1, max(2, hi - lo + 1)))) % (hi - lo + 1)
        return _SceneGeometry(path, self.row, self.mgrs_tile, self.s2_orbit)


def _scene_id(
    rng: np.random.Generator,
    sat: str,
    t: dt.datetime,
    version: int,
    geo: _SceneGeometry,
    proc: dt.datetime,
) -> str:
    if sat.startswith("LC"):
        level, tier = ("L1TP", "T1") if rng.random() < 0.8 else ("L1GT", "T2")
        coll = "01" if version == 1 else "02"
        return f"{sat}_{level}_{geo.path:03d}{geo.row:03d}_{t:%Y%m%d}_{proc:%Y%m%d}_{coll}_{tier}"
    if sat.startswith("S2"):
        baseline = int(rng.choice([204, 205, 206, 207, 208, 209, 400]))
        disc = t + dt.timedelta(seconds=int(rng.integers(-600, 7200)))
        return f"{sat}_MSIL1C_{t:%Y%m%dT%H%M%S}_N{baseline:04d}_R{geo.s2_orbit:03d}_T{geo.mgrs_tile}_{disc:%Y%m%dT%H%M%S}"
    if sat.startswith("S1"):
        launch = dt.datetime(2014, 4, 3) if sat == "S1A" else dt.datetime(2016, 4, 25)
        orbit = int((t - launch) / dt.timedelta(days=12) * 175) + 1
        stop = t + dt.timedelta(seconds=27)
        datatake = int(rng.integers(0, 0xFFFFFF))
        uid = int(rng.integers(0, 0xFFFF))
        pol = "1SSH" if rng.random() < 0.7 else "1SDH"
        return f"{sat}_IW_SLC__{pol}_{t:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{orbit:06d}_{datatake:06X}_{uid:04X}"
    raise AssertionError(f"unknown satellite {sat}")  # pragma: no cover


def describe(spec: GranuleSpec) -> dict[str, Any]:
    """A short dict summary of a spec (for logs and debugging)."""
    return {
        "granule_id": spec.granule_id,
        "epsg": spec.epsg,
        "shape": (spec.ny, spec.nx),
        "mid_date": spec.mid_date.isoformat(),
        "percent_valid": spec.percent_valid,
    }
