"""I/O benchmark: bytes and requests per granule, whole-object vs ranged reads (slow: renders
8 realistic ~18 MB granules, ~1.5 min on 2 cores the first time)."""

from __future__ import annotations

import pytest
from bench_common import md_table, write_result
from bench_io import COLUMNS, run_io

pytestmark = pytest.mark.slow


def test_io_benchmark(bench_work, bench_out):
    res = run_io(bench_work, repeat=1)
    write_result(bench_out, "io", res)
    print("\n" + md_table(res["rows"], COLUMNS))
    rows = {(r["aoi_km"], r["method"]): r for r in res["rows"]}
    for km in (10.0, 50.0, 180.0):
        # coalescing may fetch the few kB of metadata between two variables' chunks
        assert 1.0 <= rows[(km, "ranged warm")]["fetched_over_needed"] < 1.01
        assert rows[(km, "ranged cold")]["fetched_over_needed"] <= 1.3
        assert (
            rows[(km, "whole")]["fetched_over_needed"]
            > rows[(km, "ranged cold")]["fetched_over_needed"]
        )
    assert (
        rows[(180.0, "ranged warm, 3x3 tiles, 320 MiB chunk cache")]["fetched_over_needed"] < 1.01
    )
