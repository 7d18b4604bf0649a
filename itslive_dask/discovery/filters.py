"""Thin a granule table: years, months, sensors, separation, coverage and a per-year cap.

:func:`filter_granules` does what the tutorial's ``filter_urls`` did (cap per year, keep some
months, group by year) for every sensor, on the granule table, deterministically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from itslive_dask.errors import InvalidInputError
from itslive_dask.table import SENSORS, validate_granule_table

__all__ = ["MONTHS", "filter_granules"]

logger = logging.getLogger(__name__)

#: Month names accepted by ``months=`` (full names; 3-letter abbreviations work too).
MONTHS: tuple[str, ...] = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip


def filter_granules(
    table: gpd.GeoDataFrame,
    *,
    max_files_per_year: int | None = None,
    months: Iterable[str | int] | str | int | None = None,
    by_year: bool = False,
    sensors: Iterable[str] | str | None = None,
    min_separation: float | None = None,
    max_separation: float | None = None,
    min_percent_valid: float | None = None,
    years: Iterable[int] | int | None = None,
) -> gpd.GeoDataFrame | dict[int, gpd.GeoDataFrame]:
    """Select granules from a granule table (the tutorial's ``filter_urls``, for all sensors).

    Every criterion is optional; criteria combine with AND. Years and months are those of the
    granule's ``mid_date``.

    Parameters
    ----------
    table
        A granule table (from :func:`itslive_dask.discovery.api`).
    max_files_per_year
        Keep at most this many granules per calendar year, chosen as described in Notes.
    months
        Months to keep: names (``"November"``, ``"nov"``, any case) or numbers 1-12.
    by_year
        Return ``{year: table}`` (years in increasing order, only years with granules) instead
        of one table.
    sensors
        Sensor families to keep, among ``"landsat"``, ``"sentinel1"``, ``"sentinel2"``.
    min_separation, max_separation
        Bounds (days, inclusive) on the image separation ``date_dt``.
    min_percent_valid
        Minimum valid-pixel percentage (inclusive), 0-100.
    years
        Years to keep (an int or an iterable of ints, e.g. ``range(2013, 2021)``).

    Returns
    -------
    GeoDataFrame or dict of int to GeoDataFrame
        Granule table(s), rows in the table order (``mid_date``, ``granule_id``).

    Raises
    ------
    InvalidInputError
        Unknown month or sensor (the message lists the valid values), a negative or
        non-integer cap, reversed separation bounds, a percentage outside 0-100.

    Notes
    -----
    **Choice under the per-year cap.** For a year with more than ``k = max_files_per_year``
    granules left after the other criteria, the candidates are sorted by (``mid_date``,
    ``granule_id``) and split into ``k`` consecutive groups of as equal size as possible
    (``numpy.array_split``: with ``n`` candidates the first ``n % k`` groups have one more
    granule). From each group the granule with the highest ``percent_valid`` is kept; ties go
    to the smaller ``date_dt``, then to the smaller ``granule_id``. The result spreads through
    the dates that exist in that year and favours coverage; it only depends on the rows (not
    their order), so the same input always gives the same output.

    Examples
    --------
    >>> per_year = filter_granules(table, max_files_per_year=10,
    ...                            months=["November", "December", "January"], by_year=True)
    ...                                                                    # doctest: +SKIP
    """
    table = validate_granule_table(table)
    cap = _check_cap(max_files_per_year)
    month_numbers = parse_months(months)
    sensor_set = check_sensors(sensors)
    lo, hi = check_separation(min_separation, max_separation)
    pmin = check_percent(min_percent_valid, "min_percent_valid")
    year_set = _check_years(years)

    mid = table["mid_date"]
    keep = np.ones(len(table), dtype=bool)
    if month_numbers is not None:
        keep &= mid.dt.month.isin(month_numbers).to_numpy()
    if year_set is not None:
        keep &= mid.dt.year.isin(year_set).to_numpy()
    if sensor_set is not None:
        keep &= table["sensor"].isin(sensor_set).to_numpy()
    if lo is not None:
        keep &= (table["date_dt"] >= lo).to_numpy()
    if hi is not None:
        keep &= (table["date_dt"] <= hi).to_numpy()
    if pmin is not None:
        keep &= (table["percent_valid"] >= pmin).to_numpy()
    selected = table[keep]

    if cap is not None:
        chosen = []
        for _, group in selected.groupby(selected["mid_date"].dt.year, sort=True):
            chosen.append(_cap_year(group, cap))
        selected = pd.concat(chosen) if chosen else selected.iloc[:0]
        selected = gpd.GeoDataFrame(selected, geometry="geometry", crs=table.crs)
    selected = selected.sort_values(["mid_date", "granule_id"], kind="stable").reset_index(
        drop=True
    )
    logger.debug("filter_granules: %d of %d granules kept", len(selected), len(table))
    if not by_year:
        return selected
    out: dict[int, gpd.GeoDataFrame] = {}
    for year, group in selected.groupby(selected["mid_date"].dt.year, sort=True):
        out[int(year)] = group.reset_index(drop=True)
    return out


def _cap_year(group: pd.DataFrame, cap: int) -> pd.DataFrame:
    if len(group) <= cap:
        return group
    if cap == 0:
        return group.iloc[:0]
    ordered = group.sort_values(["mid_date", "granule_id"], kind="stable")
    picks = []
    for part in np.array_split(np.arange(len(ordered)), cap):
        sub = ordered.iloc[part]
        best = sub.sort_values(
            ["percent_valid", "date_dt", "granule_id"], ascending=[False, True, True], kind="stable"
        ).iloc[:1]
        picks.append(best)
    return pd.concat(picks)


# --------------------------------------------------------------------------- validation
# (shared with :mod:`itslive_dask.discovery.api`)


def parse_months(months: Iterable[str | int] | str | int | None) -> list[int] | None:
    """Month names/abbreviations/numbers -> sorted month numbers (1-12), or None.

    Examples
    --------
    >>> parse_months(["November", "dec", 1])
    [1, 11, 12]
    """
    if months is None:
        return None
    if isinstance(months, str | int | np.integer):
        months = [months]
    out = set()
    for m in months:
        out.add(_month_number(m))
    if not out:
        raise InvalidInputError(
            "months is empty; give month names (e.g. 'November') or numbers 1-12"
        )
    return sorted(out)


def _month_number(m: Any) -> int:
    valid = ", ".join(name.capitalize() for name in MONTHS)
    if isinstance(m, bool):
        raise InvalidInputError(
            f"unknown month {m!r}; valid: {valid} (or 3-letter abbreviations, or 1-12)"
        )
    if isinstance(m, int | np.integer) or (isinstance(m, str) and m.strip().isdigit()):
        n = int(m)
        if 1 <= n <= 12:
            return n
        raise InvalidInputError(f"month number must be 1-12, got {m!r}")
    if isinstance(m, str):
        key = m.strip().lower().rstrip(".")
        for i, name in enumerate(MONTHS, start=1):
            if key in (name, name[:3]) or (key == "sept" and i == 9):
                return i
    raise InvalidInputError(
        f"unknown month {m!r}; valid: {valid} (or 3-letter abbreviations, or 1-12)"
    )


def check_sensors(sensors: Iterable[str] | str | None) -> list[str] | None:
    """Validate sensor family names (case-insensitive) -> list, or None for "all"."""
    if sensors is None:
        return None
    if isinstance(sensors, str):
        sensors = [sensors]
    out = []
    for s in sensors:
        key = str(s).strip().lower()
        if key not in SENSORS:
            raise InvalidInputError(f"unknown sensor {s!r}; valid: {', '.join(SENSORS)}")
        if key not in out:
            out.append(key)
    if not out:
        raise InvalidInputError(f"sensors is empty; valid: {', '.join(SENSORS)}")
    return out


def check_separation(
    min_separation: float | None, max_separation: float | None
) -> tuple[float | None, float | None]:
    """Validate separation bounds in days (non-negative, min <= max)."""
    vals: list[float | None] = []
    for name, v in (("min_separation", min_separation), ("max_separation", max_separation)):
        if v is None:
            vals.append(None)
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a number of days, got {v!r}") from None
        if not np.isfinite(f) or f < 0:
            raise InvalidInputError(f"{name} must be a non-negative number of days, got {v!r}")
        vals.append(f)
    lo, hi = vals
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInputError(f"min_separation ({lo:g}) is larger than max_separation ({hi:g})")
    return lo, hi


def check_percent(value: float | None, name: str) -> float | None:
    """Validate a percentage (0-100) or None."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a percentage 0-100, got {value!r}") from None
    if not (0.0 <= f <= 100.0):
        raise InvalidInputError(f"{name} must be a percentage 0-100, got {value!r}")
    return f


def _check_cap(cap: int | None) -> int | None:
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < 0:
        raise InvalidInputError(f"max_files_per_year must be a non-negative integer, got {cap!r}")
    return int(cap)


def _check_years(years: Iterable[int] | int | None) -> list[int] | None:
    if years is None:
        return None
    if isinstance(years, int | np.integer | str):
        years = [years]
    out = []
    for y in years:
        try:
            out.append(int(y))
        except (TypeError, ValueError):
            raise InvalidInputError(f"years must be integers, got {y!r}") from None
    if not out:
        raise InvalidInputError("years is empty")
    return sorted(set(out))
