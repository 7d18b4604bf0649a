"""The cube's graph: a task per block that reads, none for blocks no granule touches."""

import dask
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from itslive_dask.cube.graph import _refs_at, cube_from_plan
from itslive_dask.cube.lazy import open_cube
from itslive_dask.cube.plan import plan_cube
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.geo.transform import transformer
from itslive_dask.table import granule_table

# 120 m grid in EPSG:3031, 48 x 48 pixels cut into 16 x 16 tiles (3 x 3)
GRID = TargetGrid(
    epsg=3031, resolution=120.0, x0=-1_500_000 + 52.5, y0=-300_000 + 67.5, width=48, height=48
)
X0, Y0, X1, Y1 = GRID.bounds
TILE = 16 * 120.0


def lonlat(geom):
    tr = transformer(3031, 4326)
    return shapely.transform(geom, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def row(gid, mid, geom):
    mid = pd.Timestamp(mid)
    return {
        "granule_id": gid, "url": f"s3://no-such-bucket-anywhere/{gid}.nc", "mid_date": mid,
        "acquisition_date_img1": mid - pd.Timedelta(days=5), "acquisition_date_img2": mid + pd.Timedelta(days=5),
        "date_dt": 10.0, "satellite_img1": "LC08", "satellite_img2": "LC08", "sensor": "landsat",
        "epsg": 3031, "percent_valid": 50.0, "version": 2, "resolution": 120.0, "geometry": lonlat(geom),
    }  # fmt: skip


@pytest.fixture
def plan():
    """Three layers, two per block: layer 0 covers the north-west tile only, layer 1 the
    whole grid, layer 2 the south-east tile only. Blocks that read (by hand, 1 km
    tolerance kept clear of other tiles): tb 0 -> all 9 tiles (layer 1), of which (0, 0)
    also reads layer 0; tb 1 -> tile (2, 2) only. Fill-only: the other 8 tiles of tb 1."""
    nw = shapely.box(X0 + 200, Y1 - TILE + 700, X0 + TILE - 700, Y1 - 200)
    se = shapely.box(X1 - TILE + 700, Y0 + 200, X1 - 200, Y0 + TILE - 700)
    everywhere = shapely.box(X0 - 5000, Y0 - 5000, X1 + 5000, Y1 + 5000)
    tab = granule_table(
        [row("a", "2020-01-01", nw), row("b", "2020-01-02", everywhere), row("c", "2020-01-03", se)]
    )
    p = plan_cube(tab, GRID, shapely.box(*GRID.bounds), chunks=(2, 16, 16))
    expected = {(0, iy, ix): (1,) for iy in range(3) for ix in range(3)}
    expected[(0, 0, 0)] = (0, 1)
    expected[(1, 2, 2)] = (2,)
    assert p.blocks == expected
    return p


def block_keys(graph, prefix):
    return [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith(prefix)]


def test_one_task_per_block_that_reads_and_none_for_empty_blocks(plan):
    ds = cube_from_plan(plan)
    graph = dict(ds.__dask_graph__())
    blocks = block_keys(graph, "itslive-blocks-")
    assert sorted(k[1:] for k in blocks) == sorted(plan.blocks)  # (tb, iy, ix), tb from 0
    n_blocks, n_read, n_var = len(plan.block_ids()), len(plan.blocks), len(plan.variables)
    assert (n_blocks, n_read, n_var) == (18, 10, 4)
    # per reading block: the block task + one pick per variable; per empty block: one NaN
    # chunk per variable; plus the shared config
    assert len(graph) == n_read * (1 + n_var) + (n_blocks - n_read) * n_var + 1
    # the block tasks hand the kernel exactly the plan's (position, granule) pairs
    for key in blocks:
        task = graph[key]
        args = [a.value if hasattr(a, "value") else a for a in getattr(task, "args", task[1:])]
        positions, refs = args[1], args[2]
        assert _refs_at(positions, refs) == plan.block_refs(tuple(key[1:]))


def test_empty_blocks_are_nan_and_read_nothing(plan):
    """The fill chunks compute to NaN without a read (the granules' bucket does not
    exist: any read would raise); their shapes are the blocks' shapes."""
    ds = cube_from_plan(plan)
    for v in plan.variables:
        chunk = ds[v].data.blocks[1, 0, 1]
        with dask.config.set(scheduler="sync"):
            values = chunk.compute()
        assert values.shape == (1, 16, 16) and values.dtype == np.float32
        assert np.isnan(values).all() and values.flags.writeable


def test_skip_mode_flags_empty_blocks_zero(plan):
    """With ``on_error="skip"`` a block task returns (block, flags); a fill-only block has
    no task and its flags are zeros, computed without a read."""
    ds = cube_from_plan(plan, on_error="skip")
    graph = dict(ds.__dask_graph__())
    assert len(block_keys(graph, "itslive-blocks-")) == 2 * len(plan.blocks)  # read + pick
    status = block_keys(graph, "itslive-status-")
    assert len(status) == len(plan.block_ids())
    flags = ds["granule_status"].data.blocks[1]  # layer 2: block (1, 2, 2) reads, 8 empty
    empty_only = cube_from_plan(plan, on_error="skip")["v"].data.blocks[1, 0, 0]
    with dask.config.set(scheduler="sync"):
        assert np.isnan(empty_only.compute()).all()
    assert flags.shape == (1,)


def test_cube_with_empty_blocks_equals_one_block_build(synthetic_archive):
    """A chunking with fill-only blocks gives the same values, bit for bit, as one block
    covering the whole cube (which has none), and all-NaN where nothing was planned."""
    arch = synthetic_archive
    sub = arch.table.iloc[:6]
    small = open_cube(sub, arch.region, storage_options=arch.storage_options, chunks=(1, 48, 48))
    plan = small.encoding["itslive_dask_plan"]
    assert len(plan.blocks) < len(plan.block_ids())  # there are fill-only blocks
    whole = (plan.n_layers, plan.grid.height, plan.grid.width)
    big = open_cube(sub, arch.region, storage_options=arch.storage_options, chunks=whole)
    assert len(big.encoding["itslive_dask_plan"].block_ids()) == 1
    with dask.config.set(scheduler="threads", num_workers=2):
        a, b = small.compute(), big.compute()
    for v in plan.variables:
        np.testing.assert_array_equal(a[v].values, b[v].values)
    a.attrs.pop("chunks"), b.attrs.pop("chunks")
    xr.testing.assert_identical(a, b)
    # a fill-only block is NaN in the whole-cube build too
    empty = sorted(set(plan.block_ids()) - set(plan.blocks))
    ts, rs, cs = plan.block_slices(empty[0])
    assert np.isnan(b["v"].values[ts, rs, cs]).all()
