"""What a granule is: its header as a picklable value, and how each variable is decoded.

Both on-disk formats of ITS_LIVE image-pair granules are described by the same
:class:`GranuleInfo`:

* **V2** (``G0120V02``): grid mapping ``mapping``, ``_FillValue`` attributes, ``v_error``,
  ``img_pair_info`` with ``acquisition_date_img1/2`` such as ``20201213T14:09:56.1``;
  newer files may store the 2-D variables as ``(time, y, x)`` with a length-1 ``time``.
* **V1** (``G0240V01``): grid mapping ``Polar_Stereographic`` or ``UTM_Projection``,
  ``missing_value`` instead of ``_FillValue``, no ``v_error``, misspelled
  ``aquisition_date_img1/2`` (``YYYYMMDD``).

Geolocation always comes from the ``x``/``y`` pixel-centre variables, never from the
``GeoTransform`` attribute (corner-based in V1, centre-based in V2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from itslive_dask.errors import GranuleError
from itslive_dask.geo.footprints import box_to_lonlat

if TYPE_CHECKING:
    import shapely

__all__ = [
    "CATEGORICAL_VARIABLES",
    "KNOWN_VARIABLES",
    "VELOCITY_VARIABLES",
    "GranuleGrid",
    "GranuleInfo",
    "VariableSpec",
]

#: The variables every normalised granule has (all-NaN when the file lacks one, e.g. V1 v_error).
VELOCITY_VARIABLES: tuple[str, ...] = ("vx", "vy", "v", "v_error")
#: Every 2-D variable name ITS_LIVE granules are known to carry.
KNOWN_VARIABLES: tuple[str, ...] = (
    *VELOCITY_VARIABLES,
    "va",
    "vr",
    "M11",
    "M12",
    "chip_size_width",
    "chip_size_height",
    "interp_mask",
)
#: Flag variables: resampled with nearest neighbour only (a blend of flags means nothing).
CATEGORICAL_VARIABLES: frozenset[str] = frozenset({"interp_mask"})


@dataclass(frozen=True)
class VariableSpec:
    """How to decode one 2-D variable of a granule (read once with the header).

    Attributes
    ----------
    name
        Variable name in the file.
    fill_values
        Raw values that mean "no data" (``_FillValue`` and ``missing_value``), in the
        variable's own dtype; empty when nothing is masked.
    scale_factor, add_offset
        CF packing (``None`` when absent).
    time_axis
        True when stored as ``(1, y, x)`` (a length-1 ``time`` dimension).
    dtype
        On-disk dtype string, e.g. ``"int16"``.
    """

    name: str
    fill_values: tuple[int | float, ...] = ()
    scale_factor: float | None = None
    add_offset: float | None = None
    time_axis: bool = False
    dtype: str = "int16"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (inverse: :meth:`from_dict`)."""
        return {
            "name": self.name,
            "fill_values": list(self.fill_values),
            "scale_factor": self.scale_factor,
            "add_offset": self.add_offset,
            "time_axis": self.time_axis,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariableSpec:
        """Rebuild from :meth:`to_dict` output (integer fills stay integers)."""
        return cls(
            name=str(d["name"]),
            fill_values=tuple(d.get("fill_values", ())),
            scale_factor=None if d.get("scale_factor") is None else float(d["scale_factor"]),
            add_offset=None if d.get("add_offset") is None else float(d["add_offset"]),
            time_axis=bool(d.get("time_axis", False)),
            dtype=str(d.get("dtype", "int16")),
        )


@dataclass(frozen=True, eq=False)
class GranuleGrid:
    """The part of a granule's header that the block kernel needs: its grid, and how to
    decode the variables a cube reads.

    It is what the readers return for a block (:meth:`GranuleReader.header
    <itslive_dask.io.reader.GranuleReader.header>` with variable names): the dates,
    satellites and the ~140 other attributes of :class:`GranuleInfo` come from the granule
    table instead, so reading it costs a few HDF5 objects, not the whole header. It is
    picklable and JSON-serialisable (:meth:`to_dict`), so a build can keep it in its state.

    Attributes
    ----------
    source
        Path or URL the header was read from.
    epsg
        EPSG code of the granule's projected grid.
    x, y
        Pixel-centre coordinates (float64, metres, read-only), in file order.
    specs
        How to decode the variables asked for that the file has.
    """

    source: str
    epsg: int
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    specs: tuple[VariableSpec, ...] = field(default=(), repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the granule grid."""
        return (len(self.y), len(self.x))

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of the variables described by :attr:`specs`."""
        return tuple(s.name for s in self.specs)

    def spec(self, name: str) -> VariableSpec | None:
        """Decoding spec of variable ``name``, or None when the file does not have it."""
        for s in self.specs:
            if s.name == name:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (inverse: :meth:`from_dict`); regular axes are stored as
        ``start, step, size`` when that rebuilds them bit for bit."""
        return {
            "source": self.source,
            "epsg": int(self.epsg),
            "x": _axis_to_json(self.x),
            "y": _axis_to_json(self.y),
            "specs": [s.to_dict() for s in self.specs],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GranuleGrid:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            source=str(d["source"]),
            epsg=int(d["epsg"]),
            x=_axis_from_json(d["x"]),
            y=_axis_from_json(d["y"]),
            specs=tuple(VariableSpec.from_dict(s) for s in d.get("specs", ())),
        )


def _axis_to_json(axis: np.ndarray) -> dict[str, Any]:
    a = np.asarray(axis, dtype="float64")
    if a.size > 1:
        start, step = float(a[0]), float(a[1] - a[0])
        if np.array_equal(start + step * np.arange(a.size), a):
            return {"start": start, "step": step, "size": int(a.size)}
    return {"values": [float(v) for v in a]}


def _axis_from_json(d: Mapping[str, Any]) -> np.ndarray:
    if "values" in d:
        a = np.asarray(d["values"], dtype="float64")
    else:
        a = float(d["start"]) + float(d["step"]) * np.arange(int(d["size"]))
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class GranuleInfo:
    """Header metadata of one granule: cheap to pickle, no pixel data.

    Attributes
    ----------
    source
        Path or URL the header was read from.
    granule_id
        File name without ``.nc``.
    epsg
        EPSG code of the granule's projected grid.
    x, y
        Pixel-centre coordinates (float64, metres), in file order.
    resolution
        Pixel size in metres.
    version
        Product version (1 or 2).
    acquisition_date_img1, acquisition_date_img2, mid_date
        ``datetime64[ns]``; ``mid_date`` is the midpoint of the two acquisitions.
    date_dt
        Absolute separation of the acquisitions in days.
    satellite_img1, satellite_img2
        Satellite codes such as ``LC08``, ``LE07``, ``S2A``, ``S1B``.
    sensor
        ``"landsat"``, ``"sentinel1"`` or ``"sentinel2"``.
    percent_valid
        Valid-pixel percentage (``roi_valid_percentage``, else the name's ``P``).
    variables
        Names of the 2-D data variables present with data in the file.
    specs
        How to decode each of ``variables`` (used by :func:`read_window`).
    """

    source: str
    granule_id: str
    epsg: int
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    resolution: float
    version: int
    acquisition_date_img1: np.datetime64
    acquisition_date_img2: np.datetime64
    mid_date: np.datetime64
    date_dt: float
    satellite_img1: str
    satellite_img2: str
    sensor: str
    percent_valid: float
    variables: tuple[str, ...]
    specs: tuple[VariableSpec, ...] = field(default=(), repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the granule grid."""
        return (len(self.y), len(self.x))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the grid's pixel edges, in the granule CRS."""
        hx = _half_spacing(self.x, self.resolution)
        hy = _half_spacing(self.y, self.resolution)
        return (
            float(self.x.min() - hx),
            float(self.y.min() - hy),
            float(self.x.max() + hx),
            float(self.y.max() + hy),
        )

    def footprint(self) -> shapely.Geometry:
        """The grid's bounding box (pixel edges) as a lon/lat shapely geometry.

        Edges are densified before the transform so they bend as they do on the ground.
        A box around a pole reaches the pole; a box across the antimeridian is returned
        as a MultiPolygon split at +-180 degrees (RFC 7946), otherwise it is a Polygon.
        """
        try:
            return box_to_lonlat(self.bounds, self.epsg)
        except ValueError as exc:
            raise GranuleError(self.source, f"cannot compute the footprint: {exc}") from None

    def to_record(self, url: str | None = None, https_url: str = "") -> dict:
        """One row for :func:`itslive_dask.table.granule_table`.

        Parameters
        ----------
        url
            Where the granule will be read from (default: :attr:`source`).
        https_url
            Public https form of the URL ('' when unknown).

        Returns
        -------
        dict
            The table's columns plus ``geometry`` (see :meth:`footprint`).
        """
        return {
            "granule_id": self.granule_id,
            "url": self.source if url is None else str(url),
            "https_url": https_url,
            "mid_date": self.mid_date,
            "acquisition_date_img1": self.acquisition_date_img1,
            "acquisition_date_img2": self.acquisition_date_img2,
            "date_dt": float(self.date_dt),
            "satellite_img1": self.satellite_img1,
            "satellite_img2": self.satellite_img2,
            "sensor": self.sensor,
            "epsg": int(self.epsg),
            "percent_valid": float(self.percent_valid),
            "version": int(self.version),
            "resolution": float(self.resolution),
            "geometry": self.footprint(),
        }

    def spec(self, name: str) -> VariableSpec | None:
        """Decoding spec of variable ``name``, or None when the file does not have it."""
        for s in self.specs:
            if s.name == name:
                return s
        return None

    def grid(self, names: Sequence[str] | None = None) -> GranuleGrid:
        """The :class:`GranuleGrid` part of this header (specs of ``names``, default all)."""
        specs = (
            self.specs if names is None else tuple(s for s in self.specs if s.name in set(names))
        )
        return GranuleGrid(self.source, self.epsg, self.x, self.y, specs)


def _half_spacing(axis: np.ndarray, default: float) -> float:
    return float(abs(axis[1] - axis[0])) / 2 if axis.size > 1 else default / 2
