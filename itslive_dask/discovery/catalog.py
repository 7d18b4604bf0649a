"""Local catalog files: build one from a folder or bucket of granules, read and write them.

A catalog file is a granule table (:mod:`itslive_dask.table`) saved as GeoParquet (preferred),
GeoJSON, or a JSON list / FeatureCollection of STAC items shaped like the public
``itslive-granules`` items. :func:`itslive_dask.discovery.api` searches one in-process
(``search(..., catalog="granules.parquet")``) and the local search server serves one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import geopandas as gpd

from itslive_dask.discovery.stac import items_to_table, row_to_item
from itslive_dask.errors import InvalidInputError, SearchError
from itslive_dask.io.files import open_binary, put_atomic
from itslive_dask.progress import ProgressArg
from itslive_dask.table import COLUMNS, empty_granule_table, granule_table, validate_granule_table

__all__ = ["build_catalog", "load_catalog", "save_catalog", "table_to_stac_items"]

logger = logging.getLogger(__name__)

_PARQUET = (".parquet", ".geoparquet", ".pq")
_JSON = (".json", ".geojson")
_NDJSON = (".ndjson", ".jsonl", ".geojsonl")


def _kind(path: str) -> str:
    low = path.lower().split("?", 1)[0]
    if low.endswith(_PARQUET):
        return "parquet"
    if low.endswith(_NDJSON):
        return "ndjson"
    if low.endswith(_JSON):
        return "json"
    raise InvalidInputError(
        f"catalog {path!r}: unknown format; use a .parquet (GeoParquet), .geojson/.json "
        "(granule table or STAC items) or .ndjson (STAC items) file"
    )


def load_catalog(path: str | os.PathLike, storage_options: dict | None = None) -> gpd.GeoDataFrame:
    """Read a catalog file into a validated granule table.

    Parameters
    ----------
    path
        Local path or fsspec URL (``s3://...``) of a GeoParquet file, a GeoJSON
        FeatureCollection of granule rows, or STAC items (JSON list, FeatureCollection,
        ItemCollection, or newline-delimited JSON).
    storage_options
        fsspec options for remote URLs.

    Returns
    -------
    GeoDataFrame
        The granule table, ordered by (``mid_date``, ``granule_id``).

    Raises
    ------
    InvalidInputError
        Missing file, unknown format, or content that is not a granule catalog.

    Examples
    --------
    >>> table = load_catalog("archive/catalog/granules.parquet")  # doctest: +SKIP
    """
    path = os.fspath(path)
    kind = _kind(path)
    try:
        with open_binary(path, storage_options) as f:
            if kind == "parquet":
                table = gpd.read_parquet(f)
            else:
                text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"catalog file not found: {path}") from None
    except InvalidInputError:
        raise
    except Exception as exc:  # pyarrow/fsspec raise many types for unreadable files
        raise InvalidInputError(
            f"cannot read catalog {path}: {type(exc).__name__}: {exc}"
        ) from None
    if kind != "parquet":
        table = _table_from_json(text, path, ndjson=kind == "ndjson")
    try:
        return validate_granule_table(table)
    except InvalidInputError as exc:
        raise InvalidInputError(f"catalog {path}: {exc}") from None


def _table_from_json(text: str, path: str, *, ndjson: bool) -> gpd.GeoDataFrame:
    try:
        if ndjson:
            data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"catalog {path} is not valid JSON: {exc}") from None
    if isinstance(data, Mapping):
        features = data.get("features")
        if features is None:
            raise InvalidInputError(
                f"catalog {path}: expected a FeatureCollection or a list of items"
            )
    elif isinstance(data, list):
        features = data
    else:
        raise InvalidInputError(f"catalog {path}: expected a FeatureCollection or a list of items")
    if not features:
        return empty_granule_table()
    first = features[0]
    if not isinstance(first, Mapping):
        raise InvalidInputError(f"catalog {path}: features must be JSON objects")
    if "assets" in first or "stac_version" in first:
        try:
            return items_to_table(features)
        except SearchError as exc:
            raise InvalidInputError(f"catalog {path}: {exc}") from None
    table = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InvalidInputError(f"catalog {path}: features lack the columns {', '.join(missing)}")
    return table


def save_catalog(
    table: gpd.GeoDataFrame, path: str | os.PathLike, storage_options: dict | None = None
) -> str:
    """Write a granule table as GeoParquet, GeoJSON or STAC items (by file extension).

    ``.parquet`` -> GeoParquet; ``.geojson`` -> FeatureCollection of granule rows;
    ``.json`` -> FeatureCollection of STAC items; ``.ndjson`` -> one STAC item per line.
    The file is written whole (to a temporary name then moved, for local paths).

    Returns
    -------
    str
        The path written.
    """
    path = os.fspath(path)
    kind = _kind(path)
    table = validate_granule_table(table)
    if kind == "parquet":
        payload = _parquet_bytes(table)
    elif kind == "ndjson":
        payload = "".join(json.dumps(item) + "\n" for item in table_to_stac_items(table)).encode()
    elif path.lower().endswith(".geojson"):
        flat = table.copy()
        for col, dtype in COLUMNS.items():
            if dtype.startswith("datetime64"):
                flat[col] = flat[col].map(lambda t: t.isoformat())
        payload = flat.to_json(na="null", show_bbox=False, drop_id=True).encode()
    else:
        items = table_to_stac_items(table)
        payload = json.dumps({"type": "FeatureCollection", "features": items}).encode()
    put_atomic(path, payload, storage_options)
    logger.info("wrote catalog %s (%d granules)", path, len(table))
    return path


def _parquet_bytes(table: gpd.GeoDataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


def table_to_stac_items(
    table: gpd.GeoDataFrame, collection: str = "itslive-granules"
) -> list[dict]:
    """STAC item dicts (public ``itslive-granules`` shape) of every row of a granule table."""
    table = validate_granule_table(table)
    return [row_to_item(row, collection=collection) for row in table.to_dict("records")]


# --------------------------------------------------------------------------- builder


def _https_for(url: str, root_url: str, https_base: str | None) -> str:
    """Public https form of a granule URL: ``https_base`` + the path under the scanned root,
    else the AWS virtual-host form for ``s3://bucket/key``, the URL itself for http(s)."""
    if https_base is not None:
        rel = (
            url[len(root_url) :].lstrip("/") if url.startswith(root_url) else url.rsplit("/", 1)[-1]
        )
        return f"{https_base.rstrip('/')}/{rel}"
    if url.startswith(("http://", "https://")):
        return url
    if url.startswith("s3://") and "/" in url[len("s3://") :]:
        bucket, key = url[len("s3://") :].split("/", 1)
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    return ""


def build_catalog(
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    storage_options: dict | None = None,
    max_workers: int = 16,
    progress: ProgressArg = None,
    stac_items: str | os.PathLike | None = None,
    https_base: str | None = None,
    chunk_index: bool = True,
    processes: int | None = None,
) -> gpd.GeoDataFrame:
    """Scan a folder or bucket prefix for ``*.nc`` granules and build a granule table.

    Each file's header is read (a few small ranged reads for remote files) in a thread pool.
    Files that are not ITS_LIVE granules (or cannot be read) are reported, not fatal.

    For remote granules the same reads give each granule's chunk index, kept in the
    ``chunk_index`` column (about 3 kB of JSON per granule in a GeoParquet or GeoJSON
    catalog; STAC items leave it out). A cube built from such a catalog fetches only the
    chunks it needs from each granule, with no request for its header: 4 GETs per realistic
    granule instead of 11 on a first build (``docs/benchmarks.md``).

    Parameters
    ----------
    source
        Local folder, fsspec URL prefix (``s3://bucket/prefix/``) or glob
        (``s3://bucket/**/*.nc``). Folders are searched recursively.
    out
        Where to write the catalog (GeoParquet for ``.parquet``; see :func:`save_catalog`).
    storage_options
        fsspec options for ``source`` (and ``out``/``stac_items`` when remote).
    max_workers
        Threads reading headers in parallel.
    progress
        ``True`` for a progress bar, or a callable ``f(done, total)``.
    stac_items
        Also write the catalog as STAC items (``.json`` FeatureCollection or ``.ndjson``).
    https_base
        Public https prefix matching ``source`` for the ``https_url`` column (default: the
        ``https://<bucket>.s3.amazonaws.com/<key>`` form of ``s3://`` URLs, '' for local files).
    chunk_index
        Keep the chunk indexes of remote granules in the ``chunk_index`` column (default).
        False leaves the column out.
    processes
        Worker processes reading remote headers (see
        :func:`~itslive_dask.io.listing.scan_headers`: by default 8 for 64 remote granules or
        more, since h5py reads one header at a time per process; 0 for threads only).

    Returns
    -------
    GeoDataFrame
        The granule table. ``table.attrs["failures"]`` lists ``{"url", "error"}`` for every
        file left out (also logged as warnings).

    Raises
    ------
    InvalidInputError
        When ``source`` cannot be listed or holds no ``*.nc`` file.

    Examples
    --------
    >>> table = build_catalog("s3://my-bucket/velocity_image_pair/", "granules.parquet",
    ...                       storage_options={"anon": True})  # doctest: +SKIP
    >>> table.attrs["failures"]  # doctest: +SKIP
    []
    """
    from itslive_dask.io.listing import list_granules, scan_headers

    source = os.fspath(source)
    if out is not None:
        _kind(os.fspath(out))
    if stac_items is not None:
        _kind(os.fspath(stac_items))
    root_url, urls = list_granules(source, storage_options)
    if not urls:
        raise InvalidInputError(f"no *.nc files found under {source}")
    logger.info("building a catalog of %d files under %s", len(urls), source)
    scan = scan_headers(
        urls, storage_options, max_workers=max_workers, progress=progress, processes=processes
    )
    failures = scan.failures
    records = {
        url: scan.row(url, https_url=_https_for(url, root_url, https_base), chunk_index=chunk_index)
        for url in scan.infos
    }

    kept: dict[str, dict[str, Any]] = {}
    for url in sorted(records):
        rec = records[url]
        other = kept.get(rec["granule_id"])
        if other is not None:
            failures.append({"url": url, "error": f"duplicate granule id (also at {other['url']})"})
            continue
        kept[rec["granule_id"]] = rec
    failures.sort(key=lambda f: f["url"])
    for f in failures:
        logger.warning("catalog: skipped %s: %s", f["url"], f["error"])
    table = granule_table(kept.values()) if kept else empty_granule_table()
    if out is not None:
        save_catalog(table, out, storage_options)
    if stac_items is not None:
        save_catalog(table, stac_items, storage_options)
    table.attrs["failures"] = failures
    logger.info("catalog: %d granules, %d files skipped", len(table), len(failures))
    return table
