"""Dashboard-usage sessions from the analytics panel's payloads, as real Prometheus counters.

The original receiver kept every payload of a session in memory and, at each scrape, recomputed
every cached session's duration into "counters" that were really gauges of its cache: they went
down when the cache was flushed, when the process restarted and when a session's labels changed.
Here the rules for a session's duration are the original's, but the result is credited to
monotonic counters in the shared state store as it grows:

* ``grafana_analytics_sessions`` +1 when a session is first seen;
* ``grafana_analytics_sessions_duration_seconds`` + the growth of the session's duration.

**Duration rules** (the original's ``GetDuration``; ``timeout`` = ``--session-timeout``):

* with heartbeats: the points are the start, the heartbeats and the end (if any), in time
  order; every gap between consecutive points counts, capped at ``timeout``, or at 1.25 x the
  panel's heartbeat interval when ``timeout`` is 0;
* start and end without heartbeats: end - start, capped at ``timeout`` when it is not 0;
* start only: no duration yet (and no duration series, as in the original).

A start for a session already known is ignored; a heartbeat after an end reopens the session
(the end is forgotten); a payload of an unknown type is a heartbeat; dashboard uid ``new``
(an unsaved dashboard) is not counted.

**Bounded storage.** A session keeps no list of heartbeats (:class:`SessionRecord`): its first
point, its latest ``WINDOW`` (4) points, the sum of the capped gaps before them, and a few
numbers; whatever its length. For payloads in time order this gives exactly the original's
result (tested against a transcription of the original). A payload that arrives late is placed
by its time: within the window exactly; before the window but after the session's first point
it adds nothing (exact when the gap it falls into was under the cap, as between heartbeats of
an active tab); before the first point it adds its gap there. The cap of a gap that leaves the
window is the one in force then (the original applied the latest payload's heartbeat interval
to every gap; the panel's interval does not change within a session).

**Order.** The server applies payloads in batches, one background thread per worker (see
:meth:`SessionTracker.submit`), so two payloads of one session that arrive within one batch
window (50 ms) on two workers may be applied in either order. :func:`advance` places them by
their time and gets the in-order result, except when an end overtakes a session's only
heartbeats: then the end's no-heartbeat duration (end - start) has been credited and is kept,
as a counter never goes down. The panel sends a session's payloads a heartbeat interval apart.

**Real counters.** A session remembers the duration already credited; each payload recomputes
the duration and credits only an increase. When the recomputed duration shrinks (a start and an
end without heartbeats count end - start uncapped; a heartbeat after them reopens the session
and counts a capped gap instead), nothing is taken back: the counter holds the largest duration
the original would have shown. Forgetting a session (eviction)
does not touch the counters.

**Labels.** A session is counted, and all its duration is credited, under the labels of the
payload that first created it. Later label changes (a renamed dashboard, a changed dashboard
time zone) do not move it: each series then counts whole sessions, so
``duration / sessions`` per series stays an average session length, and nothing is ever
subtracted from a series (the original moved the whole session to the new series).

    >>> from statskit.state.memory import MemoryState
    >>> from statskit.panel import decode_payload
    >>> state = MemoryState()
    >>> tracker = SessionTracker(state, open_cache_for_tests())
    >>> body = '{"uuid": "s1", "type": "%s", "time": %d, "options": {"heartbeatInterval": 60}}'
    >>> for kind, t in [("start", 1000), ("heartbeat", 1060), ("heartbeat", 1300), ("end", 1310)]:
    ...     _ = tracker.process(decode_payload((body % (kind, t)).encode()), now=t)
    >>> sum(v for n, _, v in state.counters(DURATION))    # 60 + 75 (capped 240) + 10
    145.0
"""
from __future__ import annotations

import logging
import threading
import time as _time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from .events import Event, new_id
from .panel import Payload
from .state import LabelKey, StateStore

log = logging.getLogger("statskit.sessions")

PREFIX = "grafana_analytics_"
SESSIONS = PREFIX + "sessions"                            # exposed as grafana_analytics_sessions_total
DURATION = PREFIX + "sessions_duration_seconds"           # ..._sessions_duration_seconds_total
USER_LABELS = ("user_login", "user_name")
LABEL_NAMES = ("dashboard_name", "dashboard_timezone", "dashboard_uid", "grafana_env", "grafana_host",
               "user_locale", "user_login", "user_name", "user_role", "user_theme", "user_timezone")
