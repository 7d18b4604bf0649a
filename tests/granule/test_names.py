"""ITS_LIVE granule names: every field checked against values worked out by hand."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from itslive_dask.errors import InvalidInputError
from itslive_dask.granule.names import parse_granule_name, sensor_of_satellite
from itslive_dask.table import SENSORS

LANDSAT = (
    "LC08_L1GT_232113_20201213_20201219_02_T2_X_"
    "LC08_L1GT_232113_20201229_20210308_02_T2_G0120V02_P073.nc"
)
LANDSAT_V1 = (
    "LE07_L1GT_001113_20121118_20161127_01_T2_X_"
    "LE07_L1GT_232113_20121104_20161127_01_T2_G0240V01_P059.nc"
)
SENTINEL2 = (
    "S2A_MSIL1C_20200101T142729_N0208_R053_T19FDV_20200101T175120_X_"
    "S2B_MSIL1C_20200111T142729_N0208_R053_T19FDV_20200111T161036_G0120V02_P082.nc"
)
SENTINEL1 = (
    "S1A_IW_SLC__1SSH_20170221T204710_20170221T204737_015387_0193F6_AB07_X_"
    "S1B_IW_SLC__1SSH_20170227T204628_20170227T204655_004491_007D11_6654_G0120V02_P094.nc"
)


def ns(text: str) -> np.datetime64:
    return np.datetime64(text, "ns")


def test_landsat_v2_all_fields():
    g = parse_granule_name(LANDSAT)
    assert g.granule_id == LANDSAT[:-3]
    assert g.scene_1_id == "LC08_L1GT_232113_20201213_20201219_02_T2"
    assert g.scene_2_id == "LC08_L1GT_232113_20201229_20210308_02_T2"
    assert (g.satellite_img1, g.satellite_img2, g.sensor) == ("LC08", "LC08", "landsat")
    # acquisition = 4th field (not the processing date, 5th)
    assert g.acquisition_date_img1 == ns("2020-12-13")
    assert g.acquisition_date_img2 == ns("2020-12-29")
    assert g.date_dt == 16.0
    assert g.mid_date == ns("2020-12-21")  # 13 Dec + 8 days
    assert (g.resolution, g.version, g.percent_valid) == (120.0, 2, 73.0)
    assert g.acquisition_date_img1.dtype == np.dtype("datetime64[ns]")
    assert g.mid_date.dtype == np.dtype("datetime64[ns]")


def test_landsat_v1_image1_later_than_image2():
    g = parse_granule_name(LANDSAT_V1)
    assert (g.satellite_img1, g.satellite_img2) == ("LE07", "LE07")
    assert g.acquisition_date_img1 == ns("2012-11-18")
    assert g.acquisition_date_img2 == ns("2012-11-04")
    assert g.date_dt == 14.0  # absolute: image 1 is 14 days AFTER image 2
    assert g.mid_date == ns("2012-11-11")
    assert (g.resolution, g.version, g.percent_valid) == (240.0, 1, 59.0)


def test_sentinel2_uses_datatake_sensing_time():
    g = parse_granule_name(SENTINEL2)
    assert (g.satellite_img1, g.satellite_img2, g.sensor) == ("S2A", "S2B", "sentinel2")
    assert g.scene_1_id == "S2A_MSIL1C_20200101T142729_N0208_R053_T19FDV_20200101T175120"
    # the 3rd field, not the product discriminator (last field)
    assert g.acquisition_date_img1 == ns("2020-01-01T14:27:29")
    assert g.acquisition_date_img2 == ns("2020-01-11T14:27:29")
    assert g.date_dt == 10.0
    assert g.mid_date == ns("2020-01-06T14:27:29")
    assert (g.resolution, g.version, g.percent_valid) == (120.0, 2, 82.0)


def test_sentinel1_uses_start_time():
    g = parse_granule_name(SENTINEL1)
    assert (g.satellite_img1, g.satellite_img2, g.sensor) == ("S1A", "S1B", "sentinel1")
    assert g.acquisition_date_img1 == ns("2017-02-21T20:47:10")
    assert g.acquisition_date_img2 == ns("2017-02-27T20:46:28")
    # 6 days minus 42 seconds
    assert g.date_dt == pytest.approx((6 * 86400 - 42) / 86400, abs=1e-12)
    # half of 6 d - 42 s = 2 d 23 h 59 min 39 s after image 1
    assert g.mid_date == ns("2017-02-24T20:46:49")
    assert (g.resolution, g.version, g.percent_valid) == (120.0, 2, 94.0)


def test_sentinel2_cog_ids():
    g = parse_granule_name("S2B_22WEB_20200709_0_L1C_X_S2A_22WEB_20200714_0_L1C_G0120V02_P050")
    assert (g.satellite_img1, g.satellite_img2, g.sensor) == ("S2B", "S2A", "sentinel2")
    assert g.date_dt == 5.0
    assert g.mid_date == ns("2020-07-11T12:00")


@pytest.mark.parametrize(
    ("sat1", "sat2"), [("LT05", "LT05"), ("LC09", "LC08"), ("LO08", "LO08"), ("LT04", "LT05")]
)
def test_other_landsat_satellites(sat1, sat2):
    name = (
        f"{sat1}_L1GS_219121_19841206_20200918_02_T2_X_"
        f"{sat2}_L1TP_226120_19850124_20200918_02_T1_G0120V02_P000.nc"
    )
    g = parse_granule_name(name)
    assert (g.satellite_img1, g.satellite_img2, g.sensor) == (sat1, sat2, "landsat")
    assert g.date_dt == 49.0  # 6 Dec 1984 -> 24 Jan 1985: 25 + 24 days
    assert g.percent_valid == 0.0


@pytest.mark.parametrize(
    "form",
    [
        "{n}",
        "{n}.nc",
        "/data/granules/{n}.nc",
        "relative/dir/{n}.nc",
        r"C:\data\{n}.nc",
        "s3://its-live-data/velocity_image_pair/landsatOLI/v02/S70W100/{n}.nc",
        "https://its-live-data.s3.amazonaws.com/velocity_image_pair/landsatOLI/v02/S70W100/{n}.nc",
        "https://example.org/get/{n}.nc?token=abc#frag",
        "  {n}.nc  ",
    ],
)
def test_paths_and_urls(form):
    stem = LANDSAT[:-3]
    g = parse_granule_name(form.format(n=stem))
    assert g.granule_id == stem
    assert g.date_dt == 16.0


def test_every_sensor_is_a_table_sensor():
    sensors = {parse_granule_name(n).sensor for n in (LANDSAT, SENTINEL1, SENTINEL2)}
    assert sensors == set(SENSORS)


def test_sensor_of_satellite():
    assert sensor_of_satellite("LE07") == "landsat"
    assert sensor_of_satellite("S1B") == "sentinel1"
    assert sensor_of_satellite("S2A") == "sentinel2"
    assert sensor_of_satellite("5") is None
    assert sensor_of_satellite("S3A") is None


def test_result_is_frozen_and_picklable():
    g = parse_granule_name(SENTINEL1)
    with pytest.raises(AttributeError):
        g.version = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(g)) == g


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "vel.nc",
        "LC08_L1GT_232113_20201213_20201219_02_T2_G0120V02_P073.nc",  # no _X_
        LANDSAT.replace("G0120V02", "G120V02"),  # 3-digit resolution
        LANDSAT.replace("_P073", ""),  # no percent
        LANDSAT.replace("20201213_20201219", "20201332_20201219"),  # month 13
        LANDSAT.replace("LC08_L1GT_232113_20201229", "S2A_L1GT_232113_20201229"),
        # Landsat scene paired with a Sentinel-2 scene
        LANDSAT.split("_X_")[0] + "_X_" + SENTINEL2.split("_X_")[1],
        SENTINEL1.replace("20170221T204710", "20170221T256710"),  # hour 25
        "https://example.org/not/a/granule/",
    ],
)
def test_bad_names_raise_naming_the_input(bad):
    with pytest.raises(InvalidInputError) as err:
        parse_granule_name(bad)
    assert repr(bad) in str(err.value)


def test_non_string_raises():
    with pytest.raises(InvalidInputError, match="string"):
        parse_granule_name(None)  # type: ignore[arg-type]
