import time

import numpy as np
import pandas as pd
import pytest
import shapely

from itslive_dask.cube.plan import normalize_chunks, plan_cube, unique_mid_dates
from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.geo.region import to_crs
from itslive_dask.table import granule_table


def mk_granule(gid, mid, footprint, epsg=3413, dt=10.0):
    mid = pd.Timestamp(mid)
    half = pd.Timedelta(days=dt / 2)
    return {
        "granule_id": gid,
        "url": f"s3://bucket/{gid}.nc",
        "mid_date": mid,
        "acquisition_date_img1": mid - half,
        "acquisition_date_img2": mid + half,
        "date_dt": dt,
        "satellite_img1": "LC08",
        "satellite_img2": "LC08",
        "sensor": "landsat",
        "epsg": epsg,
        "percent_valid": 50.0,
        "version": 2,
        "resolution": 120.0,
        "geometry": footprint,
    }


REGION_LL = shapely.box(17.0, 78.6, 19.0, 79.0)


@pytest.fixture
def grid_and_region():
    region = to_crs(REGION_LL, 3413)
    return TargetGrid.from_bounds(region.bounds, 3413, 120), region


def test_time_axis_sorted_unique_and_ties_documented(grid_and_region):
    grid, region = grid_and_region
    fp = REGION_LL.buffer(0.1)
    tab = granule_table(
        [
            mk_granule("c", "2020-01-02", fp),
            mk_granule("b", "2020-01-01", fp),
            mk_granule("a", "2020-01-01", fp),
            mk_granule("far", "2019-01-01", shapely.box(100, 10, 101, 11)),
        ]
    )
    plan = plan_cube(tab, grid, region, chunks=(2, 4096, 4096))
    assert list(plan.layers["granule_id"]) == ["a", "b", "c"]
    md = plan.layers["mid_date"].to_numpy()
    assert md[0] == np.datetime64("2020-01-01T00:00:00.000000")
    assert md[1] == np.datetime64("2020-01-01T00:00:00.000001")  # tie: +1 microsecond
    assert list(plan.dropped["granule_id"]) == ["far"]
    # one tile, two time blocks: [a, b] and [c]
    assert plan.blocks == {(0, 0, 0): (0, 1), (1, 0, 0): (2,)}
    assert plan.time_chunks() == (2, 1)


def test_blocks_list_only_granules_touching_the_tile(grid_and_region):
    grid, region = grid_and_region
    west = shapely.box(16.5, 78.5, 17.3, 79.1)  # touches only western tiles
    everywhere = REGION_LL.buffer(0.2)
    tab = granule_table(
        [mk_granule("w", "2020-01-01", west), mk_granule("all", "2020-02-01", everywhere)]
    )
    plan = plan_cube(tab, grid, region, chunks=(8, 64, 64))
    ny, nx = (len(c) for c in plan.space_chunks())
    assert ny > 1 and nx > 1
    west_x = to_crs(west, 3413).bounds
    for (tb, iy, ix), layers in plan.blocks.items():
        assert tb == 0
        box = grid.window_box(*plan.block_slices((tb, iy, ix))[1:])
        touches_region = box.intersects(region)
        assert touches_region
        assert 1 in layers  # 'all' is everywhere in the region
        if 0 in layers:
            assert box.intersects(to_crs(west, 3413).buffer(600))
    # every tile that meets the western footprint lists it
    n_west = sum(0 in v for v in plan.blocks.values())
    assert n_west > 0 and n_west < len(plan.blocks)
    assert west_x[0] < grid.bounds[2]


def test_t_offset_aligns_blocks_with_existing_cube(grid_and_region):
    grid, region = grid_and_region
    fp = REGION_LL.buffer(0.1)
    tab = granule_table([mk_granule(f"g{i}", f"2020-01-{i + 1:02d}", fp) for i in range(5)])
    plan = plan_cube(tab, grid, region, chunks=(4, 4096, 4096), t_offset=6)
    # existing cube has 6 layers: new layers 6..10 -> blocks [6,8) and [8,11)
    assert plan.time_chunks() == (2, 3)
    assert plan.blocks == {(1, 0, 0): (0, 1), (2, 0, 0): (2, 3, 4)}
    assert plan.block_slices((1, 0, 0))[0] == slice(6, 8)
    assert [p for p, _ in plan.block_refs((2, 0, 0))] == [0, 1, 2]


def test_unique_mid_dates_many_ties():
    d = np.array(["2020-01-01"] * 3 + ["2020-01-02"], dtype="datetime64[ns]")
    out = unique_mid_dates(d)
    assert np.all(np.diff(out) > np.timedelta64(0))
    assert out[2] - out[0] == np.timedelta64(2, "us") and out[3] == d[3]


@pytest.mark.parametrize("bad", [0, -1, (1, 2), {"z": 3}, (1.5, 2, 2), "16", (4, 0, 4)])
def test_normalize_chunks_rejects(bad):
    with pytest.raises(InvalidInputError):
        normalize_chunks(bad)


def test_normalize_chunks_forms():
    assert normalize_chunks({"mid_date": 4, "y": 100}) == (4, 100, 512)
    assert normalize_chunks(8) == (8, 8, 8)
    assert normalize_chunks((2, 3, 4)) == (2, 3, 4)


def test_plan_scales_to_100k_granules(grid_and_region):
    grid, region = grid_and_region
    rng = np.random.default_rng(0)
    n = 100_000
    lon = rng.uniform(16.5, 19.5, n)
    lat = rng.uniform(78.5, 79.1, n)
    boxes = shapely.box(lon - 0.4, lat - 0.08, lon + 0.4, lat + 0.08)
    mids = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D")
    recs = [mk_granule(f"g{i:06d}", mids[i], boxes[i]) for i in range(n)]
    tab = granule_table(recs)
    t0 = time.perf_counter()
    plan = plan_cube(tab, grid, region, chunks=(16, 256, 256))
    elapsed = time.perf_counter() - t0
    print(f"\nplan for {n} granules: {elapsed:.2f} s, {plan.summary()}")
    assert plan.n_layers + len(plan.dropped) == n
