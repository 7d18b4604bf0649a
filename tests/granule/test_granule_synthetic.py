"""Granule reading on small files written here with h5py, with analytic pixel values.

Covers what the two real fixtures do not: a length-1 ``time`` dimension, CF packing,
Sentinel-1/-2 satellite attributes, UTM grids, files without an ITS_LIVE name, chunk-level
reads, and footprints around a pole and across the antimeridian.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer

from itslive_dask.errors import GranuleError
from itslive_dask.granule.info import GranuleInfo
from itslive_dask.io.dataset import open_granule
from itslive_dask.io.hdf5 import open_h5, read_granule_info, read_info, read_window
from itslive_dask.table import granule_table

S2_NAME = (
    "S2A_MSIL1C_20200101T142729_N0208_R053_T19FDV_20200101T175120_X_"
    "S2B_MSIL1C_20200111T142729_N0208_R053_T19FDV_20200111T161036_G0120V02_P082.nc"
)
S1_NAME = (
    "S1A_IW_SLC__1SSH_20170221T204710_20170221T204737_015387_0193F6_AB07_X_"
    "S1B_IW_SLC__1SSH_20170227T204628_20170227T204655_004491_007D11_6654_G0120V02_P094.nc"
)
FILL = -32767


def analytic_vx(ny: int, nx: int) -> np.ndarray:
    """int16 field with fill at every 7th pixel (flat index)."""
    i, j = np.mgrid[0:ny, 0:nx]
    out = ((i * 37 + j * 11) % 2000 - 1000).astype("int16")
    out.ravel()[::7] = FILL
    return out


def expected_float(raw: np.ndarray, fill: float = FILL) -> np.ndarray:
    out = raw.astype("float64")
    out[raw == fill] = np.nan
    return out


def write_granule(
    path: Path,
    *,
    x: np.ndarray,
    y: np.ndarray,
    variables: dict[str, tuple[np.ndarray, dict]],
    pair: dict,
    epsg: int | None = 3031,
    grid_mapping: str = "mapping",
    gm_attrs: dict | None = None,
    time_axis: bool = False,
    chunks: tuple[int, int] | None = None,
) -> Path:
    """Write an ITS_LIVE-shaped granule (V2 layout unless told otherwise) with h5py."""
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=np.asarray(x, "float64"))
        h5.create_dataset("y", data=np.asarray(y, "float64"))
        gm = h5.create_dataset(grid_mapping, data=np.bytes_(b""))
        if epsg is not None:
            gm.attrs["spatial_epsg"] = np.int64(epsg)
        for k, v in (gm_attrs or {}).items():
            gm.attrs[k] = v
        pi = h5.create_dataset("img_pair_info", data=np.bytes_(b""))
        for k, v in pair.items():
            pi.attrs[k] = v
        for name, (arr, attrs) in variables.items():
            data = arr[None] if time_axis else arr
            kw = {}
            if chunks is not None:
                kw = {
                    "chunks": ((1, *chunks) if time_axis else chunks),
                    "compression": "gzip",
                    "compression_opts": 2,
                    "shuffle": True,
                }
            ds = h5.create_dataset(name, data=data, **kw)
            ds.attrs["grid_mapping"] = np.bytes_(grid_mapping.encode())
            for k, v in attrs.items():
                ds.attrs[k] = v
    return path


def v2_pair(**over) -> dict:
    pair = {
        "acquisition_date_img1": np.bytes_(b"20200101T14:27:29.024"),
        "acquisition_date_img2": np.bytes_(b"20200111T14:27:29.024"),
        "mission_img1": np.bytes_(b"S"),
        "mission_img2": np.bytes_(b"S"),
        "satellite_img1": np.bytes_(b"2A"),
        "satellite_img2": np.bytes_(b"2B"),
        "sensor_img1": np.bytes_(b"MSI"),
        "sensor_img2": np.bytes_(b"MSI"),
        "roi_valid_percentage": np.float64(82.0),
        "date_dt": np.float64(10.0),
    }
    pair.update(over)
    return pair


def int16_var(arr: np.ndarray) -> tuple[np.ndarray, dict]:
    return arr, {"_FillValue": np.int16(FILL), "units": "meter/year"}


@pytest.fixture
def grid():
    ny, nx = 150, 200
    x = 100_000.0 + 120.0 * np.arange(nx) + 60.0
    y = -1_000_000.0 - 120.0 * np.arange(ny) - 60.0
    return x, y


def test_time_axis_is_squeezed(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    vy = -vx
    path = write_granule(
        tmp_path / S2_NAME,
        x=x,
        y=y,
        variables={"vx": int16_var(vx), "vy": int16_var(vy), "v": int16_var(np.abs(vx))},
        pair=v2_pair(),
        time_axis=True,
        chunks=(64, 64),
    )
    with h5py.File(path, "r") as h5:
        assert h5["vx"].shape == (1, 150, 200)  # really stored with a time dimension
    with open_h5(path) as h5:
        info = read_info(h5, str(path))
        win = read_window(h5, info, ["vx", "vy", "v_error"], slice(10, 90), slice(30, 170))
    assert {"vx", "vy", "v"} <= set(info.variables)
    np.testing.assert_array_equal(win["vx"], expected_float(vx)[10:90, 30:170])
    np.testing.assert_array_equal(win["vy"], expected_float(vy)[10:90, 30:170])
    assert win["v_error"].shape == (80, 140) and bool(np.isnan(win["v_error"]).all())
    ds = open_granule(path)
    assert ds.vx.dims == ("y", "x") and ds.sizes == {"y": 150, "x": 200}
    np.testing.assert_array_equal(ds.vx.values, expected_float(vx))


def test_sentinel2_attributes_and_dates(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    path = write_granule(
        tmp_path / S2_NAME,
        x=x,
        y=y,
        variables={"vx": int16_var(vx), "vy": int16_var(vx)},
        pair=v2_pair(),
    )
    info = read_granule_info(path)
    assert (info.satellite_img1, info.satellite_img2, info.sensor) == ("S2A", "S2B", "sentinel2")
    # times from the file (with fractional seconds), not the name
    assert info.acquisition_date_img1 == np.datetime64("2020-01-01T14:27:29.024", "ns")
    assert info.mid_date == np.datetime64("2020-01-06T14:27:29.024", "ns")
    assert info.date_dt == 10.0
    assert info.percent_valid == 82.0 and info.version == 2 and info.resolution == 120.0
    table = granule_table([info.to_record()])
    assert table.sensor.iloc[0] == "sentinel2" and table.satellite_img2.iloc[0] == "S2B"


def test_sentinel1_attributes(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    pair = v2_pair(
        acquisition_date_img1=np.bytes_(b"20170221T20:47:10.5"),
        acquisition_date_img2=np.bytes_(b"20170227T20:46:28.5"),
        satellite_img1=np.bytes_(b"1A"),
        satellite_img2=np.bytes_(b"1B"),
        sensor_img1=np.bytes_(b"C"),
        sensor_img2=np.bytes_(b"C"),
    )
    m11 = (np.arange(vx.size).reshape(vx.shape) % 3000).astype("int16")
    m11[0, :5] = FILL
    path = write_granule(
        tmp_path / S1_NAME,
        x=x,
        y=y,
        variables={
            "vx": int16_var(vx),
            "vy": int16_var(vx),
            "va": int16_var(vx),
            "vr": int16_var(vx),
            "M11": (
                m11,
                {
                    "_FillValue": np.int16(FILL),
                    "scale_factor": np.float64(0.001),
                    "add_offset": np.float64(-0.5),
                },
            ),
            "M12": (  # float32 with a numeric fill (hyp3-autorift writes M11/M12 as float32)
                np.where(vx == FILL, FILL, vx / 1000).astype("float32"),
                {"_FillValue": np.float32(FILL)},
            ),
            "M13": (  # float with NaN as fill
                np.where(vx == FILL, np.nan, vx / 1000).astype("float64"),
                {"_FillValue": np.float64(np.nan)},
            ),
        },
        pair=pair,
    )
    info = read_granule_info(path)
    assert (info.satellite_img1, info.satellite_img2, info.sensor) == ("S1A", "S1B", "sentinel1")
    assert info.date_dt == pytest.approx((6 * 86400 - 42) / 86400, abs=1e-12)
    assert {"va", "vr", "M11", "M12"} <= set(info.variables)
    ds = open_granule(path)
    expected_m11 = np.where(m11 == FILL, np.nan, m11 * 0.001 - 0.5)
    np.testing.assert_allclose(ds.M11.values, expected_m11, rtol=1e-6, atol=1e-6)
    assert bool(np.isnan(ds.M11.values[0, :5]).all())
    np.testing.assert_allclose(ds.M12.values, expected_float(vx) / 1000, rtol=1e-6)
    np.testing.assert_allclose(ds.M13.values, expected_float(vx) / 1000, rtol=1e-6)
    assert ds.M12.dtype == np.float32 and ds.M13.dtype == np.float32


def test_interp_mask_fill_that_is_a_flag_is_kept(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    mask = (vx > 0).astype("uint8")
    path = write_granule(
        tmp_path / S2_NAME,
        x=x,
        y=y,
        variables={
            "vx": int16_var(vx),
            "vy": int16_var(vx),
            "interp_mask": (
                mask,
                {"_FillValue": np.uint8(0), "flag_values": np.array([0, 1], "uint8")},
            ),
        },
        pair=v2_pair(),
    )
    with open_h5(path) as h5:
        info = read_info(h5, str(path))
        win = read_window(h5, info, ["interp_mask"], slice(None), slice(None))
    np.testing.assert_array_equal(win["interp_mask"], mask.astype("float32"))  # 0 is data
    ds = open_granule(path)
    assert ds.interp_mask.dtype == np.uint8
    np.testing.assert_array_equal(ds.interp_mask.values, mask)


def test_landsat_codes_stored_as_text_and_no_itslive_name(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    pair = v2_pair(
        satellite_img1="LC08",  # newer files: full code, variable-length strings
        satellite_img2="LC09",
        mission_img1="L",
        mission_img2="L",
        acquisition_date_img1="2021-03-01T10:00:00Z",
        acquisition_date_img2="2021-03-17T10:00:00Z",
        roi_valid_percentage=np.float64(12.5),
    )
    path = write_granule(
        tmp_path / "my_pair.nc",
        x=x,
        y=y,
        variables={"vx": int16_var(vx), "vy": int16_var(vx)},
        pair=pair,
    )
    info = read_granule_info(path)
    assert info.granule_id == "my_pair"
    assert (info.satellite_img1, info.satellite_img2, info.sensor) == ("LC08", "LC09", "landsat")
    assert info.mid_date == np.datetime64("2021-03-09T10:00", "ns") and info.date_dt == 16.0
    assert info.percent_valid == 12.5
    assert info.version == 2  # 'mapping' grid mapping, correctly spelled dates


def test_v1_style_utm_granule(tmp_path):
    # EPSG:32607 (UTM 7N, south-east Alaska), V1 layout: UTM_Projection + missing_value
    nx, ny = 120, 90
    x = 500_000.0 + 240.0 * np.arange(nx) + 120.0
    y = 6_700_000.0 - 240.0 * np.arange(ny) - 120.0
    vx = analytic_vx(ny, nx)
    cw = np.full((ny, nx), 480, "uint16")
    cw[5, :] = 0
    pair = {
        "aquisition_date_img1": np.bytes_(b"20150601"),
        "aquisition_date_img2": np.bytes_(b"20150617"),
        "mission_img1": np.bytes_(b"L"),
        "mission_img2": np.bytes_(b"L"),
        "sensor_img1": np.bytes_(b"C"),
        "sensor_img2": np.bytes_(b"C"),
        "satellite_img1": np.float64(8.0),
        "satellite_img2": np.float64(8.0),
        "roi_valid_percentage": np.float64(40.0),
    }
    variables = {
        "vx": (vx, {"missing_value": np.float64(FILL)}),
        "vy": (vx, {"missing_value": np.float64(FILL)}),
        "v": (vx, {"missing_value": np.float64(FILL)}),
        "chip_size_width": (cw, {"missing_value": np.float64(0)}),
    }
    path = write_granule(
        tmp_path / "utm_v1.nc",
        x=x,
        y=y,
        epsg=32607,
        grid_mapping="UTM_Projection",
        variables=variables,
        pair=pair,
        chunks=(ny, nx),
    )
    info = read_granule_info(path)
    assert info.epsg == 32607 and info.version == 1 and info.resolution == 240.0
    assert (info.satellite_img1, info.sensor) == ("LC08", "landsat")
    assert info.date_dt == 16.0 and info.mid_date == np.datetime64("2015-06-09", "ns")
    ds = open_granule(path)
    assert ds.rio.crs.to_epsg() == 32607
    np.testing.assert_array_equal(ds.vx.values, expected_float(vx))
    assert bool(np.isnan(ds.chip_size_width.values[5]).all())
    assert bool(np.isnan(ds.v_error.values).all())
    assert_footprint_exact(info)


def test_grid_mapping_from_wkt_only(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    path = write_granule(
        tmp_path / S2_NAME,
        x=x,
        y=y,
        epsg=None,
        gm_attrs={"crs_wkt": CRS.from_epsg(3413).to_wkt()},
        variables={"vx": int16_var(vx), "vy": int16_var(vx)},
        pair=v2_pair(),
    )
    assert read_granule_info(path).epsg == 3413


def test_geographic_grid_mapping_is_refused(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    path = write_granule(
        tmp_path / S2_NAME,
        x=x,
        y=y,
        epsg=4326,
        variables={"vx": int16_var(vx), "vy": int16_var(vx)},
        pair=v2_pair(),
    )
    with pytest.raises(GranuleError, match=r"unknown grid mapping.*EPSG:4326") as err:
        read_granule_info(path)
    assert S2_NAME in str(err.value)


def test_undated_granule_is_refused(tmp_path, grid):
    x, y = grid
    vx = analytic_vx(len(y), len(x))
    pair = v2_pair(acquisition_date_img1=np.bytes_(b"yesterday"))
    path = write_granule(
        tmp_path / "pair.nc",
        x=x,
        y=y,
        variables={"vx": int16_var(vx), "vy": int16_var(vx)},
        pair=pair,
    )
    with pytest.raises(GranuleError, match=r"pair\.nc.*'yesterday' is not a date"):
        read_granule_info(path)


class CountingBytesIO(io.BytesIO):
    """Counts the bytes HDF5 reads through the Python file-object driver."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.nbytes = 0

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.nbytes += n
        return n

    def read(self, size=-1):
        data = super().read(size)
        self.nbytes += len(data)
        return data


