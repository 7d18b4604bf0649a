import numpy as np
import pytest

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.grid import TargetGrid


def test_grid_is_aligned_with_production_grid_and_covers_bounds():
    bounds = (-1_716_400.0, -351_300.0, -1_564_000.0, -209_400.0)
    g = TargetGrid.from_bounds(bounds, "EPSG:3031", 120)
    assert np.allclose(np.mod(g.x, 120), 52.5)
    assert np.allclose(np.mod(g.y, 120), 67.5)
    xmin, ymin, xmax, ymax = g.bounds
    assert xmin <= bounds[0] < xmin + 120
    assert ymin <= bounds[1] < ymin + 120
    assert xmax - 120 < bounds[2] <= xmax
    assert ymax - 120 < bounds[3] <= ymax
    assert np.all(np.diff(g.x) == 120) and np.all(np.diff(g.y) == -120)
    assert g.transform == (120.0, 0.0, xmin, 0.0, -120.0, ymax)


def test_grid_other_resolution_keeps_anchor():
    g = TargetGrid.from_bounds((0, 0, 1000, 1000), 3413, 240)
    assert np.allclose(np.mod(g.x, 120), 52.5)  # centres are production-grid centres
    assert np.allclose(np.diff(g.x), 240)


@pytest.mark.parametrize(
    "crs", ["EPSG:4326", "not a crs", "+proj=stere +lat_0=90 +lon_0=10 +lat_ts=70"]
)
def test_grid_rejects_bad_crs(crs):
    with pytest.raises(InvalidInputError):
        TargetGrid.from_bounds((0, 0, 1, 1), crs, 120)


@pytest.mark.parametrize("res", [0, -120, float("nan"), "abc"])
def test_grid_rejects_bad_resolution(res):
    with pytest.raises(InvalidInputError):
        TargetGrid.from_bounds((0, 0, 1, 1), 3031, res)
