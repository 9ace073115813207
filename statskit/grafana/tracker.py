"""The session tracker: payloads in, counters and session log lines out (``POST /write``)."""
from __future__ import annotations

import threading
import time as _time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import RetryableError
from ..labels import LabelKey
from ..sinks.relay import Relay
from ..sinks.sqlite import SQLiteSink
from ..state import StateStore
from ..worker import BatchWorker, Worker
from .payload import Payload
from .points import session_point
from .sessions import (
    DURATION,
    POINTS_TABLE,
    SESSIONS,
    UNSAVED_DASHBOARD,
    Change,
    SessionCache,
    Step,
    advance,
    kind_of,
    log,
    session_key,
    session_labels,
)


class SessionTracker:
    """Payloads in, counters up: the library side of ``POST /write``.

    ``process(payload)`` applies one payload at once. ``submit(payload)`` queues it for a
    background thread that applies the queue in batches (at most ``max_latency`` seconds
    later, one transaction per batch), as the original applied its channel in a goroutine;
    ``flush()`` waits for the queue. Either way a payload updates its session, credits the
    counters, then the session log line is written (``log``, a
    :class:`~statskit.grafana.sessionlog.SessionLog`) and a point goes to each of ``point_sinks``.
    """

    def __init__(self, state: StateStore, cache: SessionCache, *, timeout: float = 0.0, user_metrics: bool = True,
                 log: Any = None, point_sinks: Sequence[Any] = (), point_variables: bool = True,
                 max_latency: float = 0.05, max_queue: int = 100_000, journal: Any = None,
                 relays: Sequence[Relay] = ()) -> None:
        self.state = state
        self.relays = list(relays)  # deliver the points log to InfluxDB (from_settings); started here
        self.cache = cache
        self.timeout = timeout
        self.user_metrics = user_metrics
        self.log = log
        self.point_sinks = list(point_sinks)
        self.point_variables = point_variables
        self.max_latency = max_latency
        self.max_queue = max_queue
        self._worker: Optional[Worker] = None
        self._worker_lock = threading.Lock()  # gthread workers: one applier thread per process
        self.journal = journal  # a PayloadJournal: submit(body=...) is durable before it returns
        if journal is not None:
            journal.apply = lambda entries: self._apply_batch([(p, received) for p, received, _ in entries])
            journal.start()  # payloads a crash left in the journal are applied without waiting for new ones
        for relay in self.relays:
            relay.start()  # (built in the serving process: create_app runs after gunicorn's fork)

    @classmethod
    def from_settings(cls, settings: Any, state: StateStore, sinks: Sequence[Any] = ()) -> "SessionTracker":
        """The tracker ``[grafana]`` describes: cache backend from the state store's type, the
        session log on stdout, points to the InfluxDB sinks among ``sinks``."""
        from ..state import store_for
        from ..state.sqlite import SQLiteDB, database_path
        from .decoding import decode_payload
        from ..journal import PayloadJournal
        from .sessionlog import SessionLog
        from .stores import open_session_cache

        g = settings.grafana
        cache = open_session_cache(state, g.max_cache_size, g.idle_timeout)
        influx = [s for s in sinks if getattr(s, "name", None) == "influxdb"]
        # The journal is on the host's disk: the state's database, or one of its own beside a shared
        # store. None with the memory backend (one process, nothing durable: the queue in memory).
        db = store_for(state, {"sqlite": lambda backend: backend.db, "memory": lambda backend: None},
                       lambda _: SQLiteDB(database_path(settings.server.data_dir)))
        journal = None if db is None else PayloadJournal(db, lambda entries: None, decode=decode_payload,
                                                         table="grafana_journal",
                                                         commit_wait=settings.sqlite.commit_wait)
        point_sinks: List[Any] = influx
        relays: List[Relay] = []
        if db is not None and influx:
            # Points go to a log of their own on the host's disk, and a relay per InfluxDB sink
            # writes them from there (statskit/sinks/relay.py): a crash or an InfluxDB outage
            # loses none (they used to wait up to 1 s in the sink's memory).
            points = SQLiteSink(db, commit_wait=settings.sqlite.commit_wait, outbox=True, table=POINTS_TABLE)
            points.name = POINTS_TABLE  # statskit_sink_errors{sink="grafana_points"} when it cannot write
            relays = [Relay(sink, points, state, max_backlog=settings.sinks.max_backlog, name=f"{sink.name}.sessions")
                      for sink in influx]
            point_sinks = [points]
        return cls(state, cache, timeout=g.session_timeout, user_metrics=not g.disable_user_metrics,
                   log=SessionLog.from_settings(settings), point_sinks=point_sinks,
                   point_variables=not g.disable_variable_log, journal=journal, relays=relays)

    # -- applying ----------------------------------------------------------------------

    def process(self, payload: Payload, now: Optional[float] = None) -> Step:
        """Apply one payload now: state, counters, log line, point. Returns what it did."""
        return self.process_many([(payload, _time.time() if now is None else now)])[0]

    def process_many(self, items: Sequence[Tuple[Payload, float]]) -> List[Step]:
        """Apply payloads in order, sessions in one transaction; returns one Step each."""
        steps: List[Optional[Step]] = [None] * len(items)
        changes: List[Tuple[str, Change]] = []
        positions: List[int] = []
        for i, (payload, now) in enumerate(items):
            kind = kind_of(payload)
            if payload.dashboard.uid == UNSAVED_DASHBOARD:
                step = steps[i] = Step(kind)
                step.ignored = True
            else:
                changes.append((session_key(payload.uuid), self._change(payload, kind, now)))
                positions.append(i)
        if changes:
            for i, step in zip(positions, self.cache.apply(changes, max(now for _, now in items))):
                steps[i] = step
        done: List[Step] = steps  # type: ignore[assignment]
        self._count(done)
        # Applied and counted: from here on nothing may raise (a retry would count twice).
        if self.log is not None:
            try:
                self.log.write([line for (payload, _), step in zip(items, done)
                                for line in self.log.lines(payload, step)])
            except Exception as exc:  # stdout closed, a full disk behind it, ...
                self.state.incr("statskit_sink_errors", {"sink": "grafana_session_log"}, 1)
                log.error("writing %d session log lines failed: %s", len(items), exc)
        if self.point_sinks:
            self._emit_points(items, done)
        return done

    def submit(self, payload: Payload, now: Optional[float] = None, body: Optional[bytes] = None) -> None:
        """Journal a payload (``body``, as posted) and return once that is committed; without a
        journal or a body, queue it for the background thread (a full queue applies it here)."""
        if self.journal is not None and body is not None:
            self.journal.append(body, _time.time() if now is None else now, payload)
            return
        item = (payload, _time.time() if now is None else now)
        worker = self._worker
        if worker is None:
            worker = self._start_worker()
        if not worker.submit(item):
            self.process_many([item])

    def _start_worker(self) -> Worker:
        with self._worker_lock:
            if self._worker is None:
                # A store that is down or busy (Redis restarting, SQLite locked) is waited for, for
                # as long as it takes: the bounded queue is the limit (then payloads are dropped,
                # counted and logged), not a number of retries.
                self._worker = BatchWorker(self._apply_batch, max_queue=self.max_queue, batch_size=1000,
                                           max_latency=self.max_latency, max_retries=None, backoff=0.1,
                                           max_backoff=2.0, on_drop=self._dropped, name="statskit-grafana-sessions")
            return self._worker

    def _apply_batch(self, items: List[Tuple[Payload, float]]) -> None:
        try:
            self.process_many(items)
            self._store_counts()
        except Exception as exc:
            if self.state.is_transient(exc):  # the store is locked, busy or down: nothing was applied, retry
                raise RetryableError(str(exc)) from exc
            if len(items) == 1:  # a bug (e.g. "no such column"): retrying would not help
                log.exception("applying a panel payload failed")
                raise  # dropped: counted and logged by _dropped
            # Nothing of the batch was applied (the cache's apply is all or nothing): one bad
            # payload must not cost the others, so apply them one at a time.
            for item in items:
                try:
                    self.process_many([item])
                except Exception:
                    log.exception("applying a panel payload failed")
                    self._dropped([item], "rejected")

    def _store_counts(self) -> None:
        """The journal deletes the applied payloads next: their counts go to the store first,
        so a kill -9 after that loses none (buffered, they waited up to ``flush_interval``)."""
        if self.journal is None:
            return
        try:
            self.state.flush()
        except Exception:  # down or busy: they stay buffered for the next flush (never applied twice)
            pass

    def _dropped(self, items: List[Any], reason: str) -> None:
        self.state.incr("statskit_sink_dropped", {"sink": "grafana_sessions", "reason": reason}, len(items))
        log.error("gave up on %d panel payloads (%s)", len(items), reason)

    def _change(self, payload: Payload, kind: str, now: float) -> Change:
        t, interval, timeout = payload.time, payload.options.heartbeat_interval, self.timeout
        user_metrics = self.user_metrics
        return lambda record: advance(record, kind, t, interval, timeout, now,
                                      lambda: session_labels(payload, user_metrics))

    def _count(self, steps: Sequence[Step]) -> None:
        totals: Dict[Tuple[str, LabelKey], float] = {}
        for step in steps:
            if step.ignored:
                continue
            if step.created:
                key = (SESSIONS, step.labels)
                totals[key] = totals.get(key, 0.0) + 1
            if step.delta > 0 or (step.duration is not None and step.credited == 0):
                # (a duration of 0 so far still makes the series exist, as the original showed it)
                key = (DURATION, step.labels)
                totals[key] = totals.get(key, 0.0) + step.delta
        for (name, labels), amount in totals.items():
            self.state.incr(name, labels, amount)

    def _emit_points(self, items: Sequence[Tuple[Payload, float]], steps: Sequence[Step]) -> None:
        try:
            events = [session_point(payload, step, self.user_metrics, self.point_variables, int(now * 1e9))
                      for (payload, now), step in zip(items, steps) if not step.ignored]
        except Exception:  # pragma: no cover - a bug: points are a side output, never fatal
            log.exception("building session points failed")
            return
        if not events:
            return
        for sink in self.point_sinks:
            try:
                sink.emit(events)
            except Exception as exc:  # a failing sink never fails the others or the payloads
                self.state.incr("statskit_sink_errors", {"sink": getattr(sink, "name", "?")}, 1)
                log.error("sink %s failed to take %d session points: %s", getattr(sink, "name", "?"),
                          len(events), exc)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every submitted payload is applied (False if ``timeout`` ran out)."""
        worker = self._worker
        done = True if worker is None else worker.flush(timeout)
        return (self.journal.flush(timeout) if self.journal is not None else True) and done

    def close(self, timeout: Optional[float] = None) -> None:
        """Apply what is queued, then release the cache."""
        if self.journal is not None:
            self.journal.close(timeout)
        worker = self._worker
        if worker is not None:
            worker.close(timeout)
        for relay in self.relays:  # the points applied so far, to InfluxDB (the rest waits in the log)
            relay.close(timeout)
        self.cache.close()