def test_window_reads_only_the_chunks_it_touches(tmp_path):
    rng = np.random.default_rng(0)
    ny = nx = 512
    x = 120.0 * np.arange(nx) + 60.0
    y = -120.0 * np.arange(ny) - 60.0
    vx = rng.integers(-3000, 3000, (ny, nx)).astype("int16")  # incompressible-ish
    path = write_granule(
        tmp_path / S2_NAME,
        x=x,
        y=y,
        variables={"vx": int16_var(vx), "vy": int16_var(vx)},
        pair=v2_pair(),
        chunks=(64, 64),
    )
    with h5py.File(path, "r") as h5:
        chunk_bytes = max(h5["vx"].id.get_chunk_info(i).size for i in range(64))
        total = h5["vx"].id.get_storage_size()
    buf = CountingBytesIO(path.read_bytes())
    h5 = h5py.File(buf, "r")
    try:
        info = read_info(h5, str(path))
        before = buf.nbytes
        win = read_window(h5, info, ["vx"], slice(130, 190), slice(260, 300))  # in one chunk
        one_chunk = buf.nbytes - before
        before = buf.nbytes
        read_window(h5, info, ["vx"], slice(None), slice(None))
        everything = buf.nbytes - before
    finally:
        h5.close()
    np.testing.assert_array_equal(win["vx"], vx[130:190, 260:300].astype("float32"))
    assert one_chunk <= chunk_bytes + 16_384  # one chunk plus a little index metadata
    assert everything >= total
    assert one_chunk < everything / 20


