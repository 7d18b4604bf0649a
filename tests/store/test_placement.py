"""Blocks of one time block prefer one worker (pure function, hand-computed cases)."""

from __future__ import annotations

from itslive_dask.store.runner import slab_placement


def test_one_time_block_one_worker_in_contiguous_runs():
    blocks = [(0, 0, 0), (0, 1, 2), (1, 0, 0), (1, 2, 1), (2, 0, 0), (3, 1, 1), (3, 0, 0)]
    got = slab_placement(blocks, ["tcp://a", "tcp://b"])
    # time blocks 0, 1 on a; 2, 3 on b; every tile of a time block with its time block
    assert got == {
        (0, 0, 0): ["tcp://a"], (0, 1, 2): ["tcp://a"], (1, 0, 0): ["tcp://a"], (1, 2, 1): ["tcp://a"],
        (2, 0, 0): ["tcp://b"], (3, 1, 1): ["tcp://b"], (3, 0, 0): ["tcp://b"],
    }  # fmt: skip


def test_three_time_blocks_on_two_workers():
    got = slab_placement([(2, 0, 0), (0, 0, 0), (1, 0, 0)], ["tcp://b", "tcp://a"])
    assert got == {(0, 0, 0): ["tcp://b"], (1, 0, 0): ["tcp://b"], (2, 0, 0): ["tcp://a"]}


def test_no_preference_without_a_choice():
    assert slab_placement([(0, 0, 0), (1, 0, 0)], ["tcp://a"]) == {}
    assert slab_placement([(0, 0, 0)], []) == {}
