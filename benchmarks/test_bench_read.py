"""Read-path floors, the source-geometry cache and malloc settings (slow: renders granules)."""

from __future__ import annotations

import pytest
from bench_common import md_table, synthetic_archive, write_result
from bench_read import (
    run_cache,
    run_cache_sweep,
    run_decode,
    run_malloc,
    run_profile,
    run_transform,
)

from itslive_dask.cache import LRU

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_crs_archive(bench_work):
    """Small granules all in one UTM zone: every block reuses one source geometry."""
    return synthetic_archive(
        bench_work / "archive-onecrs-12",
        12,
        seed=5,
        epsg_weights={32633: 1.0},
        outside_fraction=0.0,
    )


def test_geometry_cache_counts_and_same_values(one_crs_archive):
    """With one source CRS, a block computes the source geometry once (1 miss, the other
    granules hit); with the cache disabled every granule recomputes it."""
    from itslive_dask.cube.lazy import make_plan
    from itslive_dask.testing.synthetic import get_region

    plan = make_plan(one_crs_archive, get_region("svalbard").geojson, chunks=(64, 512, 512))
    res = run_cache(plan, epsg=32633, repeat=1)
    n = res["granules"]
    assert n >= 2
    assert res["cache"]["misses"] == 1
    assert res["cache"]["hits"] == 2 * n - 1  # cold call: n - 1 hits, warm call: n hits
    assert res["no_cache"]["hits"] == 0
    assert res["no_cache"]["misses"] == 2 * n


def test_geometry_cache_does_not_change_values(one_crs_archive):
    """The block computed with a cold cache, a warm cache and no cache is the same, bit for bit."""
    import numpy as np
    from bench_read import _busiest_block, _clear_caches, block_inputs

    from itslive_dask.cube import kernel as B
    from itslive_dask.cube.lazy import make_plan
    from itslive_dask.testing.synthetic import get_region

    plan = make_plan(one_crs_archive, get_region("svalbard").geojson, chunks=(64, 512, 512))
    args = block_inputs(plan, _busiest_block(plan))
    _clear_caches(B)
    cold = B.read_block(*args)
    warm = B.read_block(*args)
    saved = B.GEOMETRY_CACHE
    try:
        B.GEOMETRY_CACHE = LRU(maxsize=0)
        none = B.read_block(*args)
    finally:
        B.GEOMETRY_CACHE = saved
    assert np.isfinite(cold).any()
    np.testing.assert_array_equal(cold, warm)
    np.testing.assert_array_equal(cold, none)


def test_read_path_benchmark(bench_work, bench_out):
    """Decode floors, transform throughput, cache effect, block profile, malloc settings."""
    from itslive_dask.cube.lazy import make_plan
    from itslive_dask.testing.synthetic import get_region

    table = synthetic_archive(bench_work / "archive-120-0", 120, seed=0)
    big = synthetic_archive(
        bench_work / "archive-big-0", 6, seed=3, granule_pixels=(833, 833), v1_fraction=0.0
    )
    res = {
        "decode_833": run_decode(list(big["url"])[:4]),
        "decode_small": run_decode(
            [u for u, v in zip(table["url"], table["version"], strict=True) if v == 2][:8]
        ),
        "transform": run_transform(),
    }
    geojson = get_region("svalbard").geojson
    plan = make_plan(table, geojson)
    utm = int(table.loc[table["epsg"] != plan.grid.epsg, "epsg"].value_counts().index[0])
    res["cache"] = run_cache(plan, epsg=utm)
    res["cache_sweep"] = [
        run_cache_sweep(make_plan(table, geojson, chunks=ch), max_time_blocks=2)
        for ch in ((16, 512, 512), (16, 128, 128))
    ]
    res["profile"] = run_profile(plan)
    path = bench_work / "read-table-120.parquet"
    table.to_parquet(path)
    res["malloc"] = run_malloc(str(path), geojson)
    write_result(bench_out, "read", res)
    for key in ("decode_833", "decode_small"):
        print(
            "\n" + md_table(res[key]["rows"], ["method", "ms_per_granule", "mpix_per_s", "x_h5py"])
        )
    print(
        "\n"
        + md_table(res["malloc"]["rows"], ["setting", "total_s", "median_block_s", "minor_faults"])
    )
    assert res["cache"]["cache"]["misses"] == 1