# --------------------------------------------------------------------------------------
# footprints of hand-placed grids


def make_info(epsg: int, x0: float, y0: float, nx: int, ny: int, res: float) -> GranuleInfo:
    x = x0 + res * np.arange(nx) + res / 2
    y = y0 - res * np.arange(ny) - res / 2
    d = np.datetime64("2020-01-01", "ns")
    return GranuleInfo(
        source="mem.nc",
        granule_id="mem",
        epsg=epsg,
        x=x,
        y=y,
        resolution=res,
        version=2,
        acquisition_date_img1=d,
        acquisition_date_img2=d + np.timedelta64(10, "D"),
        mid_date=d + np.timedelta64(5, "D"),
        date_dt=10.0,
        satellite_img1="LC08",
        satellite_img2="LC08",
        sensor="landsat",
        percent_valid=50.0,
        variables=(),
    )


def assert_footprint_exact(info: GranuleInfo) -> shapely.Geometry:
    """Pixel centres (a lattice incl. all edges) are covered; points 2 pixels outside are not."""
    foot = info.footprint()
    assert foot.is_valid and not foot.is_empty
    lon_lat = np.asarray(shapely.get_coordinates(foot))
    assert np.all(np.abs(lon_lat[:, 0]) <= 180.0) and np.all(np.abs(lon_lat[:, 1]) <= 90.0)
    to_ll = Transformer.from_crs(info.epsg, 4326, always_xy=True)
    ii = np.unique(np.linspace(0, len(info.y) - 1, 23).astype(int))
    jj = np.unique(np.linspace(0, len(info.x) - 1, 23).astype(int))
    xx, yy = np.meshgrid(info.x[jj], info.y[ii])
    lon, lat = to_ll.transform(xx.ravel(), yy.ravel())
    inside = shapely.intersects_xy(foot, lon, lat)  # a point on lon=+-180 is on the boundary
    assert inside.all(), f"{(~inside).sum()} pixel centres outside the footprint"
    r = 2 * info.resolution
    xmin, ymin, xmax, ymax = info.bounds
    xs = np.linspace(xmin, xmax, 41)
    ys = np.linspace(ymin, ymax, 41)
    ox = np.concatenate([xs, xs, np.full(41, xmin - r), np.full(41, xmax + r)])
    oy = np.concatenate([np.full(41, ymin - r), np.full(41, ymax + r), ys, ys])
    lon, lat = to_ll.transform(ox, oy)
    outside = shapely.intersects_xy(foot, lon, lat)
    assert not outside.any(), f"{outside.sum()} outside points inside the footprint"
    return foot


