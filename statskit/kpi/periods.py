"""Aggregation periods: the D/W/M/Y labels, their time ranges and retention.

Times are naive local datetimes, as in the original (log ``ts`` converted with
``datetime.fromtimestamp``). An hourly period is known by the epoch of its start.

    >>> from datetime import datetime
    >>> [label(kind, datetime(2024, 12, 30, 15)) for kind in KINDS]
    ['2024-12-30', '2025 W01', '2024-12', '2024']
    >>> start, stop = period_range("W", "2025 W01")
    >>> start, stop
    (datetime.datetime(2024, 12, 30, 0, 0), datetime.datetime(2025, 1, 5, 23, 0))

The week label uses the ISO year with the ISO week (the original took the calendar year, so
2024-12-30 became ``2024 W01``, which sorted before ``2024 W02`` of January 2024).
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import List, Tuple

KINDS = ("D", "W", "M", "Y")
#: How many values of each kind are kept (None: all), as in the original.
RETENTION = {"D": 7, "W": 4, "M": 12, "Y": None}
#: How many values ``valuesAll`` lists, ending at the last available one (Y: first to last).
VALUES_ALL = {"D": 7, "W": 4, "M": 3}

_PATTERNS = {"D": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), "W": re.compile(r"^(\d{4}) W(\d{2})$"),
             "M": re.compile(r"^(\d{4})-(\d{2})$"), "Y": re.compile(r"^(\d{4})$")}


class BadPeriod(ValueError):
    """An aggregation kind or value that does not name a period."""


def check_kind(kind: str) -> str:
    """``kind`` if it is exactly D, W, M or Y (the original's loose regex let ``DX`` through)."""
    if kind not in KINDS:
        raise BadPeriod(f"aggregation kind must be one of D, W, M, Y, not {kind!r}")
    return kind


def label(kind: str, moment: datetime) -> str:
    if kind == "D":
        return moment.strftime("%Y-%m-%d")
    if kind == "W":
        iso_year, iso_week, _ = moment.isocalendar()
        return f"{iso_year:04d} W{iso_week:02d}"
    if kind == "M":
        return moment.strftime("%Y-%m")
    if kind == "Y":
        return moment.strftime("%Y")
    raise BadPeriod(f"unknown aggregation kind {kind!r}")


def first_day(kind: str, value: str) -> date:
    """The first day of the period ``value`` of ``kind`` (:class:`BadPeriod` when malformed)."""
    check_kind(kind)
    match = _PATTERNS[kind].match(value or "")
    if not match:
        raise BadPeriod(f"{value!r} is not a {kind} aggregation value")
    try:
        numbers = [int(g) for g in match.groups()]
        if kind == "D":
            return date(*numbers)
        if kind == "W":
            return date.fromisocalendar(numbers[0], numbers[1], 1)
        if kind == "M":
            return date(numbers[0], numbers[1], 1)
        return date(numbers[0], 1, 1)
    except ValueError as exc:
        raise BadPeriod(f"{value!r} is not a {kind} aggregation value: {exc}") from None


def _next_first_day(kind: str, day: date) -> date:
    if kind == "D":
        return day + timedelta(days=1)
    if kind == "W":
        return day + timedelta(days=7)
    if kind == "M":
        return date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return date(day.year + 1, 1, 1)


def period_range(kind: str, value: str) -> Tuple[datetime, datetime]:
    """First and last hour start of the period (the original's ``start <= ts <= stop``)."""
    day = first_day(kind, value)
    start = datetime(day.year, day.month, day.day)
    end = _next_first_day(kind, day)
    return start, datetime(end.year, end.month, end.day) - timedelta(hours=1)


def shift(kind: str, value: str, steps: int) -> str:
    """The label ``steps`` periods after (negative: before) ``value``.

        >>> shift("M", "2024-01", -1), shift("W", "2025 W01", -1), shift("D", "2024-03-01", -1)
        ('2023-12', '2024 W52', '2024-02-29')
    """
    day = first_day(kind, value)
    if kind == "D":
        day = day + timedelta(days=steps)
    elif kind == "W":
        day = day + timedelta(days=7 * steps)
    elif kind == "M":
        months = day.year * 12 + day.month - 1 + steps
        day = date(months // 12, months % 12 + 1, 1)
    else:
        day = date(day.year + steps, 1, 1)
    return label(kind, datetime(day.year, day.month, day.day))


def oldest_kept(kind: str, value: str) -> str:
    """The oldest label retention keeps when ``value`` is the newest (Y keeps everything)."""
    keep = RETENTION[kind]
    return "" if keep is None else shift(kind, value, -(keep - 1))


def values_all(kind: str, available: List[str]) -> List[str]:
    """What the dashboard's charts span: the last 7 days / 4 weeks / 3 months ending at the last
    available value, or every year from the first to the last.

        >>> values_all("M", ["2024-02"])
        ['2023-12', '2024-01', '2024-02']
        >>> values_all("Y", ["2021", "2024"])
        ['2021', '2022', '2023', '2024']
    """
    if not available:
        return []
    last = max(available)
    if kind == "Y":
        return [str(y) for y in range(int(min(available)), int(last) + 1)]
    count = VALUES_ALL[kind]
    return [shift(kind, last, -i) for i in range(count - 1, -1, -1)]
