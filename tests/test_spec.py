"""CubeSpec: one validated value for the cube settings; its grid is computed without IO."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from itslive_dask.errors import InvalidInputError
from itslive_dask.spec import CubeSpec


def test_defaults_and_overrides():
    spec = CubeSpec()
    assert spec.variables == ("vx", "vy", "v", "v_error")
    assert spec.chunks == (16, 512, 512) and spec.resolution == 120.0
    assert spec.resampling == "nearest"
    # None means "not given": the spec's value stays
    same = CubeSpec.build(spec, resolution=None, chunks=None)
    assert same is spec
    other = CubeSpec.build(spec, resolution=240, chunks={"mid_date": 4})
    assert other.resolution == 240.0 and other.chunks == (4, 512, 512)
    assert spec.resolution == 120.0  # frozen: the original is unchanged


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"variables": ("vx", "speed")}, "unknown variable 'speed'"),
        ({"variables": ()}, "at least one"),
        ({"resampling": "cubic"}, "unknown resampling"),
        ({"resolution": -5}, "positive"),
        ({"resolution": "fine"}, "number of metres"),
        ({"chunks": (0, 10, 10)}, "positive integers"),
        ({"bbox": (10, 80, 5, 70)}, "bbox"),
        ({"colour": "red"}, "unknown cube settings"),
    ],
)
def test_bad_settings_are_refused_with_a_message(kwargs, words):
    with pytest.raises(InvalidInputError, match=words):
        CubeSpec.build(**kwargs)


def test_grid_covers_the_region_on_the_production_anchor():
    spec = CubeSpec(bbox=(-101.2, -75.5, -99.1, -74.7))
    grid, region = spec.grid_and_region()
    assert grid.epsg == 3031  # south: Antarctic polar stereographic
    # production grid: pixel centres at 52.5 / 67.5 m modulo 120 m
    assert np.allclose(np.mod(grid.x, 120.0), 52.5)
    assert np.allclose(np.mod(grid.y, 120.0), 67.5)
    x0, y0, x1, y1 = region.bounds
    assert grid.x.min() - 60 <= x0 and grid.x.max() + 60 >= x1
    assert grid.y.min() - 60 <= y0 and grid.y.max() + 60 >= y1


def test_without_a_region_the_footprints_are_the_region():
    a = shapely.box(10.0, 78.0, 11.0, 78.5)
    b = shapely.box(10.5, 78.2, 12.0, 78.8)
    region = CubeSpec().region_lonlat([a, b])
    assert region.equals(shapely.union_all([a, b]))
    with pytest.raises(InvalidInputError, match="no granules and no region"):
        CubeSpec().region_lonlat([])


def test_open_cube_rejects_unknown_variables_before_reading(tmp_path):
    """Defect: an unknown variable name used to give a silently all-NaN layer."""
    from itslive_dask import open_cube

    with pytest.raises(InvalidInputError, match="unknown variable 'vz'"):
        open_cube(str(tmp_path / "nothing-yet"), bbox=(10, 78, 11, 79), variables=["vz"])
