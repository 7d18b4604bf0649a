"""Per-thread caches of pyproj objects (pyproj objects must not be shared across threads)."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pyproj

_local = threading.local()


def transformer(src: Any, dst: Any) -> pyproj.Transformer:
    """A cached ``always_xy`` transformer ``src -> dst`` for the calling thread."""
    cache = _local.__dict__.setdefault("transformers", {})
    key = (str(src), str(dst))
    tr = cache.get(key)
    if tr is None:
        tr = pyproj.Transformer.from_crs(src, dst, always_xy=True)
        cache[key] = tr
    return tr


def proj(epsg: int) -> pyproj.Proj:
    """A cached :class:`pyproj.Proj` of ``EPSG:<epsg>`` for the calling thread."""
    cache = _local.__dict__.setdefault("projs", {})
    p = cache.get(epsg)
    if p is None:
        p = pyproj.Proj(f"EPSG:{epsg}")
        cache[epsg] = p
    return p


def crs_texts(epsg: int) -> dict[str, Any]:
    """WKT1 (GDAL flavour), PROJ string and CF grid-mapping parameters of ``EPSG:<epsg>``."""
    cache = _local.__dict__.setdefault("texts", {})
    out = cache.get(epsg)
    if out is None:
        crs = pyproj.CRS.from_epsg(epsg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # to_proj4 warns that PROJ strings lose information
            proj4 = crs.to_proj4().replace(" +type=crs", "")
            cf = crs.to_cf()
        out = {"wkt": crs.to_wkt("WKT1_GDAL"), "proj4": proj4, "cf": cf, "crs": crs}
        cache[epsg] = out
    return out
