"""The protocol between the block kernel and whatever reads granule bytes.

The kernel (:mod:`itslive_dask.cube.kernel`) never opens a file: it asks a
:class:`GranuleReader` for the header and for windows of decoded variables. The production
reader is :class:`itslive_dask.io.hdf5.H5Reader`; tests can hand the kernel a reader that
serves arrays from memory (:class:`itslive_dask.testing.reader.ArrayReader`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from itslive_dask.granule.info import GranuleInfo
from itslive_dask.io.fetch import RetryPolicy

__all__ = ["GranuleReader", "ReaderFactory", "default_reader", "whole_object_reader"]


@runtime_checkable
class GranuleReader(Protocol):
    """Reads one granule: its header, and float32 windows of its variables."""

    #: Attempts it took to reach the bytes (1 when the first try worked).
    attempts: int
    #: Bytes held in memory for this granule (0 when read in place).
    nbytes: int

    def header(self) -> GranuleInfo:
        """The granule's header."""
        ...

    def window(
        self, info: GranuleInfo, names: Sequence[str], rows: slice, cols: slice
    ) -> dict[str, np.ndarray]:
        """``name -> float32 (rows, cols)`` with NaN for no data; a variable the granule
        lacks is all-NaN."""
        ...

    def close(self) -> None:
        """Release what the reader holds."""
        ...


#: ``(url, storage_options, policy, session) -> GranuleReader``; ``session`` scopes the
#: per-process caches to one build.
ReaderFactory = Callable[[str, Mapping[str, Any], RetryPolicy, str], GranuleReader]


def default_reader(
    url: str, storage_options: Mapping[str, Any], policy: RetryPolicy, session: str
) -> GranuleReader:
    """The production reader: ranged reads of only the needed chunks for remote granules
    (:class:`~itslive_dask.io.remote.RangedReader`), h5py in place for local files
    (:class:`~itslive_dask.io.hdf5.H5Reader`)."""
    from itslive_dask.io.urls import is_remote

    if is_remote(url):
        from itslive_dask.io.remote import RangedReader

        return RangedReader(url, storage_options, policy, session)
    from itslive_dask.io.hdf5 import H5Reader

    return H5Reader(url, storage_options, policy, session)


def whole_object_reader(
    url: str, storage_options: Mapping[str, Any], policy: RetryPolicy, session: str
) -> GranuleReader:
    """Fetch each granule whole (one GET) and read it with h5py: the reader before the range
    reader, kept for comparison in benchmarks and for stores where ranged GETs are costly."""
    from itslive_dask.io.hdf5 import H5Reader

    return H5Reader(url, storage_options, policy, session)
