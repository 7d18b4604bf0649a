"""The pure window arithmetic of a granule read, checked by hand."""

from __future__ import annotations

import numpy as np

from itslive_dask.cube.reproject import source_window


def test_nearest_window_holds_the_nearest_pixels():
    fi = np.array([2.4, 2.6, 7.49, -0.5, 9.6])
    fj = np.array([0.0, 3.5, 4.49, 1.0, 1.0])
    win = source_window(fi, fj, (10, 6), "nearest")
    # 9.6 is beyond the last pixel's edge (9.5): dropped; -0.5 is on the first edge: kept
    assert win.keep.tolist() == [True, True, True, True, False]
    # nearest rows: round(2.4)=2, round(2.6)=3, round(7.49)=7, floor(-0.5+0.5)=0 -> 0..7
    assert (win.rows.start, win.rows.stop) == (0, 8)
    # nearest cols: 0, floor(4.0)=4, floor(4.99)=4, 1 -> 0..4
    assert (win.cols.start, win.cols.stop) == (0, 5)
    np.testing.assert_allclose(win.fi, fi[:4] - 0)


def test_bilinear_window_holds_both_neighbours_clipped_to_the_grid():
    fi = np.array([3.2, 5.7])
    fj = np.array([2.1, 5.4])
    win = source_window(fi, fj, (8, 6), "bilinear")
    assert (win.rows.start, win.rows.stop) == (3, 7)  # floor 3 .. ceil(5.7)=6 -> stop 7
    assert (win.cols.start, win.cols.stop) == (2, 6)  # 2 .. 6 clipped to 6 columns
    np.testing.assert_allclose(win.fi, fi - 3)
    np.testing.assert_allclose(win.fj, fj - 2)


def test_no_target_on_the_grid_gives_none():
    assert source_window(np.array([-3.0]), np.array([1.0]), (4, 4), "nearest") is None