UNSAVED_DASHBOARD = "new"
START, HEARTBEAT, END = "start", "heartbeat", "end"
# A label value longer than this is cut: one request must not be able to make a scrape huge.
MAX_LABEL_VALUE = 1024
# A uuid longer than this is kept as its SHA-256 (the panel's are 36 characters): a cache of
# max_cache_size sessions must not be able to hold max_cache_size request bodies.
MAX_UUID = 128
POINT_MEASUREMENT = "grafana_sessions"



def session_labels(payload: Payload, user_metrics: bool = True) -> LabelKey:
    """The original's label set for a payload, sorted by name (``--disable-user-metrics``
    drops user_login and user_name)."""
    host, user = payload.host, payload.user
    pairs = [
        ("dashboard_name", payload.dashboard.name),
        ("dashboard_timezone", payload.time_zone),
        ("dashboard_uid", payload.dashboard.uid),
        ("grafana_env", host.build_info.env),
        ("grafana_host", host.hostname + ":" + host.port),
        ("user_locale", user.locale),
        ("user_login", user.login),
        ("user_name", user.name),
        ("user_role", user.role),
        ("user_theme", user.theme),
        ("user_timezone", user.timezone),
    ]
    if not user_metrics:
        pairs = [p for p in pairs if p[0] not in USER_LABELS]
    return tuple((k, v[:MAX_LABEL_VALUE]) for k, v in pairs)


def session_key(uuid: str) -> str:
    """The cache key of a session: its uuid, or a digest of an overlong one."""
    if len(uuid) <= MAX_UUID:
        return uuid
    import hashlib

    return "sha256:" + hashlib.sha256(uuid.encode("utf-8", "surrogatepass")).hexdigest()


def kind_of(payload: Payload) -> str:
    """start, heartbeat or end; any other type (even "") is processed as a heartbeat."""
    kind = payload.type
    return kind if kind in (START, HEARTBEAT, END) else HEARTBEAT


WINDOW = 4  # the latest points a session keeps, so that late ones still land exactly


class SessionRecord:
    """What a session keeps between payloads: a fixed handful of numbers, whatever its length.

    Times are the panel's (seconds since the epoch, browser clock); ``seen`` is the server's
    clock at the last payload (for idle eviction).
    """

    __slots__ = ("labels", "started", "start", "first", "window", "end", "heartbeats", "base", "credited",
                 "interval", "seen")

    def __init__(self, labels: LabelKey, started: bool, start: int, first: int, window: Tuple[int, ...],
                 end: Optional[int], heartbeats: int, base: float, credited: float, interval: int,
                 seen: float) -> None:
        self.labels = labels          # what the session is counted under (its first payload's)
        self.started = started        # a start payload was seen
        self.start = start            # the first payload's time (or a late start's)
        self.first = first            # earliest of start and heartbeats
        self.window = window          # the latest (<= WINDOW) of start and heartbeats, sorted
        self.end = end                # end time, None while open
        self.heartbeats = heartbeats  # how many heartbeats (only whether there are any matters)
        self.base = base              # capped gaps from ``first`` to ``window[0]``
        self.credited = credited      # duration already added to the counter
        self.interval = interval      # the latest payload's heartbeat interval (s)
        self.seen = seen

    @classmethod
    def new(cls, labels: LabelKey, t: int, interval: int, seen: float) -> "SessionRecord":
        return cls(labels, False, t, t, (t,), None, 0, 0.0, 0.0, interval, seen)

    @property
    def last(self) -> int:
        return self.window[-1]

    @property
    def finished(self) -> bool:
        return self.end is not None

    def astuple(self) -> tuple:
        return tuple(getattr(self, a) for a in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionRecord) and self.astuple() == other.astuple()

    def __repr__(self) -> str:
        return "SessionRecord(" + ", ".join(f"{a}={getattr(self, a)!r}" for a in self.__slots__) + ")"


