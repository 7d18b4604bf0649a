"""Time-series layout: rechunk a map-friendly cube into long-in-time, small-in-space chunks.

Cubes are built map-friendly (few layers, large tiles: every block task reads each granule
once per tile). Time-series analysis wants the opposite, like the production cubes
(all or many layers, small tiles). :func:`rechunk_cube` converts one into the other with a
bounded-memory rechunk: on a ``distributed`` cluster Dask's peer-to-peer rechunk (data
spilled to the workers' disks), otherwise Dask's task-based rechunk with an intermediate
chunk size capped by ``max_mem``.
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import dask
import xarray as xr
import zarr

from itslive_dask.cube.plan import normalize_chunks
from itslive_dask.errors import InvalidInputError, StoreError
from itslive_dask.io.urls import redact_url, storage_kwargs
from itslive_dask.store.lease import hold_lease
from itslive_dask.store.state import TIMESERIES_ATTR
from itslive_dask.store.target import clear_store, exists, resolve_target

__all__ = ["TIMESERIES_CHUNKS", "rechunk_cube"]

log = logging.getLogger(__name__)

#: Time-series-friendly default (long in time, small in space), like the production cubes.
TIMESERIES_CHUNKS: tuple[int, int, int] = (20000, 10, 10)


def rechunk_cube(
    source: str,
    dest: str,
    chunks: Any = TIMESERIES_CHUNKS,
    *,
    source_options: dict | None = None,
    dest_options: dict | None = None,
    overwrite: bool = False,
    client: Any = None,
    zarr_format: int | None = None,
) -> xr.Dataset:
    """Copy a cube store into a new store with other chunks, in bounded memory.

    Parameters
    ----------
    source, dest
        Zarr stores (paths or fsspec URLs). ``dest`` must not exist unless ``overwrite``.
    chunks
        Target chunks ``(mid_date, y, x)`` (a tuple or dict); the time chunk is capped at the
        number of layers.
    source_options, dest_options
        fsspec options of each store.
    overwrite
        Replace ``dest`` if it exists.
    client
        A ``distributed.Client`` to run on (peer-to-peer rechunk); default: the current
        client if any, else the local threaded scheduler.
    zarr_format
        Format of ``dest``; default: the format of ``source``.

    Returns
    -------
    xarray.Dataset
        The new store, opened lazily.
    """
    t, y, x = normalize_chunks(chunks)
    try:
        ds = xr.open_zarr(source, **storage_kwargs(source, source_options))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise StoreError(f"cannot open cube {source}: {exc}") from None
    if "mid_date" not in ds.dims:
        raise InvalidInputError(f"{source} is not an itslive_dask cube (no mid_date dimension)")
    t = min(t, max(ds.sizes["mid_date"], 1))
    target = {"mid_date": t, "y": min(y, ds.sizes["y"]), "x": min(x, ds.sizes["x"])}
    data_vars = [v for v in ds.data_vars if ds[v].dims == ("mid_date", "y", "x")]
    out = ds.copy()
    # the copy is not a build target: drop the build state so write_cube refuses to resume it
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "itslive_dask"}
    out.attrs["layout"] = (
        f"time-series chunks {target['mid_date']}x{target['y']}x{target['x']}, rechunked from {redact_url(source)}"
    )
    marker = {
        "source": redact_url(source),
        "chunks": [target["mid_date"], target["y"], target["x"]],
    }
    # written with the template, set to complete only once every chunk is written: a
    # killed copy is readable but says it is incomplete
    out.attrs[TIMESERIES_ATTR] = json.dumps(dict(marker, complete=False))
    for v in data_vars:
        out[v] = ds[v].chunk(target)
        out[v].encoding = {
            k: val
            for k, val in ds[v].encoding.items()
            if k in ("compressors", "_FillValue", "dtype")
        }
        out[v].encoding["chunks"] = (target["mid_date"], target["y"], target["x"])
    for c in out.coords:
        out[c].encoding.pop("chunks", None)
        out[c].encoding.pop("preferred_chunks", None)
        if c in ("x", "y"):  # CF: no fill value on coordinate variables (xarray adds NaN)
            out[c].encoding["_FillValue"] = None
    if zarr_format is None:
        zarr_format = 2 if ds[data_vars[0]].encoding.get("zarr_format") == 2 else 3
    method = "p2p" if _has_distributed(client) else "tasks"
    log.info("rechunking %s -> %s to %s with the %s method", source, dest, target, method)
    dest_target = resolve_target(dest, dest_options)
    # one writer at a time: the copy holds the destination's lease (kept by the clearing)
    with (
        hold_lease(dest_target, "rechunk_cube"),
        dask.config.set({"array.rechunk.method": method}),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        if exists(dest_target):
            if not overwrite:
                raise StoreError(
                    f"{redact_url(dest)} already exists; pass overwrite=True to replace it"
                )
            clear_store(dest_target)
        # the destination holds at most the lease now: "a" creates the store around it
        write = out.to_zarr(
            dest,
            mode="a",
            compute=False,
            consolidated=True,
            zarr_format=zarr_format,
            **storage_kwargs(dest, dest_options),
        )
        if client is not None:
            client.compute(write).result()
        else:
            write.compute()
        done = resolve_target(dest, dest_options).open_root("r+")
        done.attrs[TIMESERIES_ATTR] = json.dumps(dict(marker, complete=True))
        zarr.consolidate_metadata(done.store)
    return xr.open_zarr(dest, **storage_kwargs(dest, dest_options))


def _has_distributed(client: Any) -> bool:
    if client is not None:
        return True
    try:
        from distributed import get_client

        get_client()
        return True
    except (ImportError, ValueError):
        return False
