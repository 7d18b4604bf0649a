"""Small per-process caches bounded by entry count and by bytes, safe under threads.

Dask workers on Pangeo hubs and dask-gateway run several threads per process, so every
cache of the package is a :class:`LRU`: lookups, insertions and the byte accounting happen
under one lock, and a value is computed outside it (two threads missing the same key may
both compute it; the first stored wins).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["LRU", "sizeof"]

V = TypeVar("V")


def sizeof(value: Any) -> int:
    """Bytes held by ``value`` (bytes, numpy arrays, tuples of those; 0 for the rest)."""
    if isinstance(value, tuple):
        return sum(sizeof(v) for v in value)
    if isinstance(value, bytes | bytearray):
        return len(value)
    return int(getattr(value, "nbytes", 0) or 0)


class LRU(Generic[V]):
    """A least-recently-used cache bounded by ``maxsize`` entries and ``maxbytes`` bytes.

    Parameters
    ----------
    maxsize
        Most entries kept (0 keeps nothing).
    maxbytes
        Most bytes kept, as counted by :func:`sizeof` (None: unbounded).
    """

    def __init__(self, maxsize: int, maxbytes: int | None = None) -> None:
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self.data: OrderedDict[Hashable, V] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        """The cached value of ``key``, computed by ``make()`` on a miss and stored."""
        with self._lock:
            if key in self.data:
                self.hits += 1
                self.data.move_to_end(key)
                return self.data[key]
            self.misses += 1
        value = make()
        with self._lock:
            if key in self.data:  # another thread stored it meanwhile: keep one copy
                return self.data[key]
            self.data[key] = value
            self.nbytes += sizeof(value)
            while self.data and (
                len(self.data) > self.maxsize
                or (self.maxbytes is not None and self.nbytes > self.maxbytes)
            ):
                _, old = self.data.popitem(last=False)
                self.nbytes -= sizeof(old)
        return value

    def peek(self, key: Hashable) -> V | None:
        """The cached value of ``key`` or None, without computing or counting anything."""
        with self._lock:
            return self.data.get(key)

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` (no error when absent)."""
        with self._lock:
            if key in self.data:
                self.nbytes -= sizeof(self.data.pop(key))

    def clear(self) -> None:
        """Forget everything and reset the hit counters."""
        with self._lock:
            self.data.clear()
            self.nbytes = 0
            self.hits = self.misses = 0
