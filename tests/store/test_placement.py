"""Blocks of one band of tiles prefer one worker (pure function, hand-computed cases)."""

from __future__ import annotations

from itslive_dask.store.runner import band_placement


def test_one_band_one_worker_dealt_round_robin():
    blocks = [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 2, 0), (1, 0, 0)]
    got = band_placement(blocks, ["tcp://a", "tcp://b"])
    assert got == {
        (0, 0, 0): ["tcp://a"], (0, 0, 1): ["tcp://a"], (0, 0, 2): ["tcp://a"],
        (0, 1, 0): ["tcp://b"], (0, 1, 1): ["tcp://b"],
        (0, 2, 0): ["tcp://a"],
        (1, 0, 0): ["tcp://b"],  # another time block is another band
    }  # fmt: skip


def test_no_preference_without_a_choice():
    assert band_placement([(0, 0, 0), (0, 1, 0)], ["tcp://a"]) == {}
    assert band_placement([(0, 0, 0)], []) == {}
