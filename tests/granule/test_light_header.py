"""The light header (``GranuleGrid``) that block tasks read: what it holds, what it skips.

Truth: the facts of shared/data/real/README.md (checked there with h5py) and the whole
header read by ``read_info`` for the same files; error cases use hand-made HDF5 files.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from realdata import V1, V2

from itslive_dask.errors import GranuleError
from itslive_dask.granule.info import GranuleGrid, VariableSpec
from itslive_dask.io.hdf5 import H5Reader, open_h5, read_grid, read_info

pytestmark = pytest.mark.skipif(
    not (V1.exists() and V2.exists()), reason="real granules not available"
)


@pytest.mark.parametrize(
    ("path", "shape", "x0", "dx", "fills"),
    [
        (V1, (592, 636), -1716367.5, 240.0, (-32767,)),
        (V2, (1879, 2016), -849907.5, 120.0, (-32767,)),
    ],
)
def test_grid_of_the_real_granules(path, shape, x0, dx, fills):
    with open_h5(path) as h5:
        grid = read_grid(h5, str(path), ["v", "vx", "M11", "x"])
    assert grid.epsg == 3031 and grid.shape == shape
    assert grid.x[0] == x0 and grid.x[1] - grid.x[0] == dx
    # only the variables asked for that the file has (no M11 in these files, x is no variable)
    assert grid.variables == ("v", "vx")
    assert grid.spec("vx").fill_values == fills and grid.spec("vx").dtype == "int16"


@pytest.mark.parametrize("path", [V1, V2])
def test_grid_agrees_with_the_whole_header(path):
    with open_h5(path) as h5:
        info = read_info(h5, str(path))
        grid = read_grid(h5, str(path), info.variables)
    assert grid.epsg == info.epsg
    np.testing.assert_array_equal(grid.x, info.x)
    np.testing.assert_array_equal(grid.y, info.y)
    assert grid.specs == info.specs
    assert not grid.x.flags.writeable


@pytest.mark.parametrize("path", [V1, V2])
def test_grid_survives_json_bit_for_bit(path):
    with open_h5(path) as h5:
        grid = read_grid(h5, str(path), ["vx", "vy", "v", "v_error", "interp_mask"])
    back = GranuleGrid.from_dict(json.loads(json.dumps(grid.to_dict())))
    assert back.epsg == grid.epsg and back.specs == grid.specs and back.source == grid.source
    assert back.x.tobytes() == grid.x.tobytes() and back.y.tobytes() == grid.y.tobytes()
    assert set(grid.to_dict()["x"]) == {"start", "step", "size"}  # regular: 3 numbers, not 2016


def test_an_irregular_axis_is_kept_value_by_value():
    x = np.array([0.0, 120.0, 250.0])
    grid = GranuleGrid("g.nc", 3413, x, np.array([5.0, -115.0]), (VariableSpec("vx", (-32767,)),))
    d = json.loads(json.dumps(grid.to_dict()))
    assert d["x"] == {"values": [0.0, 120.0, 250.0]}
    back = GranuleGrid.from_dict(d)
    assert back.x.tobytes() == x.tobytes() and back.spec("vx").fill_values == (-32767,)


def test_h5_reader_gives_the_light_header_when_asked_for_names():
    with H5Reader(str(V2)) as reader:
        assert isinstance(reader.header(["vx"]), GranuleGrid)
        assert reader.header().mid_date is not None  # no names: the whole header


def _file(path, *, pair=True, vxvy=True, xy=True, mapping=True):
    with h5py.File(path, "w") as h5:
        if xy:
            h5["x"] = np.arange(4.0) * 120
            h5["y"] = -np.arange(3.0) * 120
        if pair:
            h5["img_pair_info"] = np.bytes_("")
        for name in ("vx", "vy") if vxvy else ():
            ds = h5.create_dataset(name, data=np.zeros((3, 4), "int16"))
            ds.attrs["grid_mapping"] = "mapping"
        if mapping:
            h5["mapping"] = np.bytes_("")
            h5["mapping"].attrs["spatial_epsg"] = 3413
    return path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pair": False, "vxvy": False}, "no img_pair_info, vx or vy"),
        ({"vxvy": False}, "no vx/vy"),
        ({"pair": False}, "no img_pair_info"),
        ({"xy": False}, "missing x coordinate"),
        ({"mapping": False}, "grid mapping"),
    ],
)
def test_not_a_granule_is_refused_as_by_the_whole_header(tmp_path, kwargs, match):
    path = _file(tmp_path / "g.nc", **kwargs)
    with open_h5(path) as h5:
        with pytest.raises(GranuleError, match=match) as light:
            read_grid(h5, str(path), ["vx"])
        with pytest.raises(GranuleError) as whole:
            read_info(h5, str(path))
    assert light.value.problem == whole.value.problem


def test_a_valid_minimal_file_gives_its_grid(tmp_path):
    path = _file(tmp_path / "g.nc")
    with open_h5(path) as h5:
        grid = read_grid(h5, str(path), ["vx", "v"])
    assert grid.epsg == 3413 and grid.shape == (3, 4) and grid.variables == ("vx",)
