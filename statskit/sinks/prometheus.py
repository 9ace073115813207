"""Events as Prometheus counters, kept in the shared state so every worker reports the same.

``statskit_events_accepted_total{measurement, event}`` counts events by name (a point counts under
its measurement with ``event=""``). Labels are bounded: after ``max_series`` distinct names a
process counts new names under ``event="other"``, so a client cannot blow up Prometheus.

**Counted once, from the durable log**, when the server has one and the counters live in its
SQLite database (the ``sqlite`` state): the sink is then a :class:`~statskit.sinks.relay.Follower`
and its relay adds a batch's counts and moves its cursor in one transaction, so a ``kill -9``
neither loses nor doubles the count of an acknowledged event (counts buffered in a process
lost up to ``[state] flush_interval`` of them). A scrape lets the relay catch up first. With
another state (Redis) or no durable sink, events are counted in the request, buffered.
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any, List, Optional, Sequence, Tuple

from ..errors import RetryableError, is_storage_full, is_transient
from ..events import Event
from ..labels import label_key
from ..state import StateStore, store_for
from ..state.sqlite import add_counters
from .sqlite import advance_cursor

OTHER = "other"


class PrometheusSink:
    name = "prometheus"
    relay_batch = 5000
    relay_interval = 0.05  # what a scrape on another worker may lag behind
    needs_log = False  # no outbox is made for it alone: counting in the request is fine then
    scraped = True  # /metrics shows what it stores: a scrape lets its relay catch up first

    def __init__(self, state: StateStore, max_series: int = 1000, db: Any = None) -> None:
        self.state = state
        self.max_series = max_series
        self.db = db  # the sqlite state's database: fed from the log (see the module docstring)
        self._labels: dict = {}

    def follows_log(self, log: Any) -> bool:
        """Fed from ``log`` only when the counters are in its database: the counts and the
        cursor must commit together."""
        return self.db is not None and getattr(log, "db", None) is self.db

    @classmethod
    def from_settings(cls, settings: Any, state: StateStore) -> "PrometheusSink":
        return cls(state, db=store_for(state, {"sqlite": lambda backend: backend.db}, lambda _: None))

    def emit(self, events: Sequence[Event]) -> None:
        self._buffer(self.prepare(events))

    def _buffer(self, batch: List[Tuple[tuple, int]]) -> None:
        """Counted in the state's per-process buffer (not fed from a log)."""
        for labels, n in batch:
            self.state.incr("statskit_events_accepted", labels, n)

    def prepare(self, events: Sequence[Event]) -> List[Tuple[tuple, int]]:
        """(labels, count) per event name in ``events``."""
        if len(events) == 1:  # the common single-event request: skip the Counter
            counts = {(events[0].measurement, events[0].event or ""): 1}
        else:
            counts = Counter((e.measurement, e.event or "") for e in events)
        out = []
        for key, n in counts.items():
            labels = self._labels.get(key)
            if labels is None:
                labels = self._label_set(*key)
            out.append((labels, n))
        return out

    def send(self, batch: List[Tuple[tuple, int]]) -> None:
        if self.db is None:
            self._buffer(batch)
            return
        self.send_at(batch, None)

    def send_at(self, batch: List[Tuple[tuple, int]], seq: Optional[int]) -> None:
        """Add the counts and move this sink's cursor in the log to ``seq``, in one transaction."""
        try:
            with self.db.transaction() as conn:
                add_counters(conn, [("statskit_events_accepted", label_key(labels), float(n)) for labels, n in batch])
                if seq is not None:
                    advance_cursor(conn, self.name, seq)
        except sqlite3.OperationalError as exc:
            if is_transient(exc) or is_storage_full(exc):
                raise RetryableError(f"the counters cannot be written: {exc}") from exc
            raise

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
