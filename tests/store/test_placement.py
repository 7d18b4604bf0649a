"""Blocks of one band of tiles prefer one worker (pure function, hand-computed cases)."""

from __future__ import annotations

from itslive_dask.store.runner import band_placement


def test_one_band_one_worker_in_contiguous_runs():
    blocks = [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 2, 0), (1, 0, 0)]
    got = band_placement(blocks, ["tcp://a", "tcp://b"])
    # 4 bands (0,0) (0,1) (0,2) (1,0): the first two on a, the last two on b
    assert got == {
        (0, 0, 0): ["tcp://a"], (0, 0, 1): ["tcp://a"], (0, 0, 2): ["tcp://a"],
        (0, 1, 0): ["tcp://a"], (0, 1, 1): ["tcp://a"],
        (0, 2, 0): ["tcp://b"],
        (1, 0, 0): ["tcp://b"],  # another time block is another band
    }  # fmt: skip


def test_three_bands_on_two_workers():
    got = band_placement([(0, 2, 0), (0, 0, 0), (0, 1, 0)], ["tcp://b", "tcp://a"])
    assert got == {(0, 0, 0): ["tcp://b"], (0, 1, 0): ["tcp://b"], (0, 2, 0): ["tcp://a"]}


def test_no_preference_without_a_choice():
    assert band_placement([(0, 0, 0), (0, 1, 0)], ["tcp://a"]) == {}
    assert band_placement([(0, 0, 0)], []) == {}