def gap_cap(timeout: float, interval: int) -> float:
    """The most one gap between heartbeats may add: ``timeout``, or 1.25 x the heartbeat interval
    when ``timeout`` is 0 (never negative: a negative interval crashed the original)."""
    if timeout > 0:
        return timeout
    return max(0.0, interval * 1.25)


def add_point(record: SessionRecord, t: int, cap: float) -> None:
    """Account for a point (heartbeat, or a start that came late) at ``t``.

    Points at or after the window's first one, and any point while nothing was folded out of
    the window, are placed exactly; the gap of a point leaving the window is folded into
    ``base`` with the current cap. A point older than every other adds its gap to the first;
    one older than the window but within the session adds nothing.
    """
    w = record.window
    if t >= w[0] or w[0] == record.first:
        w = w + (t,) if t >= w[-1] else tuple(sorted(w + (t,)))
        if t < record.first:
            record.first = t
        while len(w) > WINDOW:
            record.base += min(w[1] - w[0], cap)
            w = w[1:]
        record.window = w
    elif t < record.first:
        record.base += min(record.first - t, cap)
        record.first = t


def duration(record: SessionRecord, timeout: float) -> Optional[float]:
    """The session's duration by the original's rules, or None when it has none yet (start only)."""
    if record.heartbeats == 0:
        if record.end is None:
            return None
        d = float(record.end - record.start)
        if d < 0:
            return 0.0  # end before start: the original added a negative amount and crashed
        return min(d, timeout) if timeout > 0 else d
    cap = gap_cap(timeout, record.interval)
    w = record.window
    d = record.base
    for i in range(1, len(w)):
        d += min(w[i] - w[i - 1], cap)
    if record.end is not None:
        d += min(max(0, record.end - w[-1]), cap)
    return d


class Step:
    """What one payload did to its session (the counters are incremented from it)."""

    __slots__ = ("kind", "created", "ignored", "labels", "delta", "duration", "credited", "ended")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.created = False      # first payload of the session: sessions +1
        self.ignored = False      # a repeated start, an unsaved dashboard, a superseded end
        self.labels: LabelKey = ()
        self.delta = 0.0          # added to the duration counter
        self.duration: Optional[float] = None  # by the original's rules; None: none yet
        self.credited = 0.0       # the session's duration counted so far (this payload included)
        self.ended = False        # the session has an end

    def _seal(self, record: SessionRecord, d: Optional[float]) -> None:
        self.labels = record.labels
        self.duration = d
        self.credited = record.credited
        self.ended = record.end is not None

    def __repr__(self) -> str:
        return "Step(" + ", ".join(f"{a}={getattr(self, a)!r}" for a in self.__slots__) + ")"


def advance(record: Optional[SessionRecord], kind: str, t: int, interval: int, timeout: float, now: float,
            labels: Callable[[], LabelKey]) -> Tuple[Optional[SessionRecord], Step]:
    """Apply one payload to a session: the new record (None: leave the stored one as it is) and
    the :class:`Step`. ``record`` may be modified in place (caches hand out private copies).

    Payloads in time order get the original's result. Payloads that arrive out of order (two
    workers apply their batches in either order) are placed by their time: a start older than
    every point of a session that has had none is taken (the original ignored it); a
    heartbeat reopens an ended session only when it is not older than the end; an end older
    than the latest heartbeat is ignored (that heartbeat reopened the session), or is the
    session's first point when older than all of them.
    """
    step = Step(kind)
    if record is None:
        record = SessionRecord.new(labels(), t, interval, now)
        step.created = True
        if kind == START:
            record.started = True
        elif kind == HEARTBEAT:
            record.heartbeats = 1
        else:
            record.end = t
    else:
        cap = gap_cap(timeout, interval)
        if kind == START:
            if record.started or t >= record.first:
                step.ignored = True  # the original's cache.Add fails for a known uuid
            else:
                record.started = True
                if record.heartbeats == 0:
                    record.start = record.first = t
                    record.window = (t,)
                else:
                    add_point(record, t, cap)
                    record.start = t
        elif kind == HEARTBEAT:
            if record.end is not None and t >= record.end:
                record.end = None  # a heartbeat after an end reopens the session
            add_point(record, t, cap)
            record.heartbeats += 1
        elif record.heartbeats == 0 or t >= record.window[-1]:
            record.end = t
        elif t < record.first:
            add_point(record, t, cap)  # an end from before the session's heartbeats: its first point
        else:
            step.ignored = True
        if step.ignored:
            step._seal(record, duration(record, timeout))
            return None, step
        record.interval = interval  # the original keeps the latest payload, options included
        record.seen = now
    d = duration(record, timeout)
    if d is not None and d > record.credited:
        step.delta = d - record.credited
        record.credited = d
    step._seal(record, d)
    return record, step


