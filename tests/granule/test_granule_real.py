"""Reading the two real ITS_LIVE granules (V1 and V2), remote one-request reads, bad inputs.

Expected values come from raw h5py reads done here, from the numbers in
/work/shared/data/real/README.md and from pyproj, never from the code under test.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import ClassVar

import fsspec
import h5py
import numpy as np
import pytest
import shapely
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from pyproj import Transformer
from realdata import V1, V2

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.granule.info import GranuleInfo
from itslive_dask.io.dataset import open_granule
from itslive_dask.io.hdf5 import open_h5, read_granule_info, read_info, read_window
from itslive_dask.table import granule_table

pytestmark = pytest.mark.skipif(
    not (V1.exists() and V2.exists()), reason="real granules not available"
)


def raw_decoded(path: Path, name: str, fill: float) -> np.ndarray:
    """Independent decode: h5py read, int -> float, fill -> NaN."""
    with h5py.File(path, "r") as h5:
        raw = h5[name][()]
    out = raw.astype("float64")
    out[raw == fill] = np.nan
    return out


# --------------------------------------------------------------------------------------
# V1


def test_v1_header():
    info = read_granule_info(V1)
    assert info.granule_id == V1.name[:-3]
    assert info.source == str(V1)
    assert info.epsg == 3031
    assert info.version == 1
    assert info.resolution == 240.0
    assert info.shape == (592, 636)
    assert info.x[0] == -1716367.5 and info.y[0] == -209392.5
    assert np.all(np.diff(info.x) == 240.0) and np.all(np.diff(info.y) == -240.0)
    assert info.x.dtype == np.float64
    # misspelled aquisition_date_img1/2, image 1 is the later one
    assert info.acquisition_date_img1 == np.datetime64("2012-11-18", "ns")
    assert info.acquisition_date_img2 == np.datetime64("2012-11-04", "ns")
    assert info.mid_date == np.datetime64("2012-11-11", "ns")
    assert info.date_dt == 14.0
    # V1 stores satellite_img1 = 7.0 with mission 'L' and sensor 'E'
    assert (info.satellite_img1, info.satellite_img2, info.sensor) == ("LE07", "LE07", "landsat")
    assert info.percent_valid == 59.0
    assert {"vx", "vy", "v"} <= set(info.variables)
    assert "v_error" not in info.variables


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine, inside rioxarray
def test_v1_open_granule_matches_raw_h5py():
    ds = open_granule(V1)
    assert ds.sizes == {"y": 592, "x": 636}
    for name in ("vx", "vy", "v"):
        expected = raw_decoded(V1, name, -32767)
        assert ds[name].dtype == np.float32
        np.testing.assert_array_equal(ds[name].values, expected)
    # 213,244 of 376,512 pixels are missing (README), i.e. 43.4 % valid
    assert int(np.isnan(ds.vx.values).sum()) == 213_244
    assert int(np.isnan(ds.v.values).sum()) == 213_244
    # spot values at a few valid pixels equal the stored integers
    with h5py.File(V1, "r") as h5:
        vx_raw = h5["vx"][()]
        cw_raw = h5["chip_size_width"][()]
        mask_raw = h5["interp_mask"][()]
    rows, cols = np.nonzero(vx_raw != -32767)
    for k in (0, len(rows) // 3, len(rows) // 2, len(rows) - 1):
        i, j = rows[k], cols[k]
        assert ds.vx.values[i, j] == float(vx_raw[i, j])
    # no v_error in V1: present and all NaN
    assert ds.v_error.dtype == np.float32 and bool(np.isnan(ds.v_error.values).all())
    # chip size: missing_value = 0 -> NaN; chip_size_height was never written -> all NaN
    assert int(np.isnan(ds.chip_size_width.values).sum()) == int((cw_raw == 0).sum())
    assert bool(np.isnan(ds.chip_size_height.values).all())
    # interp_mask has no missing value: kept as uint8
    assert ds.interp_mask.dtype == np.uint8
    np.testing.assert_array_equal(ds.interp_mask.values, mask_raw)
    # coordinates and CRS
    assert ds.x.values[0] == -1716367.5 and ds.y.values[0] == -209392.5
    assert ds.rio.crs.to_epsg() == 3031
    # a rioxarray transform built from the centres: corner half a pixel out
    assert tuple(ds.rio.transform())[:6] == (240.0, 0.0, -1716487.5, 0.0, -240.0, -209272.5)
    # typed pair metadata
    assert ds.acquisition_date_img1.values == np.datetime64("2012-11-18", "ns")
    assert ds.acquisition_date_img2.values == np.datetime64("2012-11-04", "ns")
    assert ds.mid_date.values == np.datetime64("2012-11-11", "ns")
    assert ds.date_dt.item() == 14.0
    assert ds.satellite_img1.item() == "LE07" and ds.sensor.item() == "landsat"
    assert ds.percent_valid.item() == 59.0
    assert ds.version.item() == 1 and ds.attrs["version"] == 1
    assert ds.epsg.item() == 3031 and ds.attrs["epsg"] == 3031
    assert ds.granule_id.item() == V1.name[:-3]


# --------------------------------------------------------------------------------------
# V2


def test_v2_header():
    info = read_granule_info(V2)
    assert info.epsg == 3031 and info.version == 2 and info.resolution == 120.0
    assert info.shape == (1879, 2016)
    assert info.x[0] == -849907.5 and info.y[0] == -457132.5
    assert np.all(np.diff(info.x) == 120.0) and np.all(np.diff(info.y) == -120.0)
    assert info.acquisition_date_img1 == np.datetime64("1984-12-06T12:52:19.377", "ns")
    assert info.acquisition_date_img2 == np.datetime64("1985-01-24T13:35:34.504056", "ns")
    # 49 d 43 min 15.127056 s; the file's own date_dt attribute says 49.03003619
    assert info.date_dt == pytest.approx(49 + 2595.127056 / 86400, abs=1e-9)
    assert info.date_dt == pytest.approx(49.03003619, abs=1e-8)
    # half of it, 24 d 12 h 21 min 37.563528 s, after image 1 (= date_center attribute)
    assert info.mid_date == np.datetime64("1984-12-31T01:13:56.940528", "ns")
    # V2 stores satellite_img1 = '5' with mission 'L' and sensor 'T'
    assert (info.satellite_img1, info.satellite_img2) == ("LT05", "LT05")
    assert info.percent_valid == 0.0
    assert set(info.variables) == {
        "vx",
        "vy",
        "v",
        "v_error",
        "chip_size_width",
        "chip_size_height",
        "interp_mask",
    }


def test_v2_all_fill_granule():
    ds = open_granule(V2)
    assert ds.sizes == {"y": 1879, "x": 2016}
    for name in ("vx", "vy", "v", "v_error", "chip_size_width", "chip_size_height"):
        assert ds[name].dtype == np.float32
        assert bool(np.isnan(ds[name].values).all()), name
    assert ds.rio.crs.to_epsg() == 3031
    assert ds.version.item() == 2
    assert ds.date_dt.attrs["units"] == "days"


def test_open_granule_variable_selection():
    ds = open_granule(V1, variables=["vx", "v_error"])
    assert list(ds.data_vars) == ["vx", "v_error"]
    with pytest.raises(InvalidInputError, match="vxx"):
        open_granule(V1, variables=["vxx"])


# --------------------------------------------------------------------------------------
# windows


@pytest.mark.parametrize("path", [V1, V2])
def test_window_equals_slice_of_full_read(path):
    names = ["vx", "vy", "v", "v_error", "chip_size_width"]
    with open_h5(path) as h5:
        info = read_info(h5, str(path))
        full = read_window(h5, info, names, slice(None), slice(None))
        win = read_window(h5, info, names, slice(100, 357), slice(50, 421))
        edge = read_window(h5, info, ["vx"], slice(-7, None), slice(600, 10_000))
        empty = read_window(h5, info, ["vx"], slice(5, 5), slice(0, 10))
    ny, nx = info.shape
    for name in names:
        assert full[name].shape == (ny, nx) and full[name].dtype == np.float32
        np.testing.assert_array_equal(win[name], full[name][100:357, 50:421])
    np.testing.assert_array_equal(edge["vx"], full["vx"][ny - 7 :, 600:])
    assert empty["vx"].shape == (0, 10)


def test_window_values_match_raw_h5py_v1():
    expected = raw_decoded(V1, "vy", -32767)
    with open_h5(V1) as h5:
        info = read_info(h5, str(V1))
        win = read_window(h5, info, ["vy", "v_error"], slice(200, 300), slice(300, 380))
    np.testing.assert_array_equal(win["vy"], expected[200:300, 300:380])
    assert np.isfinite(win["vy"]).any()  # the window is not all fill
    assert win["v_error"].shape == (100, 80) and bool(np.isnan(win["v_error"]).all())


def test_window_refuses_steps():
    with open_h5(V1) as h5:
        info = read_info(h5, str(V1))
        with pytest.raises(InvalidInputError, match="step"):
            read_window(h5, info, ["vx"], slice(0, 10, 2), slice(0, 10))


# --------------------------------------------------------------------------------------
# footprint and table record


def test_v1_record_footprint_contains_valid_pixels_and_validates():
    info = read_granule_info(V1)
    rec = info.to_record(url="s3://bucket/x.nc", https_url="https://bucket/x.nc")
    table = granule_table([rec])
    row = table.iloc[0]
    assert row.url == "s3://bucket/x.nc" and row.https_url == "https://bucket/x.nc"
    assert row.epsg == 3031 and row.version == 1 and row.sensor == "landsat"
    assert row.date_dt == 14.0 and row.percent_valid == 59.0 and row.resolution == 240.0
    assert row.mid_date == np.datetime64("2012-11-11")
    foot = table.geometry.iloc[0]
    assert foot.geom_type == "Polygon" and foot.is_valid

    vx = raw_decoded(V1, "vx", -32767)
    rows, cols = np.nonzero(np.isfinite(vx))
    pick = np.linspace(0, len(rows) - 1, 25).astype(int)
    to_ll = Transformer.from_crs(3031, 4326, always_xy=True)
    lon, lat = to_ll.transform(info.x[cols[pick]], info.y[rows[pick]])
    assert all(foot.contains(shapely.Point(a, b)) for a, b in zip(lon, lat, strict=True))
    # the grid's own corner pixels are inside, points 2 pixels beyond the edges are not
    cx = [info.x[0], info.x[-1], info.x[0], info.x[-1]]
    cy = [info.y[0], info.y[0], info.y[-1], info.y[-1]]
    lon, lat = to_ll.transform(cx, cy)
    assert all(foot.contains(shapely.Point(a, b)) for a, b in zip(lon, lat, strict=True))
    ox = [info.x[0] - 480, info.x[-1] + 480, info.x[300], info.x[300]]
    oy = [info.y[300], info.y[300], info.y[0] + 480, info.y[-1] - 480]
    lon, lat = to_ll.transform(ox, oy)
    assert not any(foot.contains(shapely.Point(a, b)) for a, b in zip(lon, lat, strict=True))


def test_info_pickles():
    info = read_granule_info(V2)
    back = pickle.loads(pickle.dumps(info))
    assert isinstance(back, GranuleInfo)
    np.testing.assert_array_equal(back.x, info.x)
    assert back.variables == info.variables and back.specs == info.specs
    assert back.mid_date == info.mid_date


# --------------------------------------------------------------------------------------
# remote reads through fsspec


def test_memory_url_read_equals_local_read():
    fs = fsspec.filesystem("memory")
    url = f"memory://itslive-test/{V1.name}"
    fs.pipe(url, V1.read_bytes())
    try:
        remote = open_granule(url)
        local = open_granule(V1)
        for name in local.data_vars:
            np.testing.assert_array_equal(remote[name].values, local[name].values)
        np.testing.assert_array_equal(remote.x.values, local.x.values)
        assert remote.attrs["source"] == url
        assert remote.granule_id.item() == local.granule_id.item()
        info = read_granule_info(url)
        assert info.mid_date == local.mid_date.values and info.epsg == 3031
        with open_h5(url) as h5:
            info = read_info(h5, url)
            win = read_window(h5, info, ["vx"], slice(10, 90), slice(20, 70))
        np.testing.assert_array_equal(win["vx"], local.vx.values[10:90, 20:70])
    finally:
        fs.rm(url)


class CountingFS(AbstractFileSystem):
    """A real fsspec filesystem over an in-memory dict that records every byte request."""

    protocol = "itslivecount"
    root_marker = ""
    store: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, int | None, int | None]]] = []

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kw):
        return _CountingFile(
            self, path, mode, block_size=block_size or 2**20, cache_options=cache_options, **kw
        )

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path not in self.store:
            raise FileNotFoundError(path)
        return {"name": path, "size": len(self.store[path]), "type": "file"}

    def cat_file(self, path, start=None, end=None, **kwargs):
        path = self._strip_protocol(path)
        if path not in self.store:
            raise FileNotFoundError(path)
        self.requests.append((path, start, end))
        return self.store[path][start:end]


class _CountingFile(AbstractBufferedFile):
    def _fetch_range(self, start, end):
        self.fs.requests.append((self.path, start, end))
        return self.fs.store[self.path][start:end]


@pytest.fixture
def counting_fs():
    fsspec.register_implementation(CountingFS.protocol, CountingFS, clobber=True)
    CountingFS.store.clear()
    CountingFS.requests.clear()
    yield CountingFS
    CountingFS.store.clear()
    CountingFS.requests.clear()


def test_open_h5_makes_one_whole_object_request(counting_fs):
    counting_fs.store[f"b/{V1.name}"] = V1.read_bytes()
    url = f"itslivecount://b/{V1.name}"
    with open_h5(url) as h5:
        info = read_info(h5, url)
        read_window(h5, info, ["vx", "vy", "v"], slice(None), slice(None))
    assert counting_fs.requests == [(f"b/{V1.name}", None, None)]


@pytest.mark.parametrize("path", [V1, V2])
def test_header_read_fetches_a_fraction_of_the_object(counting_fs, path):
    data = path.read_bytes()
    counting_fs.store[f"b/{path.name}"] = data
    info = read_granule_info(f"itslivecount://b/{path.name}")
    assert info.shape == read_granule_info(path).shape
    fetched = sum(end - start for _, start, end in counting_fs.requests)
    assert all(start is not None for _, start, _ in counting_fs.requests)  # ranged only
    assert fetched <= 0.9 * len(data)
    assert len(counting_fs.requests) <= 8


# --------------------------------------------------------------------------------------
# bad inputs -> GranuleError naming the file


def assert_granule_error(func, source, *words):
    with pytest.raises(GranuleError) as err:
        func(source)
    msg = str(err.value)
    assert Path(str(source)).name in msg, msg
    for word in words:
        assert word in msg, msg
    return err.value


def _readers():
    def via_open_h5(src):
        with open_h5(src) as h5:
            read_info(h5, str(src))

    return [read_granule_info, open_granule, via_open_h5]


@pytest.mark.parametrize("reader", _readers())
def test_not_an_itslive_granule(tmp_path, reader):
    import xarray as xr

    path = tmp_path / "temperature.nc"
    xr.Dataset(
        {"temperature": (("y", "x"), np.zeros((3, 4), "float32"))},
        coords={"x": np.arange(4.0), "y": np.arange(3.0)},
    ).to_netcdf(path, engine="h5netcdf")
    assert_granule_error(reader, path, "not an ITS_LIVE")


@pytest.mark.parametrize("reader", _readers())
def test_truncated_file(tmp_path, reader):
    path = tmp_path / V1.name
    path.write_bytes(V1.read_bytes()[:600_000])
    assert_granule_error(reader, path, "truncated")


@pytest.mark.parametrize("reader", _readers())
def test_missing_file(tmp_path, reader):
    assert_granule_error(reader, tmp_path / "nope.nc", "not found")


@pytest.mark.parametrize("reader", _readers())
def test_text_file(tmp_path, reader):
    path = tmp_path / "notes.nc"
    path.write_text("this is not a granule\n" * 50)
    assert_granule_error(reader, path, "not a NetCDF4/HDF5 file")


@pytest.mark.parametrize("reader", _readers())
def test_directory(tmp_path, reader):
    path = tmp_path / "folder.nc"
    path.mkdir()
    assert_granule_error(reader, path, "directory")


@pytest.mark.parametrize("reader", _readers())
def test_unknown_grid_mapping(tmp_path, reader):
    path = tmp_path / V2.name
    shutil.copy(V2, path)
    path.chmod(0o644)
    with h5py.File(path, "r+") as h5:
        for key in ("spatial_epsg", "crs_wkt", "spatial_ref"):
            del h5["mapping"].attrs[key]
    assert_granule_error(reader, path, "unknown grid mapping", "'mapping'")


@pytest.mark.parametrize("reader", _readers())
def test_grid_mapping_variable_missing(tmp_path, reader):
    path = tmp_path / V2.name
    shutil.copy(V2, path)
    path.chmod(0o644)
    with h5py.File(path, "r+") as h5:
        for name in ("vx", "vy", "v"):
            h5[name].attrs["grid_mapping"] = np.bytes_(b"lambert_conformal")
    assert_granule_error(reader, path, "unknown grid mapping", "lambert_conformal")


@pytest.mark.parametrize("reader", _readers())
@pytest.mark.parametrize("axis", ["x", "y"])
def test_missing_coordinate(tmp_path, reader, axis):
    path = tmp_path / V1.name
    shutil.copy(V1, path)
    path.chmod(0o644)
    with h5py.File(path, "r+") as h5:
        del h5[axis]
    assert_granule_error(reader, path, f"missing {axis} coordinate")


def test_corrupt_chunk_fails_in_read_window(tmp_path):
    path = tmp_path / V1.name
    data = bytearray(V1.read_bytes())
    with h5py.File(V1, "r") as h5:
        offset = h5["vx"].id.get_chunk_info(0).byte_offset
    data[offset + 100 : offset + 4000] = b"\xff" * 3900
    path.write_bytes(bytes(data))
    with open_h5(path) as h5:
        info = read_info(h5, str(path))  # header intact
        with pytest.raises(GranuleError) as err:
            read_window(h5, info, ["vy", "vx"], slice(0, 50), slice(0, 50))
    assert path.name in str(err.value) and "vx" in str(err.value)
    assert_granule_error(open_granule, path, "vx")


def test_remote_errors(counting_fs):
    counting_fs.store[f"b/{V1.name}"] = V1.read_bytes()[:400_000]
    for reader in _readers():
        assert_granule_error(reader, "itslivecount://b/missing.nc", "object not found")
        assert_granule_error(reader, f"itslivecount://b/{V1.name}", "truncated")
    assert_granule_error(read_granule_info, "nosuchproto://b/x.nc", "cannot open this URL")


def test_granule_error_is_not_a_keyerror_or_oserror(tmp_path):
    err = assert_granule_error(read_granule_info, tmp_path / "nope.nc", "not found")
    assert not isinstance(err, KeyError | OSError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.source, back.problem) == (err.source, err.problem)
