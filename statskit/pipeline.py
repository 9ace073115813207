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
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import StorageFull, Unavailable, is_transient
from .events import Event
from .hostlock import HostLock
from .sinks import EventReader, Sink, build_sinks
from .sinks.relay import Follower, Relay
from .sinks.sqlite import SQLiteSink
from .state import StateStore, open_backend

log = logging.getLogger("statskit.pipeline")


class Pipeline:
    """Sinks plus the state store that counts what happens to events.

    With a durable sink that is also a log (the SQLite store), sinks that can be fed from it
    (:class:`~statskit.sinks.relay.Follower`: InfluxDB, stdout) are not given events in the
    request: a relay per sink reads them from the log after its cursor (:meth:`start`)."""

    def __init__(self, sinks: Sequence[Sink], state: StateStore, *, max_backlog: int = 1_000_000) -> None:
        self.sinks: List[Sink] = []
        self.state = state
        self.max_backlog = max_backlog
        self.readers: List[Any] = []
        self.durable: List[Sink] = []  # whose commit is what a 2xx promises (``durable = True``)
        self.others: List[Sink] = []
        self.log: Optional[Any] = next((s for s in sinks if getattr(s, "durable", False) and hasattr(s, "read_after")),
                                       None)
        self.relays: List[Relay] = []
        # One process of the host runs every relay of the log: they then decode each row once.
        self.relay_lock = None if self.log is None else HostLock(f"{getattr(self.log, 'db').path}.relays.lock")
        for sink in sinks:
            self.add(sink)

    def add(self, sink: Sink) -> None:
        """One more sink (a feature's: the KPI event inbox)."""
        self.sinks.append(sink)
        if isinstance(sink, EventReader) and not getattr(sink, "outbox", False):
            self.readers.append(sink)
        if getattr(sink, "durable", False):
            self.durable.append(sink)
        elif self.log is not None and isinstance(sink, Follower) and _follows(sink, self.log):
            self.relays.append(Relay(sink, self.log, self.state, max_backlog=self.max_backlog, lock=self.relay_lock))
        else:
            self.others.append(sink)

    def start(self) -> None:
        """Start the relays (in each serving process; one of them runs each, see relay.py)."""
        for relay in self.relays:
            relay.start()

    def ingest(self, events: Sequence[Event]) -> None:
        """Give ``events`` to every sink, durable ones first.

        A durable sink that raises fails the ingest (counted, then raised: the request is not
        acknowledged, and no other sink has seen the events, so a retry does not count them
        twice). Any other sink that raises is counted and logged; the others and the caller
        carry on (stats-service swallowed such errors silently)."""
        if len(events) > 1:
            distinct_times(events)
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
        """Write what is buffered; deliver what the log holds to the sinks fed from it."""
        self._each("flush", timeout, self.durable + self.others)
        self._each("drain", timeout, self.relays)
        self.state.flush()

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close every sink within ``timeout`` seconds in all (the relays deliver what
        they can in that time; the rest waits in the log for the next start)."""
        self._each("close", timeout, self.durable + self.others)
        self._each("close", timeout, self.relays)
        if self.relay_lock is not None:
            self.relay_lock.release()  # the next process runs them, from their cursors
        self._each("close", timeout, [r.sink for r in self.relays])
        self.state.close()

    def _each(self, method: str, timeout: Optional[float], sinks: Sequence[Any]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for sink in sinks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                getattr(sink, method)(left)
            except Exception as exc:
                log.error("sink %s failed to %s: %s", getattr(sink, "name", None) or sink.sink.name, method, exc)


def _follows(sink: Any, log: Any) -> bool:
    """Whether ``sink`` is fed from ``log``: ``follows_log`` (a bool, or a test of the log)."""
    follows = getattr(sink, "follows_log", True)
    return bool(follows(log) if callable(follows) else follows)


def distinct_times(events: Sequence[Event]) -> None:
    """Give the events of one batch that share a series and a time distinct times, 1 ns apart.

    InfluxDB keeps ONE point per series (measurement and non-empty tags) and timestamp, and a
    client may send the same time for several events of one request (its batch's time, or a
    clock in seconds). Doing it once, before anything stores the batch, gives every sink the
    same times, so a point sent again from the durable log overwrites itself instead of a
    neighbour. Two events with the same id are one event sent twice: they keep their time.

        >>> from statskit.events import parse_items
        >>> a, b = parse_items([{"uid": "u1", "event": "view", "time": 1_764_000_000}] * 2)
        >>> distinct_times([a, b]); b.time_ns - a.time_ns
        1
    """
    if all(event.stamped for event in events):
        return  # receive times: distinct already (parse_items), unique on the host (the log)
    seen: Dict[Tuple[Any, ...], str] = {}
    keys: Dict[Tuple[Any, ...], Tuple[Any, ...]] = {}  # tags as given -> sorted: a few users make a batch
    for event in events:
        given = (event.measurement, *event.tags.items())
        series = keys.get(given)
        if series is None:
            series = keys[given] = (event.measurement, *sorted((k, v) for k, v in event.tags.items() if v and k))
        time_ns = event.time_ns
        other = seen.setdefault((series, time_ns), event.id)
        while other != event.id:
            time_ns += 1
            other = seen.setdefault((series, time_ns), event.id)
        if time_ns != event.time_ns:
            event.time_ns = time_ns
            event._json = None


def build_pipeline(settings: Any, state: Optional[StateStore] = None) -> Pipeline:
    """The pipeline that ``settings`` describes (``[sinks] enabled``, ``[state] backend``)."""
    if state is None:
        state = open_backend(settings.state.backend, settings.server.data_dir, settings.state.flush_interval,
                             settings.state)
    sinks = build_sinks(settings.sinks.enabled, settings, state)
    if (any(isinstance(s, Follower) and getattr(s, "needs_log", True) for s in sinks)
            and not any(getattr(s, "durable", False) for s in sinks)):
        sinks.insert(0, SQLiteSink.outbox_from_settings(settings, state))  # the durable log they follow
    return Pipeline(sinks, state, max_backlog=settings.sinks.max_backlog)