Change = Callable[[Optional[SessionRecord]], Tuple[Optional[SessionRecord], Any]]


class SessionCache(Protocol):
    """Where sessions live between payloads: shared by all workers of a server (SQLite), or
    one process's (memory). Backends are in :mod:`statskit.state.sessions`."""

    def apply(self, changes: Sequence[Tuple[str, Change]], now: float) -> List[Any]:
        """Atomically, for each ``(uuid, change)`` in order: read the session (None if unknown),
        call ``change`` with a private copy, keep the record it returns (None: keep the stored
        one) and collect its second value. No other update of these sessions may interleave,
        in any process sharing the cache. Returns the collected values, in order."""

    def get(self, uuid: str) -> Optional[SessionRecord]: ...

    def __len__(self) -> int: ...

    def maintain(self, now: float) -> int:
        """Evict idle sessions, then finished and least recently seen ones beyond the size
        limit; returns how many were forgotten. ``apply`` also calls it when due."""

    def close(self) -> None: ...


def open_cache_for_tests(max_size: int = 0, idle_timeout: float = 0.0) -> SessionCache:
    """An in-memory cache (handy in doctests and library use)."""
    from .state.sessions import MemorySessionCache

    return MemorySessionCache(max_size, idle_timeout)


class SessionTracker:
    """Payloads in, counters up: the library side of ``POST /write``.

    ``process(payload)`` applies one payload at once. ``submit(payload)`` queues it for a
    background thread that applies the queue in batches (at most ``max_latency`` seconds
    later, one transaction per batch), as the original applied its channel in a goroutine;
    ``flush()`` waits for the queue. Either way a payload updates its session, credits the
    counters, then the session log line is written (``log``, a
    :class:`~statskit.sessionlog.SessionLog`) and a point goes to each of ``point_sinks``.
    """

    def __init__(self, state: StateStore, cache: SessionCache, *, timeout: float = 0.0, user_metrics: bool = True,
                 log: Any = None, point_sinks: Sequence[Any] = (), point_variables: bool = True,
                 max_latency: float = 0.05, max_queue: int = 100_000) -> None:
        self.state = state
        self.cache = cache
        self.timeout = timeout
        self.user_metrics = user_metrics
        self.log = log
        self.point_sinks = list(point_sinks)
        self.point_variables = point_variables
        self.max_latency = max_latency
        self.max_queue = max_queue
        self._worker: Any = None
        self._worker_lock = threading.Lock()  # gthread workers: one applier thread per process

    @classmethod
    def from_settings(cls, settings: Any, state: StateStore, sinks: Sequence[Any] = ()) -> "SessionTracker":
        """The tracker ``[grafana]`` describes: cache backend from the state store's type, the
        session log on stdout, points to the InfluxDB sinks among ``sinks``."""
        from .sessionlog import SessionLog
        from .state.sessions import open_session_cache

        g = settings.grafana
        cache = open_session_cache(state, g.max_cache_size, g.idle_timeout)
        influx = [s for s in sinks if getattr(s, "name", None) == "influxdb"]
        return cls(state, cache, timeout=g.session_timeout, user_metrics=not g.disable_user_metrics,
                   log=SessionLog.from_settings(settings), point_sinks=influx,
                   point_variables=not g.disable_variable_log)

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

    def submit(self, payload: Payload, now: Optional[float] = None) -> None:
        """Queue a payload for the background thread (a full queue applies it here instead)."""
        item = (payload, _time.time() if now is None else now)
        worker = self._worker
        if worker is None:
            worker = self._start_worker()
        if not worker.submit(item):
            self.process_many([item])

    def _start_worker(self) -> Any:
        from .worker import BatchWorker

        with self._worker_lock:
            if self._worker is None:
                self._worker = BatchWorker(self._apply_batch, max_queue=self.max_queue, batch_size=1000,
                                           max_latency=self.max_latency, max_retries=5, backoff=0.1,
                                           on_drop=self._dropped, name="statskit-grafana-sessions")
            return self._worker

    def _apply_batch(self, items: List[Tuple[Payload, float]]) -> None:
        import sqlite3

        from .worker import RetryableError

        try:
            self.process_many(items)
        except sqlite3.OperationalError as exc:  # locked or busy: nothing was applied, retry
            raise RetryableError(str(exc)) from exc
        except Exception:
            if len(items) == 1:
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
        return True if worker is None else worker.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Apply what is queued, then release the cache."""
        worker = self._worker
        if worker is not None:
            worker.close(timeout)
        self.cache.close()


# --------------------------------------------------------------------------- InfluxDB points

MAX_POINT_VARIABLES = 32
MAX_POINT_TEXT = 256


def session_point(payload: Payload, step: Step, user_metrics: bool = True, variables: bool = True,
                  time_ns: Optional[int] = None) -> Event:
    """One point per payload in measurement ``grafana_sessions``, stamped with the server's
    receive time (``time_ns``, default now; nanoseconds, so that two tabs of one user never
    overwrite each other's point).

    Tags (low cardinality, what dashboards group by): dashboard_uid, dashboard_name, user_login,
    user_name (both dropped by ``--disable-user-metrics``, as is the user_id field), user_role,
    user_theme, grafana_host, grafana_env, type (start/heartbeat/end). Fields: session (the uuid:
    a field, never a tag), user_id,
    duration_seconds (the session's duration so far, as credited), delta_seconds (what this
    payload added), has_focus, ended, heartbeat_interval, time_from/time_to (the dashboard's
    raw time range), user_timezone, user_locale, dashboard_timezone, and ``var_<name>`` per
    dashboard variable (values joined by ","; left out with ``--disable-variable-log``).
    """
    host, user = payload.host, payload.user
    tags: Dict[str, str] = {
        "dashboard_uid": payload.dashboard.uid,
        "dashboard_name": payload.dashboard.name,
        "user_role": user.role,
        "user_theme": user.theme,
        "grafana_host": host.hostname + ":" + host.port,
        "grafana_env": host.build_info.env,
        "type": step.kind,
    }
    if user_metrics:
        tags["user_login"], tags["user_name"] = user.login, user.name
    tags = {k: _clip(v) for k, v in tags.items() if v}  # line protocol has no empty tag values
    fields: Dict[str, Any] = {
        "session": payload.uuid,
        "duration_seconds": float(step.credited),
        "delta_seconds": float(step.delta),
        "has_focus": payload.has_focus,
        "ended": step.ended,
        "heartbeat_interval": payload.options.heartbeat_interval,
        "time_from": _clip(payload.time_range.raw.from_),
        "time_to": _clip(payload.time_range.raw.to),
        "user_timezone": _clip(user.timezone),
        "user_locale": _clip(user.locale),
        "dashboard_timezone": _clip(payload.time_zone),
    }
    if user_metrics:
        fields["user_id"] = user.id
    if variables:
        for variable in (payload.variables or ())[:MAX_POINT_VARIABLES]:
            key = "var_" + "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in variable.name)[:64]
            fields[key] = _clip(",".join(variable.value_texts()))
    now_ns = _time.time_ns() if time_ns is None else time_ns
    return Event(new_id(), now_ns, POINT_MEASUREMENT, tags, fields)


def _clip(text: str) -> str:
    # Control characters would break line protocol and tell nothing in a dashboard.
    text = text[:MAX_POINT_TEXT]
    return "".join(ch if ch >= " " else " " for ch in text) if any(ch < " " for ch in text) else text


def label_names(user_metrics: bool = True) -> List[str]:
    """The label names of the session families, sorted (as the original exposes them)."""
    return [n for n in LABEL_NAMES if user_metrics or n not in USER_LABELS]
