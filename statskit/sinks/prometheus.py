"""Events as Prometheus counters, kept in the shared state so every worker reports the same.

``statskit_events_accepted_total{measurement, event}`` counts events by name (a point counts under
its measurement with ``event=""``). Labels are bounded: after ``max_series`` distinct names a
process counts new names under ``event="other"``, so a client cannot blow up Prometheus.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional, Sequence

from ..events import Event
from ..state import StateStore

OTHER = "other"


class PrometheusSink:
    name = "prometheus"

    def __init__(self, state: StateStore, max_series: int = 1000) -> None:
        self.state = state
        self.max_series = max_series
        self._seen: set = set()

    @classmethod
    def from_settings(cls, settings: Any, state: StateStore) -> "PrometheusSink":
        return cls(state)

    def emit(self, events: Sequence[Event]) -> None:
        counts = Counter((e.measurement, e.event or "") for e in events)
        for (measurement, name), n in counts.items():
            key = (measurement, name)
            if key not in self._seen:
                if len(self._seen) >= self.max_series:
                    key = (measurement, OTHER)
                else:
                    self._seen.add(key)
            self.state.incr("statskit_events_accepted", {"measurement": key[0], "event": key[1]}, n)

    def flush(self, timeout: Optional[float] = None) -> None:
        self.state.flush()

    def close(self, timeout: Optional[float] = None) -> None:
        pass
