"""End-to-end read-path benchmark: ``write_cube`` with the range reader vs whole objects on
realistic granules behind the counting proxy (slow: renders 8 realistic ~17 MB granules the
first time, ~1 min on 2 cores, then 6 builds on fresh 2-worker clusters).

Counts are checked, never times."""

from __future__ import annotations

import pytest
from bench_common import md_table, write_result
from bench_readpath import COLUMNS, run_readpath

pytestmark = pytest.mark.slow


def test_readpath_benchmark(bench_work, bench_out):
    res = run_readpath(bench_work, aois_km=(10.0, 180.0))
    write_result(bench_out, "readpath", res)
    print("\n" + md_table(res["rows"], COLUMNS))
    # both readers build the same cube, value for value
    assert res["reader_mismatches"] == []
    rows = {(r["aoi_km"], r["reader"]): r for r in res["rows"]}
    for km in (10.0, 180.0):
        ranged, whole = rows[(km, "ranged")], rows[(km, "whole")]
        assert ranged["granules_read"] == whole["granules_read"] == ranged["granules"] > 0
        # the switch really selects the reader: whole GETs only, ranged GETs only
        assert whole["build"]["get_ranged"]["requests"] == 0
        assert whole["build"]["get_whole"]["requests"] >= whole["granules"]
        assert ranged["build"]["get_whole"]["requests"] == 0
        # issue 11: at most 1.3x the needed bytes per worker process that reads the AOI (the
        # header and decoded-chunk caches are per process: with 2 workers sharing the tiles of
        # the 180 km AOI each fetches the row chunks its tiles need; measured 1.99x)
        readers_of_aoi = min(ranged["blocks"], ranged["workers"])
        assert ranged["fetched_over_needed"] <= 1.3 * readers_of_aoi
        assert ranged["build"]["bytes_out"] < whole["build"]["bytes_out"]
        # a resume of a finished build reads nothing at all
        for r in (ranged, whole):
            assert r["resume"]["blocks_written"] == 0
            assert r["resume"]["requests"] == 0
        # a resume with one block marker removed rebuilds that block only
        assert ranged["partial_resume"]["blocks_written"] == 1
        # from a catalog with chunk indexes, a first build reads no header: chunk GETs only
        cat = rows[(km, "catalog")]
        assert cat["granules_read"] == ranged["granules_read"]
        assert ranged["header_requests_per_granule"] > 0
        assert cat["header_requests_per_granule"] == 0
        assert cat["build"]["requests"] == cat["chunk_gets"] > 0
    assert res["catalog"]["granules"] == res["granules"]
