"""The protocol between the block kernel and whatever reads granule bytes.

The kernel (:mod:`itslive_dask.cube.kernel`) never opens a file: it asks a
:class:`GranuleReader` for the light header of the variables it needs (a
:class:`~itslive_dask.granule.info.GranuleGrid`) and for windows of decoded variables. The
production readers are :class:`itslive_dask.io.remote.RangedReader` (remote objects, chunk by
chunk) and :class:`itslive_dask.io.remote.LocalReader` (the same over local files);
:class:`itslive_dask.io.hdf5.H5Reader` (h5py on local files in place, or on whole objects) is
kept for comparison.

A reader may also offer ``record()`` (its light header and chunk index as JSON-compatible
data) and ``adopt(record, names)`` (use such a record instead of reading the header): the
kernel then keeps headers in a :class:`HeaderRecords` (the build's store), so a resumed or
appended build reads no header again. A lazy cube takes the records its granule table
carries (:class:`TableHeaders`, from the ``chunk_index`` column).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from itslive_dask.cache import LRU
from itslive_dask.granule.info import GranuleGrid, GranuleInfo
from itslive_dask.io.fetch import RetryPolicy

__all__ = [
    "GranuleReader",
    "HeaderRecords",
    "ReaderFactory",
    "TableHeaders",
    "default_reader",
    "whole_object_reader",
]


@runtime_checkable
class GranuleReader(Protocol):
    """Reads one granule: its header, and float32 windows of its variables."""

    #: Attempts it took to reach the bytes (1 when the first try worked).
    attempts: int
    #: Bytes held in memory for this granule (0 when read in place).
    nbytes: int

    def header(self, names: Sequence[str] | None = None) -> GranuleInfo | GranuleGrid:
        """The granule's whole header, or with ``names`` its grid and those variables'
        decoding specs only (what block tasks need)."""
        ...

    def window(
        self, info: GranuleInfo | GranuleGrid, names: Sequence[str], rows: slice, cols: slice
    ) -> dict[str, np.ndarray]:
        """``name -> float32 (rows, cols)`` with NaN for no data; a variable the granule
        lacks is all-NaN."""
        ...

    def close(self) -> None:
        """Release what the reader holds."""
        ...


@runtime_checkable
class HeaderRecords(Protocol):
    """Where a build keeps the header records of its granules between runs."""

    def get(self, url: str) -> Mapping[str, Any] | None:
        """The record kept for ``url``, or None."""
        ...

    def put(self, url: str, make: Callable[[], Mapping[str, Any] | None]) -> None:
        """Keep the record ``make()`` for ``url``, calling ``make`` only when it is kept
        (best effort: never raises)."""
        ...

    def discard(self, url: str) -> None:
        """Stop using the record of ``url`` (it did not match the object)."""
        ...


#: (scope, url) of the table records that did not fit their object in this process.
_UNFIT: LRU[bool] = LRU(maxsize=65536)


@dataclass(frozen=True)
class TableHeaders:
    """The header records a granule table carries (its ``chunk_index`` column), read-only.

    The block tasks of a lazy cube take a granule's record instead of reading its header; a
    record that does not fit its object (:meth:`discard`) is not used again in that process,
    and nothing is written anywhere (a store build keeps records in the store instead:
    :class:`itslive_dask.store.headers.StoreHeaders`).

    Parameters
    ----------
    texts
        Granule URL -> ``chunk_index`` cell (JSON text).
    scope
        The build the records serve (its session token): a discarded record stays
        discarded for that build only.
    """

    texts: Mapping[str, str] = field(repr=False)
    scope: str = ""

    def get(self, url: str) -> Mapping[str, Any] | None:
        """The record of ``url``, or None (none, not a JSON object, or discarded)."""
        from itslive_dask.table import chunk_index_record

        if _UNFIT.peek((self.scope, url)) is not None:
            return None
        return chunk_index_record(self.texts.get(url))

    def put(self, url: str, make: Callable[[], Mapping[str, Any] | None]) -> None:
        """Nothing is kept: the table is read-only."""

    def discard(self, url: str) -> None:
        """Stop using the record of ``url`` in this process (it did not fit its object)."""
        _UNFIT.get((self.scope, url), lambda: True)


#: ``(url, storage_options, policy, session) -> GranuleReader``; ``session`` scopes the
#: per-process caches to one build.
ReaderFactory = Callable[[str, Mapping[str, Any], RetryPolicy, str], GranuleReader]


def default_reader(
    url: str, storage_options: Mapping[str, Any], policy: RetryPolicy, session: str
) -> GranuleReader:
    """The production reader: only the chunks a window needs, decoded without HDF5 and kept
    decoded for the other tiles of the build, for remote granules
    (:class:`~itslive_dask.io.remote.RangedReader`, ranged GETs) and local files
    (:class:`~itslive_dask.io.remote.LocalReader`, h5py only for layouts the decoder does
    not read)."""
    from itslive_dask.io.remote import LocalReader, RangedReader
    from itslive_dask.io.urls import is_remote

    if is_remote(url):
        return RangedReader(url, storage_options, policy, session)
    return LocalReader(url, None, policy, session)  # no remote options for a local file


def whole_object_reader(
    url: str, storage_options: Mapping[str, Any], policy: RetryPolicy, session: str
) -> GranuleReader:
    """h5py for everything: each remote granule fetched whole (one GET), a local file opened
    in place and decoded by HDF5. The reader before the range reader, kept for comparison in
    benchmarks and for stores where ranged GETs are costly."""
    from itslive_dask.io.hdf5 import H5Reader

    return H5Reader(url, storage_options, policy, session)
