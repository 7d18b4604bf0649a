"""One cache of coordinate transformers for the whole package.

pyproj :class:`~pyproj.Transformer` objects are costly to create (tens of milliseconds) and
must not be shared between threads, so every module asks :func:`transformer` for one: it
keeps one per (source CRS, destination CRS, thread), bounded in number.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from pyproj import CRS, Transformer

__all__ = ["crs_key", "transformer"]

#: At most this many transformers are kept (per process, all threads together).
MAX_TRANSFORMERS = 256

_CACHE: OrderedDict[tuple[str, str, int], Transformer] = OrderedDict()
_LOCK = threading.Lock()


def crs_key(crs: Any) -> str:
    """A hashable, canonical key of a CRS given as EPSG integer, ``"EPSG:n"``, WKT or CRS."""
    if isinstance(crs, int):
        return f"EPSG:{crs}"
    if isinstance(crs, str) and crs.upper().startswith("EPSG:"):
        return crs.upper()
    parsed = CRS.from_user_input(crs)
    code = parsed.to_epsg()
    return f"EPSG:{code}" if code is not None else parsed.to_wkt()


def transformer(src: Any, dst: Any) -> Transformer:
    """A cached ``always_xy`` transformer from ``src`` to ``dst`` for the calling thread.

    Parameters
    ----------
    src, dst
        Anything :meth:`pyproj.CRS.from_user_input` accepts (an EPSG integer is cheapest).

    Returns
    -------
    pyproj.Transformer
        Not to be handed to another thread.
    """
    key = (crs_key(src), crs_key(dst), threading.get_ident())
    with _LOCK:
        tr = _CACHE.get(key)
        if tr is not None:
            _CACHE.move_to_end(key)
            return tr
    tr = Transformer.from_crs(key[0], key[1], always_xy=True)
    with _LOCK:
        _CACHE[key] = tr
        while len(_CACHE) > MAX_TRANSFORMERS:
            _CACHE.popitem(last=False)
    return tr