def test_footprint_around_the_south_pole():
    info = make_info(3031, -150_000.0, 150_000.0, 300, 300, 1000.0)
    foot = assert_footprint_exact(info)
    assert foot.geom_type == "Polygon"
    assert foot.bounds[1] == -90.0 and foot.bounds[0] == -180.0 and foot.bounds[2] == 180.0
    # every longitude near the pole is covered
    assert shapely.contains_xy(foot, np.arange(-179.5, 180, 10), np.full(36, -89.5)).all()
    table = granule_table([info.to_record()])
    assert table.geometry.iloc[0].equals(foot)


def test_footprint_around_the_north_pole():
    info = make_info(3413, -100_000.0, 100_000.0, 200, 200, 1000.0)
    foot = assert_footprint_exact(info)
    assert foot.bounds[3] == 90.0


def test_footprint_across_the_antimeridian_polar():
    to_xy = Transformer.from_crs(4326, 3031, always_xy=True)
    cx, cy = to_xy.transform(180.0, -80.0)
    info = make_info(3031, cx - 100_000.0, cy + 100_000.0, 200, 200, 1000.0)
    foot = assert_footprint_exact(info)
    assert foot.geom_type == "MultiPolygon"
    assert shapely.contains_xy(foot, [179.9, -179.9], [-80.0, -80.0]).all()
    granule_table([info.to_record()])  # a valid table row


def test_footprint_across_the_antimeridian_utm():
    # UTM zone 1N (central meridian -177): 180 E lies ~167 km west of it at 60 N
    to_xy = Transformer.from_crs(4326, 32601, always_xy=True)
    cx, cy = to_xy.transform(180.0, 60.0)
    info = make_info(32601, cx - 60_000.0, cy + 40_000.0, 500, 400, 240.0)
    foot = assert_footprint_exact(info)
    assert foot.geom_type == "MultiPolygon"


def test_footprint_ordinary_utm_and_polar_boxes():
    assert_footprint_exact(make_info(32606, 400_000.0, 6_800_000.0, 400, 300, 120.0))
    assert_footprint_exact(make_info(32719, 300_000.0, 4_500_000.0, 300, 300, 120.0))
    assert_footprint_exact(make_info(3413, -200_000.0, -2_000_000.0, 800, 800, 120.0))
    assert_footprint_exact(make_info(3031, -1_600_000.0, -200_000.0, 600, 600, 240.0))
