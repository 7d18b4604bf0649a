"""Scale run: thousands of granules on 2 workers capped at 2 GiB each (slow)."""

from __future__ import annotations

import os

import pytest
from bench_common import md_table, write_result
from bench_scale import SCALE_COLUMNS, run_scale

pytestmark = pytest.mark.slow


def test_scale_run_bounded_memory(bench_work, bench_out):
    """>= 2,000 granules: no worker restarted or killed, no granule failed."""
    unique = int(os.environ.get("ITSLIVE_BENCH_SCALE_UNIQUE", "250"))
    copies = int(os.environ.get("ITSLIVE_BENCH_SCALE_COPIES", "8"))
    res = run_scale(workdir=bench_work, unique=unique, copies=copies, repeat=1)
    write_result(bench_out, "scale", res)
    print("\n" + md_table(res["runs"], SCALE_COLUMNS))
    assert res["granules"] >= 2000 or unique * copies < 2000
    for run in res["runs"]:
        assert run["failed"] == 0
        assert run["workers_replaced"] == 0
        assert run["health"]["workers_after"] == 2
        assert run["max_worker_peak_mb"] < 2048
