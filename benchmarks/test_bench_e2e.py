"""Baseline (the tutorial's eager load_cube) vs the engine on one synthetic archive (slow)."""

from __future__ import annotations

import os

import pytest
from bench_common import md_table, write_result
from bench_e2e import E2E_COLUMNS, run_e2e

pytestmark = pytest.mark.slow


def test_baseline_vs_engine(bench_work, bench_out):
    """Local files and the local S3 server; every case in its own process."""
    n = int(os.environ.get("ITSLIVE_BENCH_E2E_GRANULES", "200"))
    res = run_e2e(n, workdir=bench_work, with_s3=True)
    write_result(bench_out, "e2e", res)
    print("\n" + md_table(res["rows"], E2E_COLUMNS))
    by = {(r["source"], r["case"]): r for r in res["rows"]}
    for source in ("local files", "local S3 (moto)"):
        base, comp, write = (by[(source, c)] for c in ("baseline", "compute", "write"))
        # the engine keeps every granule that touches the region, whatever its CRS
        assert comp["shape"][0] == comp["plan"]["layers"] == write["shape"][0]
        # the tutorial keeps only its majority CRS (the archive mixes 4 CRSs)
        assert base["stats"]["dropped_minority_crs"] > 0
        assert base["shape"][0] < comp["shape"][0]
        assert write["failed"] == 0
        assert comp["health"]["workers_replaced"] == 0
