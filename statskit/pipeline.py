"""The pipeline fans a validated batch out to every sink, isolating their failures.

    >>> from statskit.state.memory import MemoryState
    >>> from statskit.sinks.prometheus import PrometheusSink
    >>> from statskit.events import parse_items
    >>> state = MemoryState()
    >>> pipeline = Pipeline([PrometheusSink(state)], state)
    >>> pipeline.ingest(parse_items([{"uid": "u1", "event": "signup"}]))
    >>> state.counters("statskit_events_accepted")
    [('statskit_events_accepted', (('event', 'signup'), ('measurement', 'analytics')), 1.0)]
"""
from __future__ import annotations

import logging
import time
from typing import Any, List, Optional, Sequence

from .errors import StorageFull, Unavailable, is_transient
from .events import Event
from .sinks import EventReader, Sink, build_sinks
from .state import StateStore, open_backend

log = logging.getLogger("statskit.pipeline")


class Pipeline:
    """Sinks plus the state store that counts what happens to events."""

    def __init__(self, sinks: Sequence[Sink], state: StateStore) -> None:
        self.sinks: List[Sink] = []
        self.state = state
        self.readers: List[Any] = []
        self.durable: List[Sink] = []  # whose commit is what a 2xx promises (``durable = True``)
        self.others: List[Sink] = []
        for sink in sinks:
            self.add(sink)

    def add(self, sink: Sink) -> None:
        """One more sink (a feature's: the KPI event inbox)."""
        self.sinks.append(sink)
        if isinstance(sink, EventReader):
            self.readers.append(sink)
        (self.durable if getattr(sink, "durable", False) else self.others).append(sink)

    def ingest(self, events: Sequence[Event]) -> None:
        """Give ``events`` to every sink, durable ones first.

        A durable sink that raises fails the ingest (counted, then raised: the request is not
        acknowledged, and no other sink has seen the events, so a retry does not count them
        twice). Any other sink that raises is counted and logged; the others and the caller
        carry on (stats-service swallowed such errors silently)."""
        for sink in self.durable:
            try:
                sink.emit(events)
            except Exception as exc:
                self.state.incr("statskit_sink_errors", {"sink": sink.name}, 1)
                if isinstance(exc, StorageFull):
                    self.state.incr("statskit_writes_refused", {"reason": "storage_full", "sink": sink.name}, len(events))
                raise
        for sink in self.others:
            try:
                sink.emit(events)
            except Exception as exc:
                self.state.incr("statskit_sink_errors", {"sink": sink.name}, 1)
                log.error("sink %s failed to take %d events: %s", sink.name, len(events), exc,
                          exc_info=not isinstance(exc, OSError))

    def reject(self, reason: str, event: str = "", count: int = 1) -> None:
        self.state.incr("statskit_events_rejected", {"event": event, "reason": reason}, count)

    def get(self, event_id: str) -> Optional[Event]:
        """The event from the first reader that has it; None when every reader answered that
        it has none, Unavailable (503) when one that might have it could not be asked."""
        failed = []
        for reader in self.readers:
            try:
                found = reader.get(event_id)
            except Exception as exc:
                failed.append(self._read_failed(reader, exc))  # a bug is raised there, not skipped
                continue
            if found is not None:
                return found
        if failed:
            raise Unavailable(f"could not read from {', '.join(failed)}; try again")
        return None

    def query(self, **filters: Any) -> List[Event]:
        """Events from the first reader that answers (Unavailable when none can)."""
        failed = []
        for reader in self.readers:
            try:
                return reader.query(**filters)
            except Exception as exc:
                failed.append(self._read_failed(reader, exc))
        if failed:
            raise Unavailable(f"could not read from {', '.join(failed)}; try again")
        return []

    def _read_failed(self, reader: Any, exc: Exception) -> str:
        """Count a failed read; its sink's name when the store is down or busy (try the next
        reader), else raise the error again: a bug must show as one (a logged 500)."""
        name = getattr(reader, "name", "?")
        self.state.incr("statskit_sink_errors", {"sink": name}, 1)
        if not is_transient(exc):
            raise exc
        log.error("reading events from %s failed: %s", name, exc)
        return name

    def flush(self, timeout: Optional[float] = None) -> None:
        self._each("flush", timeout)
        self.state.flush()

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close every sink within ``timeout`` seconds in all."""
        self._each("close", timeout)
        self.state.close()

    def _each(self, method: str, timeout: Optional[float]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for sink in self.sinks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                getattr(sink, method)(left)
            except Exception as exc:
                log.error("sink %s failed to %s: %s", sink.name, method, exc)


def build_pipeline(settings: Any, state: Optional[StateStore] = None) -> Pipeline:
    """The pipeline that ``settings`` describes (``[sinks] enabled``, ``[state] backend``)."""
    if state is None:
        state = open_backend(settings.state.backend, settings.server.data_dir, settings.state.flush_interval,
                             settings.state)
    return Pipeline(build_sinks(settings.sinks.enabled, settings, state), state)
