"""Issue 11's tutorial comparison on realistic granules and the time/memory-vs-N curve.

Fast checks: the incrementally rendered archives are the synthetic module's own archives (same
table, same bytes), and the curve's tables have the asked number of distinct layers. The runs
themselves are ``slow``; they check counts (granules, layers, bytes, requests, worker health),
never times."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import pandas as pd
import pytest
from bench_common import md_table, write_result
from bench_scale import CURVE_COLUMNS, curve_table, run_scale_curve
from bench_tutorial import COLUMNS, decoded_pixels, incremental_archive, run_comparison

from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive, get_region


def _digests(table) -> list[str]:
    return [hashlib.sha256(Path(u).read_bytes()).hexdigest() for u in table["url"]]


def _same_table(a, b) -> None:
    cols = [c for c in a.columns if c not in ("url", "https_url", "geometry")]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))
    assert list(a.geometry.to_wkb()) == list(b.geometry.to_wkb())


def test_incremental_archive_is_the_synthetic_archive(tmp_path):
    """Fast: rendering 3 then 5 granules into one folder gives generate_archive's 5-granule
    archive (same table, same file bytes), and the 3 first files are not rendered again."""
    cfg = {"granule_pixels": (40, 60)}
    truth = generate_archive(
        str(tmp_path / "truth"), SyntheticConfig(n_granules=5, seed=7, **cfg), max_workers=1
    )
    first = incremental_archive(tmp_path / "inc", 3, seed=7, processes=1, **cfg)
    assert len(first) == 3
    stamps = {u: Path(u).stat().st_mtime_ns for u in first["url"]}
    both = incremental_archive(tmp_path / "inc", 5, seed=7, processes=1, **cfg)
    _same_table(both, truth)
    assert _digests(both) == _digests(truth)
    assert all(Path(u).stat().st_mtime_ns == t for u, t in stamps.items())
    assert not list((tmp_path / "inc").rglob("*.part-*"))


def test_decoded_pixels_of_single_chunk_granules(tmp_path):
    """Fast: small Landsat V2 granules are one chunk per variable and have 7 2-D variables, so
    the tutorial decodes 7 x ny x nx pixels per granule and the engine 4 x ny x nx (hand count)."""
    table = incremental_archive(
        tmp_path,
        3,
        seed=3,
        processes=1,
        granule_pixels=(40, 60),
        v1_fraction=0.0,
        outside_fraction=0.0,
        sensor_weights={"landsat": 1.0},
    )
    res = decoded_pixels(table, get_region("svalbard").geojson)
    px = []
    for u in table["url"]:
        with h5py.File(u, "r") as f:
            assert f["vx"].chunks in (None, f["vx"].shape)
            px.append(f["vx"].size)
    assert res["chunks_per_variable_histogram"] == [0, 3]
    assert res["tutorial_mpx_per_granule"] * 1e6 == pytest.approx(7 * sum(px) / 3)
    assert res["engine_mpx_per_granule"] * 1e6 == pytest.approx(4 * sum(px) / 3)
    assert res["tutorial_over_engine"] == pytest.approx(7 / 4)


def test_curve_tables_have_distinct_layers(tmp_path):
    """Fast: above ``unique`` granules the files repeat under new ids, urls and dates."""
    small = curve_table(tmp_path, 4, unique=4, processes=1)
    big = curve_table(tmp_path, 12, unique=4, processes=1)
    assert len(small) == 4 and len(big) == 12
    for col in ("granule_id", "url", "mid_date"):
        assert big[col].is_unique
    assert {Path(u).name for u in big["url"]} == {Path(u).name for u in small["url"]}
    with pytest.raises(ValueError, match="multiple"):
        curve_table(tmp_path, 10, unique=4, processes=1)


@pytest.mark.slow
def test_tutorial_comparison_on_realistic_granules(bench_work, bench_out):
    """8 realistic granules, S3 and local: the tutorial downloads whole objects, the engine
    fetches ranges; every granule is a layer of the engine's cube; the tutorial's cube is a
    subset (majority CRS only)."""
    res = run_comparison(bench_work, s3_granules=8, local_granules=(8,))
    write_result(bench_out, "tutorial_realistic", res)
    print("\n" + md_table(res["rows"], COLUMNS))
    rows = {(r["source"], r["case"]): r for r in res["rows"]}
    tut, eng = rows[("local S3 (moto)", "tutorial")], rows[("local S3 (moto)", "engine")]
    assert tut["proxy"]["get_ranged"]["requests"] == 0
    assert tut["proxy"]["bytes_out"] == pytest.approx(tut["downloaded_mb"] * 1e6)
    assert eng["proxy"]["get_whole"]["requests"] == 0
    assert eng["mb_fetched"] < tut["mb_fetched"]
    for source in ("local S3 (moto)", "local files"):
        t, e = rows[(source, "tutorial")], rows[(source, "engine")]
        assert e["failed"] == 0 and e["granules_read"] == e["layers"] == 8
        assert 0 < t["layers"] <= e["layers"]
        assert e["health"]["workers_replaced"] == 0


@pytest.mark.slow
def test_scale_curve_small(bench_work, bench_out):
    """The curve at small sizes: workers under the limit, none replaced, no granule failed."""
    res = run_scale_curve(workdir=bench_work, sizes=(50, 200), unique=100, baseline_max=100)
    write_result(bench_out, "scale_curve", res)
    print("\n" + md_table(res["rows"], CURVE_COLUMNS))
    for row in res["rows"]:
        if row["case"] == "engine":
            assert row["failed"] == 0 and row["workers_replaced"] == 0
            assert row["max_worker_peak_mb"] < 1536
            assert row["tasks_run"] >= row["blocks_written"] > 0
