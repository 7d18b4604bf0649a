"""Graph construction: size and build time of the lazy cube, from granule tables alone."""

from __future__ import annotations

import math

import pytest
from bench_common import md_table, write_result
from bench_graph import GRAPH_COLUMNS, run_graph


def _expected_blocks(row: dict, chunks: tuple[int, int, int]) -> int:
    t, y, x = chunks
    n_layers, height, width = row["shape"]
    return math.ceil(n_layers / t) * math.ceil(height / y) * math.ceil(width / x)


def test_task_count_follows_output_blocks_not_granules():
    """Fast: one block task per output block, counted from the cube shape alone."""
    chunks = {"series": (64, 128, 128)}
    res = run_graph(sizes=(300, 1200), chunkings=chunks, seed=1)
    small, large = res["rows"]
    for row in res["rows"]:
        blocks = _expected_blocks(row, chunks["series"])
        assert row["blocks"] == blocks
        # one task per block that reads granules, none for the others
        assert row["block_tasks"] == row["blocks_with_data"] <= blocks
        # the rest of the graph: one chunk per block and variable (a pick of the block's
        # result, or a NaN fill), plus the shared config
        assert row["tasks"] == row["blocks_with_data"] + blocks * 4 + 1
        # a per-(granule, tile) graph would be many times larger on the same table
        assert row["naive_pair_tasks"] > 3 * row["block_tasks"]
    # 4x the granules: the naive graph grows 4x too (granules x tiles they touch)
    assert large["naive_pair_tasks"] / small["naive_pair_tasks"] > 3


@pytest.mark.slow
def test_graph_construction_benchmark(bench_out):
    """10^3, 10^4, 10^5 granules x two chunkings; figures in graph.json."""
    res = run_graph()
    write_result(bench_out, "graph", res)
    print("\n" + md_table(res["rows"], GRAPH_COLUMNS))
    for row in res["rows"]:
        assert row["block_tasks"] == row["blocks_with_data"] <= row["blocks"]
