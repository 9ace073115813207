"""The hourly indicators (ids 1001-1999) and their recorders, kept in memory for the current hour.

    >>> usage = UsageRecorder()
    >>> for minute in (600, 603, 611, 659):   # minutes since the epoch; slots start at the first
    ...     usage.add(minute)
    >>> usage.value(), usage.state()
    (30, '600,610,650')
    >>> UsageRecorder.restore("600,610,650").value()
    30

A usage recorder counts 10-minute slots aligned on its first input's minute ``m0``: an input at
minute ``m`` (``r = m - m0``) lands in slot ``m - r % 10``, or ``m0 + 50`` when ``60 <= r <= 62``;
past 62 it is dropped (:class:`TooWideUsage`). Its value is 10 x the distinct slots (max 60).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple, Union

from .inputs import CLOCK_TICK, CUSTOM, EVENT, EVENT_UID, FILE_CREATED, FILE_DELETED, HOME_VISIT, REQUEST, Input

PACKAGE_HOME_VISIT, SHARED_FILES_OPERATIONS, UPTIME, TOTAL_USAGE_OVERALL, TOTAL_USAGE_BY_PACKAGE = (
    1001, 1003, 1004, 1005, 1006)
INDICATOR_NAMES = {PACKAGE_HOME_VISIT: "PackageHomeVisit", SHARED_FILES_OPERATIONS: "SharedFilesOperations",
                   UPTIME: "Uptime", TOTAL_USAGE_OVERALL: "TotalUsageOverall",
                   TOTAL_USAGE_BY_PACKAGE: "TotalUsageByPackage"}
EVENT_COUNT, EVENT_UID_INDICATOR = 1101, 1102  # statskit's event stream (statskit.kpi.events)
INDICATOR_NAMES.update({EVENT_COUNT: "EventCount", EVENT_UID_INDICATOR: "EventUid"})
USAGE_INDICATORS = (TOTAL_USAGE_OVERALL, TOTAL_USAGE_BY_PACKAGE)

Dimension = Tuple[str, ...]  # up to 3 values


class TooWideUsage(ValueError):
    """An input more than 62 minutes after the recorder's first one."""


class CounterRecorder:
    def __init__(self, value: int = 0) -> None:
        self.count = value

    def add(self, amount: int) -> None:
        self.count += amount

    def value(self) -> int:
        return self.count

    def state(self) -> str:
        return str(self.count)

    @classmethod
    def restore(cls, state: str) -> "CounterRecorder":
        return cls(int(state))


class UsageRecorder:
    def __init__(self) -> None:
        self.first: Optional[int] = None
        self.slots: set = set()

    def add(self, minute: int) -> None:
        if self.first is None:
            self.first = minute
        r = minute - self.first
        if r > 62:
            raise TooWideUsage(f"usage input {r} minutes after the first one of the hour")
        if r >= 60:
            slot = self.first + 50
        else:
            slot = minute - r % 10
        self.slots.add(slot)

    def value(self) -> int:
        return 10 * len(self.slots)

    def state(self) -> str:
        return ",".join(str(s) for s in sorted(self.slots))

    @classmethod
    def restore(cls, state: str) -> "UsageRecorder":
        recorder = cls()
        recorder.slots = {int(s) for s in state.split(",") if s}
        recorder.first = min(recorder.slots) if recorder.slots else None
        return recorder


Recorder = Union[CounterRecorder, UsageRecorder]


class Indicators:
    """Every indicator's recorders for the current hour, by indicator id and dimension
    (``usage``: the ids counting 10-minute slots, statskit's and third parties')."""

    def __init__(self, usage: Iterable[int] = USAGE_INDICATORS) -> None:
        self.usage = frozenset(usage)
        self.recorders: Dict[int, Dict[Dimension, Recorder]] = {}
        self.too_wide = 0
        self._request_minute: Dict[str, int] = {}  # last minute each package's requests were recorded

    def has_data(self) -> bool:
        return any(self.recorders.values())

    def clear(self) -> None:
        self.recorders = {}
        self._request_minute = {}

    def _get(self, indicator: int, dimension: Dimension) -> Recorder:
        by_dim = self.recorders.setdefault(indicator, {})
        recorder = by_dim.get(dimension)
        if recorder is None:
            recorder = UsageRecorder() if indicator in self.usage else CounterRecorder()
            by_dim[dimension] = recorder
        return recorder

    def apply(self, item: Input, minute: int, times: int = 1) -> None:
        """Apply ``item`` (``times`` times: the same input from several lines of one minute)."""
        kind = item.kind
        if kind == REQUEST:
            package = item.package
            if self._request_minute.get(package) == minute:
                return  # same minute, same slots: nothing changes (the hot path of a busy box)
            for indicator, dimension in ((TOTAL_USAGE_OVERALL, ()), (TOTAL_USAGE_BY_PACKAGE, (package,))):
                try:
                    self._get(indicator, dimension).add(minute)
                except TooWideUsage:
                    self.too_wide += 1  # the original dropped the input too
                    continue
            self._request_minute[package] = minute
        elif kind == HOME_VISIT:
            self._get(PACKAGE_HOME_VISIT, (item.package,)).add(times)
        elif kind in (FILE_CREATED, FILE_DELETED):
            self._get(SHARED_FILES_OPERATIONS, (kind,)).add(item.count * times)
        elif kind == CLOCK_TICK:
            self._get(UPTIME, ()).add(times)
        elif kind == EVENT:
            self._get(EVENT_COUNT, (item.package,)).add(times)
        elif kind == EVENT_UID:
            self._get(EVENT_UID_INDICATOR, (item.package,)).add(times)
        elif kind == CUSTOM:
            recorder = self._get(item.indicator, item.dimension)
            if isinstance(recorder, UsageRecorder):
                try:
                    recorder.add(minute)
                except TooWideUsage:
                    self.too_wide += 1
            else:
                recorder.add(times)

    def rows(self) -> Iterable[Tuple[int, Dimension, int, str]]:
        """``(indicator, dimension, value, state)`` for every recorder."""
        for indicator, by_dim in sorted(self.recorders.items()):
            for dimension, recorder in by_dim.items():
                yield indicator, dimension, recorder.value(), recorder.state()

    def restore(self, rows: Iterable[Tuple[int, Dimension, str]]) -> None:
        for indicator, dimension, state in rows:
            cls = UsageRecorder if indicator in self.usage else CounterRecorder
            self.recorders.setdefault(indicator, {})[dimension] = cls.restore(state)


def dimension_of(values: List[Optional[str]]) -> Dimension:
    return tuple(v for v in values if v is not None)
