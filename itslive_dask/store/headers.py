"""Granule headers kept in a build's state, so a resumed or appended build reads none again.

Two things are kept. The granule-table rows of each generation (:func:`keep_rows`), so a
``resume`` or ``append`` given bare paths or URLs does not read the headers of granules the
store already knows at planning time; and, per granule, what block tasks read:

the first time a block task reads a remote granule's light header and chunk index (a few
ranged GETs of HDF5 metadata, see :class:`itslive_dask.io.remote.RangedReader`), it
keeps them as one small JSON object in the store, ``_itslive/headers/<key>.json`` (about
1–3 kB: EPSG, the axes as start/step/size, the decoding specs and the byte ranges of the
chunks of the cube's variables). A later build on the same store (``resume`` after a kill,
``append``) lists that folder once and hands the records to its block tasks, which then
fetch only the chunks they need: no request to the granule archive for its header.

A granule table may bring the records with it (its ``chunk_index`` column, from
:func:`itslive_dask.discovery.build_catalog` or from reading the headers of a list of URLs):
:func:`seed_headers` keeps them in the store before the blocks run, so even a first build
reads no header from the archive.

A record names no credential: the URL in it is redacted and its key is a hash. Keeping a
record is an optimisation: a failure to write or read one is logged and the header is read
from the granule instead; a record that no longer matches its object (a replaced file) makes
the window read fail, and the kernel then reads the header again (see
:func:`itslive_dask.cube.kernel.read_block_with_report`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from itslive_dask.cache import LRU
from itslive_dask.io.urls import redact_url
from itslive_dask.store.target import STATE, StoreTarget, put_json

__all__ = [
    "HEADERS",
    "StoreHeaders",
    "header_key",
    "keep_rows",
    "kept_rows",
    "list_header_keys",
    "seed_headers",
]

log = logging.getLogger(__name__)

#: Folder of the records inside the build state.
HEADERS = "headers"

#: (store url, key) of the records this process wrote or read (one write per granule and
#: process, and the record read from the store once).
_SEEN: LRU[dict[str, Any] | bool] = LRU(maxsize=65536)


def header_key(url: str) -> str:
    """The record name of a granule: a hash of its URL without query or credentials."""
    return hashlib.sha256(redact_url(url).split("?", 1)[0].encode()).hexdigest()[:32]


def list_header_keys(target: StoreTarget) -> frozenset[str]:
    """Keys of the records a store holds (one listing; empty when there are none)."""
    fs = target.fs()
    base = target.path(STATE, HEADERS)
    fs.invalidate_cache(base)
    try:
        names = fs.ls(base, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    return frozenset(
        posixpath.basename(n)[: -len(".json")] for n in names if str(n).endswith(".json")
    )


def seed_headers(target: StoreTarget, table: Any, only: Collection[str] | None = None) -> int:
    """Keep in the store the header records a granule table carries (``chunk_index``).

    Only remote granules the store has no record of, and with ``only`` only those whose URL
    is in it (the granules a build planned: a catalog used for a small region would
    otherwise cost a PUT per granule of the catalog), are written (one small JSON object
    each, written concurrently to an object store). A cell that is empty or not a JSON
    object is passed over: that granule's header is read by its block task as usual, and a
    record that does not fit its object is replaced the same way as a stale kept one.
    Best effort: a failure is logged, the build does not depend on it.

    Returns
    -------
    int
        The number of records written.
    """
    from itslive_dask.io.files import put_atomic
    from itslive_dask.io.urls import is_remote
    from itslive_dask.table import chunk_index_record

    if "chunk_index" not in getattr(table, "columns", ()):
        return 0
    try:
        known = list_header_keys(target)
        todo: dict[str, bytes] = {}
        for url, text in zip(table["url"], table["chunk_index"], strict=True):
            if not is_remote(str(url)) or (only is not None and url not in only):
                continue  # a local header is read in place (LocalReader keeps none)
            key = header_key(str(url))
            record = None if key in known or key in todo else chunk_index_record(text)
            if record is not None:
                todo[key] = json.dumps(record).encode()
        if not todo:
            return 0
        if is_remote(target.url):  # one concurrent batch of PUTs
            target.fs().pipe({target.path(STATE, HEADERS, f"{k}.json"): d for k, d in todo.items()})
        else:
            for k, d in todo.items():
                put_atomic(target.join(STATE, HEADERS, f"{k}.json"), d, target.storage_options)
    except Exception as exc:  # an optimisation only: the blocks read the headers instead
        log.info("header records of the table not kept (%s)", type(exc).__name__)
        return 0
    log.info("kept %d header records from the granule table", len(todo))
    return len(todo)


@dataclass(frozen=True)
class StoreHeaders:
    """The header records of one store, as block tasks use them (picklable).

    Parameters
    ----------
    target
        The output store.
    known
        Keys of the records present when the build started (from :func:`list_header_keys`):
        only those are read, so a fresh build makes no lookup that would miss.
    """

    target: StoreTarget
    known: frozenset[str] = field(default_factory=frozenset, repr=False)

    def get(self, url: str) -> Mapping[str, Any] | None:
        """The record of granule ``url``, or None (none kept, or it cannot be read)."""
        key = header_key(url)
        if key not in self.known:
            return None
        cached = _SEEN.peek((self.target.url, key))
        if isinstance(cached, dict):
            return cached
        if cached is False:  # did not match its object in this process
            return None
        try:
            fs = self.target.fs()
            record = json.loads(fs.cat_file(self.target.path(STATE, HEADERS, f"{key}.json")))
        except Exception as exc:  # an optimisation only: read the granule's header instead
            log.info("header record %s not read (%s): reading the granule", key, type(exc).__name__)
            return None
        if not isinstance(record, dict):
            return None
        _mark(self.target.url, key, record)
        return record

    def put(self, url: str, make: Callable[[], Mapping[str, Any] | None]) -> None:
        """Keep the record ``make()`` of granule ``url`` (once per process; ``make`` is only
        called when the record is written; failures only logged)."""
        key = header_key(url)
        seen = _SEEN.peek((self.target.url, key))
        if seen is True or (key in self.known and seen is not False):
            return  # written by this process, or kept by an earlier build and still good
        record = make()
        if record is None:
            return
        try:
            put_json(self.target, (STATE, HEADERS, f"{key}.json"), dict(record))
        except Exception as exc:  # the build does not depend on it
            log.info("header record %s not written (%s)", key, type(exc).__name__)
            return
        _mark(self.target.url, key, True)

    def discard(self, url: str) -> None:
        """Stop using the record of ``url`` in this process (it did not match its object);
        the next :meth:`put` replaces it."""
        _mark(self.target.url, header_key(url), False)


def _mark(store: str, key: str, value: dict[str, Any] | bool) -> None:
    """What this process knows of a record: read (the record), written (True), or not to be
    used (False)."""
    _SEEN.discard((store, key))
    _SEEN.get((store, key), lambda: value)


# ----------------------------------------------------------------------------- granule rows
#: Folder of the kept granule-table rows, one file per generation.
GRANULES = "granules"


def keep_rows(target: StoreTarget, table: Any, token: str) -> None:
    """Keep the granule-table rows a generation was planned from in the build state (its
    layers, and the granules planning left out: outside the region, repeated dates).

    A later ``resume`` or ``append`` given bare paths/URLs takes these rows instead of
    reading those granules' headers again (:func:`kept_rows`). They are one GeoParquet file
    per generation (exact values, a few hundred bytes per granule); URLs are redacted. Best
    effort: a failure is logged, the build does not depend on it.
    """
    import geopandas as gpd

    from itslive_dask.io.files import put_atomic
    from itslive_dask.table import COLUMNS

    try:
        rows = gpd.GeoDataFrame(
            table[[*COLUMNS, "geometry"]].copy(), geometry="geometry", crs=table.crs
        )
        rows["url"] = [redact_url(str(u)) for u in rows["url"]]
        buf = io.BytesIO()
        rows.to_parquet(buf, index=False)
        put_atomic(
            target.join(STATE, GRANULES, f"{token}.parquet"), buf.getvalue(), target.storage_options
        )
    except Exception as exc:
        log.info("granule rows not kept (%s)", type(exc).__name__)


def kept_rows(target: StoreTarget) -> Any:
    """The granule rows kept by :func:`keep_rows` (a granule table; empty when none)."""
    import geopandas as gpd
    import pandas as pd

    from itslive_dask.table import empty_granule_table, validate_granule_table

    fs = target.fs()
    base = target.path(STATE, GRANULES)
    fs.invalidate_cache(base)
    try:
        paths = [p for p in fs.ls(base, detail=False) if str(p).endswith(".parquet")]
        contents = fs.cat(paths) if paths else {}
    except (FileNotFoundError, NotADirectoryError):
        contents = {}
    parts = [gpd.read_parquet(io.BytesIO(data)) for data in contents.values()]
    if not parts:
        return empty_granule_table()
    rows = pd.concat(parts, ignore_index=True).drop_duplicates("granule_id", keep="last")
    return validate_granule_table(gpd.GeoDataFrame(rows, geometry="geometry", crs=parts[0].crs))
