"""Writing a synthetic archive: granule files in the public layout plus its catalogs.

Layout under ``dest`` (a local folder or any fsspec URL such as ``s3://its-live-data``)::

    velocity_image_pair/{landsatOLI,sentinel1,sentinel2}/v02/<N70E010>/<name>.nc   V2 granules
    velocity_image_pair/landsatOLI/v01/<N70E010>/<name>.nc                         V1 granules
    catalog/granules.parquet      GeoParquet granule table (itslive_dask.table schema)
    catalog/stac/items.json       FeatureCollection of STAC Items (collection itslive-granules)
    catalog/stac/collection.json  the STAC Collection of those items

The 10-degree folder is that of the granule's centre. V1 granules sit in a parallel ``v01``
tree (the public bucket's V1 granules were in their own tree too).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import posixpath
from collections.abc import Callable, Mapping
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
import shapely.geometry

from itslive_dask.errors import InvalidInputError, ItsliveDaskError
from itslive_dask.table import granule_table
from itslive_dask.testing.synthetic.netcdf import encode_granule
from itslive_dask.testing.synthetic.render import GranuleArrays, render_granule
from itslive_dask.testing.synthetic.specs import GranuleSpec, SyntheticConfig, make_granule_specs

__all__ = [
    "CATALOG_PARQUET",
    "STAC_COLLECTION",
    "STAC_ITEMS",
    "generate_archive",
    "generate_granule",
    "granule_arrays",
    "granule_record",
    "read_catalog",
    "stac_item",
]

logger = logging.getLogger(__name__)

CATALOG_PARQUET = "catalog/granules.parquet"
STAC_ITEMS = "catalog/stac/items.json"
STAC_COLLECTION = "catalog/stac/collection.json"

_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
    "https://stac-extensions.github.io/version/v1.2.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
]


def generate_granule(spec: GranuleSpec) -> bytes:
    """The NetCDF4/HDF5 bytes of one synthetic granule (render + encode)."""
    return encode_granule(spec, render_granule(spec))


def granule_arrays(spec: GranuleSpec) -> GranuleArrays:
    """The arrays a granule stores (int16 with fill), without encoding them."""
    return render_granule(spec)


# ----------------------------------------------------------------------------- records
def _ts(t: dt.datetime) -> pd.Timestamp:
    return pd.Timestamp(t)


def granule_record(spec: GranuleSpec, url: str, https_url: str = "") -> dict[str, Any]:
    """The granule-table row (:data:`itslive_dask.table.COLUMNS` + geometry) of ``spec``."""
    return {
        "granule_id": spec.granule_id,
        "url": url,
        "https_url": https_url,
        "mid_date": _ts(spec.mid_date),
        "acquisition_date_img1": _ts(spec.acquisition_img1),
        "acquisition_date_img2": _ts(spec.acquisition_img2),
        "date_dt": float(spec.date_dt),
        "satellite_img1": spec.satellite_img1,
        "satellite_img2": spec.satellite_img2,
        "sensor": spec.sensor,
        "epsg": int(spec.epsg),
        "percent_valid": float(spec.percent_valid),
        "version": int(spec.version),
        "resolution": float(spec.resolution),
        "geometry": spec.footprint,
    }


def _iso_z(t: dt.datetime) -> str:
    return pd.Timestamp(t).isoformat() + "Z"


def _frame(spec: GranuleSpec, scene_id: str) -> str:
    parts = scene_id.split("_")
    if spec.sensor == "landsat":
        return parts[2]
    if spec.sensor == "sentinel2":
        return parts[5]
    return "N/A"


def stac_item(spec: GranuleSpec, url: str, https_url: str = "") -> dict[str, Any]:
    """A STAC Item dict with the fields of the public ``itslive-granules`` collection."""
    poly = shapely.set_precision(spec.footprint, 1e-4)
    lon, lat = spec.centre_lonlat
    created = _iso_z(spec.acquisition_img2 + dt.timedelta(seconds=spec.processing_delay_s))
    data_asset: dict[str, Any] = {
        "href": https_url or url,
        "type": "application/netcdf",
        "roles": ["data"],
    }
    if url.startswith("s3://"):
        data_asset["alternate"] = {"s3": {"href": url, "alternate:name": "S3"}}
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": list(_STAC_EXTENSIONS),
        "id": spec.granule_id,
        "collection": "itslive-granules",
        "geometry": shapely.geometry.mapping(poly),
        "bbox": [float(v) for v in poly.bounds],
        "properties": {
            "datetime": _iso_z(spec.mid_date),
            "mid_datetime": _iso_z(spec.mid_date),
            "start_datetime": _iso_z(spec.acquisition_img1),
            "end_datetime": _iso_z(spec.acquisition_img2),
            "created": created,
            "updated": created,
            "latitude": round(lat, 4),
            "longitude": round(lon, 4),
            "date_dt": round(float(spec.date_dt), 0),
            "platform": spec.satellite_img1,
            "scene_1_id": spec.scene_id_img1,
            "scene_2_id": spec.scene_id_img2,
            "scene_1_frame": _frame(spec, spec.scene_id_img1),
            "scene_2_frame": _frame(spec, spec.scene_id_img2),
            "sat:orbit_state": spec.flight_direction or "N/A",
            "percent_valid_pixels": int(spec.percent_valid),
            "proj:code": f"EPSG:{spec.epsg}",
            "version": f"{spec.version:03d}",
        },
        "links": [],
        "assets": {"data": data_asset},
    }


def _stac_collection(specs: list[GranuleSpec], table: gpd.GeoDataFrame) -> dict[str, Any]:
    bbox = [float(v) for v in table.total_bounds] if len(table) else [-180.0, -90.0, 180.0, 90.0]
    if specs:
        t0 = _iso_z(min(s.acquisition_img1 for s in specs))
        t1 = _iso_z(max(s.acquisition_img2 for s in specs))
    else:
        t0 = t1 = None  # type: ignore[assignment]
    return {
        "type": "Collection",
        "id": "itslive-granules",
        "stac_version": "1.1.0",
        "stac_extensions": list(_STAC_EXTENSIONS),
        "title": "ITS_LIVE Glacier Velocity Pairs (itslive_dask synthetic archive)",
        "description": "Synthetic ITS_LIVE-format image-pair velocity granules generated from an analytic flow field",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[t0, t1]]}},
        "summaries": {"proj:code": sorted({f"EPSG:{s.epsg}" for s in specs})},
        "links": [{"rel": "items", "href": "./items.json", "type": "application/geo+json"}],
    }


# ----------------------------------------------------------------------------- destinations
class _Destination:
    """Where files go and what URLs they get."""

    def __init__(
        self,
        dest: Any,
        storage_options: Mapping[str, Any] | None,
        https_base: str | None,
        create: bool = True,
    ):
        import fsspec

        if isinstance(dest, os.PathLike):
            dest = os.fspath(dest)
        if not isinstance(dest, str) or not dest.strip():
            raise InvalidInputError(f"dest must be a folder path or an fsspec URL, got {dest!r}")
        opts = dict(storage_options or {})
        try:
            fs, root = fsspec.core.url_to_fs(dest, **opts)
        except (ValueError, ImportError, TypeError) as exc:
            raise InvalidInputError(f"cannot use dest {dest!r}: {exc}") from None
        self.fs = fs
        self.root = root.rstrip("/")
        self.storage_options = opts
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        self.local = "file" in protocols or "local" in protocols
        self.s3 = "s3" in protocols
        if self.local:
            self.root = os.path.abspath(self.root)
            if os.path.exists(self.root) and not os.path.isdir(self.root):
                raise InvalidInputError(f"dest {dest!r} exists and is not a folder")
            if create:
                os.makedirs(self.root, exist_ok=True)
        elif self.s3:
            bucket = self.root.split("/", 1)[0]
            if not bucket:
                raise InvalidInputError(
                    f"dest {dest!r} has no bucket name; use s3://<bucket>[/prefix]"
                )
            if not fs.exists(bucket):
                raise InvalidInputError(
                    f"bucket {bucket!r} of dest {dest!r} does not exist; create it first (e.g. LocalS3.create_bucket)"
                )
        if https_base is None and self.s3:
            bucket, _, prefix = self.root.partition("/")
            https_base = f"https://{bucket}.s3.amazonaws.com" + (f"/{prefix}" if prefix else "")
        self.https_base = https_base.rstrip("/") if https_base else ""

    def path(self, key: str) -> str:
        if self.local:
            return os.path.join(self.root, *key.split("/"))
        return posixpath.join(self.root, key) if self.root else key

    def url(self, key: str) -> str:
        if self.local:
            return self.path(key)
        if self.s3:
            return f"s3://{self.path(key)}"
        return self.fs.unstrip_protocol(self.path(key))

    def https_url(self, key: str) -> str:
        return f"{self.https_base}/{key}" if self.https_base else ""

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fs.pipe_file(path, data)


def _write_one(
    spec: GranuleSpec, dest: Any, storage_options: Mapping[str, Any] | None, https_base: str | None
) -> None:
    """Process-pool task: build a destination in the worker and write one granule."""
    _worker_destination(dest, storage_options, https_base).write(spec.key, generate_granule(spec))


_WORKER_DEST: dict[tuple, _Destination] = {}


def _worker_destination(
    dest: Any, storage_options: Mapping[str, Any] | None, https_base: str | None
) -> _Destination:
    key = (str(dest), json.dumps(storage_options or {}, sort_keys=True, default=str), https_base)
    d = _WORKER_DEST.get(key)
    if d is None:
        d = _WORKER_DEST[key] = _Destination(dest, storage_options, https_base)
    return d


# ----------------------------------------------------------------------------- main entry
def generate_archive(
    dest: str,
    config: SyntheticConfig | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_workers: int | None = None,
    processes: bool = False,
    https_base: str | None = None,
) -> gpd.GeoDataFrame:
    """Generate a synthetic ITS_LIVE archive under ``dest`` and return its granule table.

    Parameters
    ----------
    dest
        Local folder or fsspec URL (``s3://its-live-data``, ``s3://bucket/prefix``,
        ``memory://x``). An S3 bucket must already exist.
    config
        What to generate (default :class:`SyntheticConfig()`: ~300 granules around Svalbard).
    storage_options
        fsspec options for ``dest`` (e.g. :attr:`itslive_dask.testing.local_s3.LocalS3.storage_options`).
    progress
        Called as ``progress(n_done, n_total)`` after each granule is written.
    max_workers
        Parallel writers (threads, or processes with ``processes=True``); default
        ``min(8, cpu_count + 2)``.
    processes
        Use a spawn-based process pool (for very large archives: HDF5 encoding holds a lock,
        so threads only overlap compression and uploads).
    https_base
        Public https prefix matching ``dest`` for the ``https_url`` column and the STAC
        hrefs; default for ``s3://bucket/prefix``: ``https://bucket.s3.amazonaws.com/prefix``,
        none for other destinations.

    Returns
    -------
    geopandas.GeoDataFrame
        The granule table (:mod:`itslive_dask.table` schema), also written to
        ``catalog/granules.parquet``; ``url`` is each file's ``s3://`` URL (or local path).

    Examples
    --------
    >>> from itslive_dask.testing.local_s3 import LocalS3                       # doctest: +SKIP
    >>> with LocalS3() as s3:                                           # doctest: +SKIP
    ...     s3.create_bucket("its-live-data")
    ...     table = generate_archive("s3://its-live-data", SyntheticConfig(n_granules=50),
    ...                              storage_options=s3.storage_options)
    """
    config = config or SyntheticConfig()
    if not isinstance(config, SyntheticConfig):
        raise InvalidInputError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        raise InvalidInputError(f"max_workers must be a positive integer, got {max_workers!r}")
    target = _Destination(dest, storage_options, https_base)
    specs = make_granule_specs(config)
    total = len(specs)
    logger.info(
        "generating %d synthetic granules (%s) into %s", total, config.region_obj.name, dest
    )
    workers = max_workers or min(8, (os.cpu_count() or 1) + 2)
    executor: Executor
    if processes:
        import multiprocessing

        executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
    else:
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="itslive-synthetic")
    done = 0
    with executor:
        pending: dict[Future, GranuleSpec] = {}
        it = iter(specs)
        window = 4 * workers  # bounded queue: memory does not grow with the number of granules

        def submit(spec: GranuleSpec) -> None:
            if processes:
                fut = executor.submit(_write_one, spec, dest, target.storage_options, https_base)
            else:
                fut = executor.submit(_write_to, target, spec)
            pending[fut] = spec

        for spec in it:
            submit(spec)
            if len(pending) >= window:
                break
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                spec = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    for other in pending:
                        other.cancel()
                    raise ItsliveDaskError(
                        f"cannot write synthetic granule {target.url(spec.key)}: {exc}"
                    ) from exc
                done += 1
                if progress is not None:
                    progress(done, total)
                nxt = next(it, None)
                if nxt is not None:
                    submit(nxt)
    records = [granule_record(s, target.url(s.key), target.https_url(s.key)) for s in specs]
    table = granule_table(records)
    _write_catalogs(target, specs, table)
    logger.info(
        "synthetic archive written: %d granules, catalog %s", total, target.url(CATALOG_PARQUET)
    )
    return table


def _write_catalogs(
    target: _Destination, specs: list[GranuleSpec], table: gpd.GeoDataFrame
) -> None:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    target.write(CATALOG_PARQUET, buf.getvalue())
    items = [stac_item(s, target.url(s.key), target.https_url(s.key)) for s in specs]
    items.sort(key=lambda it: (it["properties"]["datetime"], it["id"]))
    fc = {"type": "FeatureCollection", "features": items}
    target.write(STAC_ITEMS, json.dumps(fc, indent=1).encode())
    target.write(STAC_COLLECTION, json.dumps(_stac_collection(specs, table), indent=1).encode())


def read_catalog(
    dest: str, *, storage_options: Mapping[str, Any] | None = None
) -> gpd.GeoDataFrame:
    """Read back the granule table written by :func:`generate_archive` under ``dest``."""
    target = _Destination(dest, storage_options, None, create=False)
    try:
        data = target.fs.cat_file(target.path(CATALOG_PARQUET))
    except FileNotFoundError:
        raise InvalidInputError(f"no synthetic catalog at {target.url(CATALOG_PARQUET)}") from None
    return gpd.read_parquet(io.BytesIO(data))


def _write_to(target: Any, spec: Any) -> None:
    target.write(spec.key, generate_granule(spec))
