"""The worker side of a build: compute a block, write it into its Zarr region, then its marker.

The marker, not the data, says the block is done. :func:`write_block_task` computes a whole
block; with the granules of a time block split among workers (see
:func:`itslive_dask.store.runner.granule_split`), :func:`read_part_task` reads one share of
them and :func:`write_parts_task` joins the shares and writes.

Only what these tasks need is imported here (the kernel, the store's small-file helpers and
the int16 encoding): a worker's first task no longer imports the planner's and the
template's libraries (geopandas, xarray, dask.array), a third of a second per worker.
"""

from __future__ import annotations

import dataclasses
import resource
from typing import Any

import numpy as np
from dask.base import tokenize

from itslive_dask.cube.kernel import BlockConfig, BlockReport, read_block_with_report
from itslive_dask.errors import StoreError
from itslive_dask.store.encoding import encode_int16
from itslive_dask.store.target import STATE, StoreTarget, put_json

__all__ = ["block_config", "read_part_task", "write_block_task", "write_parts_task"]


def block_config(cfg: BlockConfig) -> BlockConfig:
    """The blocks' shared configuration, as a task result (recomputed if its worker dies)."""
    return cfg


def _keeping(cfg: BlockConfig, shared: bool) -> BlockConfig:
    """``cfg`` for a block whose granules other blocks read too (``shared``) or not."""
    return cfg if shared or not cfg.keep_chunks else dataclasses.replace(cfg, keep_chunks=False)


def read_part_task(
    cfg: BlockConfig, refs, positions: tuple[int, int], rows, cols, shared: bool = True
) -> tuple[tuple[int, int], np.ndarray, BlockReport]:
    """Worker side: the layers ``positions`` of one block, read from the granules ``refs``
    (all of them in that range); joined and written by :func:`write_parts_task`. ``shared``:
    other blocks read some of these granules (keep their decoded chunks)."""
    cfg = _keeping(cfg, shared)
    lo, hi = positions
    local = tuple((pos - lo, ref) for pos, ref in refs)
    out, report = read_block_with_report(cfg, local, rows, cols, hi - lo)
    return positions, out, report


def write_parts_task(
    cfg: BlockConfig, parts, t_range, rows, cols, target: StoreTarget, marker: str
) -> dict[str, Any]:
    """Worker side: join the parts of one block read by :func:`read_part_task`, write the
    block into its region, then its marker."""
    nt = t_range[1] - t_range[0]
    ny, nx = rows[1] - rows[0], cols[1] - cols[0]
    out = np.full((len(cfg.variables), nt, ny, nx), np.nan, dtype="float32")
    report = BlockReport()
    for (lo, hi), values, part in parts:
        out[:, lo:hi] = values
        report.read.extend(part.read)
        report.failed.extend(part.failed)
    return _write_block(cfg, out, report, (), t_range, rows, cols, target, marker, None)


def write_block_task(
    cfg: BlockConfig,
    refs,
    t_range,
    rows,
    cols,
    target: StoreTarget,
    marker: str,
    previous,
    shared: bool = True,
) -> dict[str, Any]:
    """Worker side: compute one block, write it into its region, then write its marker.
    ``shared``: other blocks read some of these granules (keep their decoded chunks)."""
    cfg = _keeping(cfg, shared)
    nt = t_range[1] - t_range[0]
    out, report = read_block_with_report(cfg, refs, rows, cols, nt)
    return _write_block(cfg, out, report, refs, t_range, rows, cols, target, marker, previous)


def _write_block(
    cfg: BlockConfig,
    out,
    report: BlockReport,
    refs,
    t_range,
    rows,
    cols,
    target: StoreTarget,
    marker: str,
    previous,
) -> dict[str, Any]:
    """Write a computed block into its Zarr region (all layers, or with ``previous`` only the
    layers of ``refs``: a retry of failed granules), then the block's marker."""
    group = _open_group_cached(target)
    missing = [v for v in cfg.variables if v not in group]
    if missing:
        raise StoreError(
            f"{target.url} has no array {missing[0]!r}: its template is incomplete; run "
            "again with mode='resume' (or mode='overwrite')"
        )
    ys, xs = slice(*rows), slice(*cols)
    if previous is None:
        for k, v in enumerate(cfg.variables):
            group[v][t_range[0] : t_range[1], ys, xs] = _stored(group[v], out[k])
        read = report.read
    else:  # retry of failed granules: write only their layers
        for pos, _ in refs:
            t = t_range[0] + pos
            for k, v in enumerate(cfg.variables):
                group[v][t : t + 1, ys, xs] = _stored(group[v], out[k, pos : pos + 1])
        read = sorted(set(previous.get("read", [])) | set(report.read))
    content = {"read": read, "failed": report.failed}
    put_json(target, (STATE, "blocks", marker), content)
    return {"read": report.read, "failed": report.failed, "peak_rss": _peak_rss()}


def _stored(array: Any, values: Any) -> Any:
    """Values as the store keeps them: the Zarr array's dtype says the encoding (int16 for
    ``velocity_encoding="int16"``, so resume and append keep what the store was built with)."""
    if array.dtype == "int16":
        return encode_int16(values)
    return values


_GROUPS: dict[str, Any] = {}


def _open_group_cached(target: StoreTarget):

    key = tokenize(target.url, target.storage_options)
    grp = _GROUPS.get(key)
    if grp is None:
        grp = target.open_root("r+")
        _GROUPS.clear()
        _GROUPS[key] = grp
    return grp


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB
