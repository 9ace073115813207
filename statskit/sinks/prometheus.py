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
        self._labels: dict = {}

    @classmethod
    def from_settings(cls, settings: Any, state: StateStore) -> "PrometheusSink":
        return cls(state)

    def emit(self, events: Sequence[Event]) -> None:
        if len(events) == 1:  # the common single-event request: skip the Counter
            counts = {(events[0].measurement, events[0].event or ""): 1}
        else:
            counts = Counter((e.measurement, e.event or "") for e in events)
        for key, n in counts.items():
            labels = self._labels.get(key)
            if labels is None:
                labels = self._label_set(*key)
            self.state.incr("statskit_events_accepted", labels, n)

    def _label_set(self, measurement: str, name: str) -> tuple:
        """Sorted label pairs for a name, built once; past ``max_series`` names count as "other"."""
        if len(self._labels) >= self.max_series:
            name = OTHER
        labels = (("event", name), ("measurement", measurement))
        if len(self._labels) < self.max_series:
            self._labels[(measurement, name)] = labels
        return labels

    def flush(self, timeout: Optional[float] = None) -> None:
        self.state.flush()

    def close(self, timeout: Optional[float] = None) -> None:
        pass
