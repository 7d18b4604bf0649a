"""filter_granules on a tiny hand-made table with hand-computed expectations."""

from __future__ import annotations

import pandas as pd
import pytest
import shapely

from itslive_dask.discovery.filters import filter_granules, parse_months
from itslive_dask.errors import InvalidInputError
from itslive_dask.table import granule_table

SAT = {"landsat": "LC08", "sentinel1": "S1A", "sentinel2": "S2A"}


def _row(key: str, mid: str, sensor: str = "landsat", dt: float = 16.0, pct: float = 50.0) -> dict:
    m = pd.Timestamp(mid)
    return {
        "granule_id": key,  # the filters only need a unique id
        "url": f"s3://bucket/{key}.nc",
        "mid_date": m,
        "acquisition_date_img1": m - pd.Timedelta(days=dt / 2),
        "acquisition_date_img2": m + pd.Timedelta(days=dt / 2),
        "date_dt": dt,
        "satellite_img1": SAT[sensor],
        "satellite_img2": SAT[sensor],
        "sensor": sensor,
        "epsg": 3031,
        "percent_valid": pct,
        "version": 2,
        "resolution": 120.0,
        "geometry": shapely.box(0, -75, 1, -74),
    }


ROWS = [
    _row("g1", "2019-01-10", pct=50),
    _row("g2", "2019-02-05", dt=20, pct=80),
    _row("g3", "2019-03-01", dt=10, pct=80),
    _row("g4", "2019-06-01", "sentinel2", pct=30),
    _row("g5", "2019-07-01", "sentinel2", dt=5, pct=90),
    _row("g6", "2019-11-01", "sentinel1", dt=12, pct=40),
    _row("g7", "2019-12-01", "sentinel1", dt=12, pct=45),
    _row("h1", "2020-01-15", dt=32, pct=10),
    _row("h2", "2020-11-20", "sentinel2", dt=200, pct=99),
]


@pytest.fixture
def table():
    return granule_table(ROWS)


def ids(t) -> list[str]:
    return list(t["granule_id"])


def test_no_criteria_keeps_everything_in_table_order(table):
    out = filter_granules(table)
    assert ids(out) == ["g1", "g2", "g3", "g4", "g5", "g6", "g7", "h1", "h2"]


def test_cap_per_year_groups_by_date_and_keeps_best_coverage(table):
    # 2019 has 7 candidates, cap 3 -> groups of 3, 2, 2 in date order:
    # (g1, g2, g3): g2 and g3 tie at 80 % -> smaller date_dt wins: g3
    # (g4, g5): g5 (90 %);  (g6, g7): g7 (45 %).  2020 has 2 <= 3: both kept.
    out = filter_granules(table, max_files_per_year=3)
    assert ids(out) == ["g3", "g5", "g7", "h1", "h2"]
    # cap 1: one group per year: best coverage of the year
    assert ids(filter_granules(table, max_files_per_year=1)) == ["g5", "h2"]
    assert ids(filter_granules(table, max_files_per_year=0)) == []


def test_ties_are_broken_by_granule_id_and_order_does_not_matter():
    rows = [
        _row("b", "2019-05-01", pct=70),
        _row("a", "2019-05-01", pct=70),
        _row("c", "2019-05-02", pct=70),
    ]
    for perm in (rows, rows[::-1], [rows[1], rows[2], rows[0]]):
        assert ids(filter_granules(granule_table(perm), max_files_per_year=1)) == ["a"]


def test_months_years_sensors_separation_coverage(table):
    assert ids(filter_granules(table, months=["November", "dec", 1])) == [
        "g1",
        "g6",
        "g7",
        "h1",
        "h2",
    ]
    assert ids(filter_granules(table, months="Jun")) == ["g4"]
    assert ids(filter_granules(table, years=2020)) == ["h1", "h2"]
    assert ids(filter_granules(table, years=range(2018, 2020))) == [
        "g1",
        "g2",
        "g3",
        "g4",
        "g5",
        "g6",
        "g7",
    ]
    assert ids(filter_granules(table, sensors="sentinel1")) == ["g6", "g7"]
    assert ids(filter_granules(table, sensors=["SENTINEL2", "sentinel1"])) == [
        "g4",
        "g5",
        "g6",
        "g7",
        "h2",
    ]
    assert ids(filter_granules(table, min_separation=12, max_separation=20)) == [
        "g1",
        "g2",
        "g4",
        "g6",
        "g7",
    ]
    assert ids(filter_granules(table, min_percent_valid=80)) == ["g2", "g3", "g5", "h2"]
    # combined with a cap: the cap applies after the other criteria
    out = filter_granules(table, months=["November", "December", "January"], max_files_per_year=1)
    assert ids(out) == ["g1", "h2"]  # 2019: g1 50 % > g7 45 % > g6 40 %; 2020: h2 99 %


def test_by_year_returns_a_dict_of_tables(table):
    out = filter_granules(table, max_files_per_year=2, by_year=True)
    assert list(out) == [2019, 2020]
    # 2019: groups (g1..g4) -> g2/g3 tie at 80 % -> g3 (dt 10); (g5..g7) -> g5
    assert ids(out[2019]) == ["g3", "g5"]
    assert ids(out[2020]) == ["h1", "h2"]
    assert filter_granules(table, years=1990, by_year=True) == {}


def test_parse_months():
    assert parse_months(["November", "dec", 1, "3", "sept"]) == [1, 3, 9, 11, 12]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"months": ["Smarch"]}, "January, February"),
        ({"months": [13]}, "1-12"),
        ({"sensors": ["modis"]}, "landsat, sentinel1, sentinel2"),
        ({"max_files_per_year": -1}, "max_files_per_year"),
        ({"max_files_per_year": 2.5}, "max_files_per_year"),
        ({"min_separation": 30, "max_separation": 10}, "larger than"),
        ({"min_percent_valid": 101}, "0-100"),
        ({"years": ["twenty"]}, "years"),
    ],
)
def test_invalid_arguments(table, kwargs, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        filter_granules(table, **kwargs)


def test_not_a_table():
    with pytest.raises(InvalidInputError):
        filter_granules(["s3://x.nc"])
