"""A cube smaller than its blocks is stored in chunks no larger than the cube (a Zarr chunk is
stored whole: a 310 x 288 px cube in 512 x 512 chunks compressed 2.9 times its pixels in every
block), and stores built with the larger chunks are still resumed and appended to as they are."""

from __future__ import annotations

import pytest
import xarray as xr

import itslive_dask.cube.lazy as lazy
from itslive_dask.cube.lazy import make_plan
from itslive_dask.cube.plan import fit_chunks
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.store.write import write_cube

VARS = ("vx", "vy", "v", "v_error")


def _grid(height: int, width: int) -> TargetGrid:
    return TargetGrid(3413, 120.0, 0.0, 0.0, width=width, height=height)


@pytest.mark.parametrize(
    ("chunks", "shape", "expected"),
    [
        ((16, 512, 512), (310, 288), (16, 310, 288)),  # both axes smaller than a block
        ((16, 512, 512), (1000, 288), (16, 512, 288)),  # one axis only
        ((4, 100, 100), (310, 288), (4, 100, 100)),  # blocks inside the grid: unchanged
        ({"mid_date": 3, "x": 50}, (20, 900), (3, 20, 50)),  # the dict form, default y of 512
        ((16, 1, 1), (1, 1), (16, 1, 1)),
    ],
)
def test_blocks_never_overhang_the_grid(chunks, shape, expected):
    assert fit_chunks(chunks, _grid(*shape)) == expected


def test_a_small_cube_is_stored_in_chunks_of_its_own_size(tmp_path, synthetic_archive, dask_client):
    table = synthetic_archive.table.iloc[:12].reset_index(drop=True)
    so = synthetic_archive.storage_options
    plan = make_plan(table, synthetic_archive.region, storage_options=so)
    ny, nx = plan.grid.height, plan.grid.width
    assert ny < 512 and nx < 512, "the synthetic region must be smaller than a default block"
    write_cube(
        table,
        str(tmp_path / "c.zarr"),
        synthetic_archive.region,
        storage_options=so,
        client=dask_client,
    )
    z = xr.open_zarr(tmp_path / "c.zarr")
    for v in VARS:
        assert z[v].encoding["chunks"] == (16, ny, nx), v


def test_a_store_with_overhanging_chunks_is_resumed_and_appended_as_it_is(
    tmp_path, monkeypatch, synthetic_archive, dask_client
):
    """A store from before: blocks of 512 x 512 on a smaller grid. Appending keeps its chunks
    and its values equal those of a build of all the granules in those chunks."""
    table = synthetic_archive.table.iloc[:16].reset_index(drop=True)
    first, rest = table.iloc[:8], table.iloc[8:]
    so, region = synthetic_archive.storage_options, synthetic_archive.region
    with monkeypatch.context() as m:  # the planner of earlier versions: chunks as asked
        m.setattr(lazy, "fit_chunks", lambda chunks, grid: chunks)
        write_cube(
            first, str(tmp_path / "old.zarr"), region, storage_options=so, client=dask_client
        )
        write_cube(
            table, str(tmp_path / "all.zarr"), region, storage_options=so, client=dask_client
        )
    old = xr.open_zarr(tmp_path / "old.zarr")
    assert old["vx"].encoding["chunks"] == (16, 512, 512)

    again = write_cube(
        first,
        str(tmp_path / "old.zarr"),
        region,
        storage_options=so,
        client=dask_client,
        mode="resume",
    )
    assert again.failed == [] and again.blocks_written == 0
    more = write_cube(
        rest,
        str(tmp_path / "old.zarr"),
        region,
        storage_options=so,
        client=dask_client,
        mode="append",
    )
    assert more.failed == [] and more.blocks_written > 0
    got, want = xr.open_zarr(tmp_path / "old.zarr"), xr.open_zarr(tmp_path / "all.zarr")
    assert got.sizes == want.sizes
    for v in VARS:
        assert got[v].encoding["chunks"] == (16, 512, 512), v
        assert got[v].values.tobytes() == want[v].values.tobytes(), v
