"""Date bounds of server requests that stay right outside pandas' nanosecond range.

pandas timestamps span 1677-09-21 .. 2262-04-11. A request may name any date of years
1..9999 (``datetime=../9999-12-31T00:00:00Z``, legacy ``end=9999-12-31``): a start before the
range or an end after it is an open bound; a start after the range or an end before it
matches nothing. The catalog's dates always lie inside the range, so the answer is the right
set either way.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from itslive_dask.discovery.query import parse_time
from itslive_dask.errors import InvalidInputError

__all__ = ["TimeBounds", "clamp_literal", "parse_bound", "parse_bounds"]

_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_MIN = pd.Timestamp.min.ceil("us")
_MAX = pd.Timestamp.max.floor("us")


@dataclass(frozen=True)
class TimeBounds:
    """Inclusive (start, end) on ``mid_date``; None is open; ``empty`` when nothing can match."""

    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    empty: bool = False


def _python_datetime(text: str, *, end: bool) -> _dt.datetime | None:
    """``text`` as a naive UTC :class:`datetime.datetime` (years 1..9999), None if unreadable.

    Periods (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``) as an end mean their last instant.
    """
    m = _PERIOD.match(text)
    try:
        if m:
            year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
            first = _dt.datetime(year, month, day)
            if not end:
                return first
            if m[3]:
                nxt = first + _dt.timedelta(days=1) if first.date() < _dt.date.max else None
            elif m[2]:
                nxt = (
                    _dt.datetime(year + month // 12, month % 12 + 1, 1)
                    if (year, month) < (9999, 12)
                    else None
                )
            else:
                nxt = _dt.datetime(year + 1, 1, 1) if year < 9999 else None
            return (nxt - _dt.timedelta(microseconds=1)) if nxt else _dt.datetime.max
        value = _dt.datetime.fromisoformat(text.replace("z", "Z"))
    except (ValueError, OverflowError):
        return None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        except OverflowError:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
            return _dt.datetime.max if value.year > 5000 else _dt.datetime.min
    return value


def parse_bound(value: Any, name: str, *, end: bool = False) -> tuple[pd.Timestamp | None, bool]:
    """One date bound -> (timestamp or None for open, whether nothing can match).

    Raises
    ------
    InvalidInputError
        When ``value`` is not a date.
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "..")):
        return None, False
    text = value.strip() if isinstance(value, str) else None
    if text is not None:
        py = _python_datetime(text, end=end)
        if py is not None and not (_MIN.to_pydatetime() <= py <= _MAX.to_pydatetime()):
            early = py < _MIN.to_pydatetime()
            # a start before the range or an end after it: open; otherwise nothing matches
            if early != end:
                return None, False
            return None, True
    try:
        ts = parse_time(value, name, end=end)
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        # the period's end is past the range (end="2262"): an open end
        if end:
            return None, False
        raise InvalidInputError(f"{name}: {value!r:.100} is out of range") from None
    return ts, False


def parse_bounds(start: Any, end: Any, names: tuple[str, str] = ("start", "end")) -> TimeBounds:
    """Both bounds, checked for order.

    Raises
    ------
    InvalidInputError
        When a bound is not a date or the interval ends before it starts.
    """
    t0, e0 = parse_bound(start, names[0])
    t1, e1 = parse_bound(end, names[1], end=True)
    if t0 is not None and t1 is not None and t0 > t1:
        raise InvalidInputError(
            f"{names[0]} ({t0.isoformat()}) is after {names[1]} ({t1.isoformat()})"
        )
    return TimeBounds(t0, t1, e0 or e1)


def clamp_literal(value: str) -> pd.Timestamp:
    """A CQL2 timestamp/date literal -> naive UTC timestamp, clamped into pandas' range.

    Clamping keeps comparisons right: every catalog date lies strictly inside the range.

    Raises
    ------
    InvalidInputError
        When ``value`` is not a date-time.
    """
    text = str(value).strip()
    py = _python_datetime(text, end=False)
    if py is not None:
        if py < _MIN.to_pydatetime():
            return _MIN
        if py > _MAX.to_pydatetime():
            return _MAX
    try:
        ts = pd.Timestamp(text)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"cannot read {text!r:.100} as a date-time") from None
    if pd.isna(ts):
        raise InvalidInputError(f"cannot read {text!r:.100} as a date-time")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
