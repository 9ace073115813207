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

Payloads apply in arrival order, as the original's cache applied them: a start for a session
already known is ignored (one exception: a start older than every point of a session that has
had no start is taken, where the original ignored it, since it can only be a session's first
payload overtaken by its first heartbeat on another worker: the gap from it would never count
otherwise); a heartbeat adds its point and forgets the end, whatever their times
(a heartbeat after an end reopens the session and the duration is derived again); an end
replaces the previous end and is sorted among the points by its time; a payload of an unknown
type is a heartbeat; dashboard uid ``new`` (an unsaved dashboard) is not counted.

**Bounded storage.** A session keeps no list of heartbeats (:class:`SessionRecord`): its first
point, its latest ``WINDOW`` (4) points, the sum of the capped gaps before them, and a few
numbers; whatever its length. This gives exactly the original's result for payloads in time
order and for payloads a few places out of it (tested against a transcription of the
original). A point older than the window but after the session's first point adds nothing
(exact when the gap it falls into was under the cap, as between heartbeats of an active tab);
one before the first point adds its gap there. The cap of a gap that leaves the window is the
one in force then (the original applied the latest payload's heartbeat interval to every gap;
the panel's interval does not change within a session).

**Order.** The server applies payloads in batches, one background thread per worker (see
:meth:`SessionTracker.submit`), so two payloads of one session that arrive within one batch
window (50 ms) on two workers may be applied in either order, as with the original's replicas.
The counter keeps the largest duration shown, so an end overtaken by its last heartbeat keeps
what the end credited; a start overtaken by its first heartbeat is taken (above).

**Real counters.** A session remembers the duration already credited; each payload recomputes
the duration and credits only an increase. When the recomputed duration shrinks (a heartbeat
after an end reopens the session and derives it again; a start and an end without heartbeats
count end - start uncapped, a heartbeat after them a capped gap), nothing is taken back: the
counter holds the largest duration the original would have shown, where the original's
"counter" went down. Forgetting a session (eviction) does not touch the counters.

**Labels.** A session is counted, and all its duration is credited, under the labels of the
payload that first created it. Later label changes (a renamed dashboard, a changed dashboard
time zone) do not move it: each series then counts whole sessions, so
``duration / sessions`` per series stays an average session length, and nothing is ever
subtracted from a series (the original moved the whole session to the new series).

    >>> from statskit.state.memory import MemoryState
    >>> from statskit.grafana import SessionTracker, decode_payload, open_cache_for_tests
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
from typing import Any, Callable, List, Optional, Protocol, Sequence, Tuple

from ..labels import LabelKey
from .payload import Payload

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
POINTS_TABLE = "grafana_points"  # the host's log of points waiting for InfluxDB (tracker.py)



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
    end = record.end
    if end is not None:
        # The end is one more point, sorted among the others as the original sorted them all.
        if end >= w[-1]:
            d += min(end - w[-1], cap)
        elif end >= w[0] or w[0] == record.first:
            w = tuple(sorted(w + (end,)))
        elif end < record.first:
            d += min(record.first - end, cap)
        # else it falls among the points folded into ``base``: it adds nothing (as add_point)
    for i in range(1, len(w)):
        d += min(w[i] - w[i - 1], cap)
    return d


class Step:
    """What one payload did to its session (the counters are incremented from it)."""

    __slots__ = ("kind", "created", "ignored", "labels", "delta", "duration", "credited", "ended")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.created = False      # first payload of the session: sessions +1
        self.ignored = False      # a repeated start, an unsaved dashboard
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

    The original's rules, in arrival order: a start for a known session is ignored (except a
    start older than every point of a session that has had no start: see below); a heartbeat
    adds a point and forgets the end (whatever their times: it reopens the session); an end
    replaces the previous one and is a point sorted among the others by its time.
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
    elif kind == START and (record.started or t >= record.first):
        step.ignored = True  # the original's cache.Add fails for a known uuid
        step._seal(record, duration(record, timeout))
        return None, step
    else:
        if kind == START:
            # A start older than every point of a session that has had none: its first payload,
            # overtaken by its first heartbeat on another worker. Taken (the original ignored
            # it), or that first gap would never count.
            record.started = True
            if record.heartbeats == 0:
                record.start = record.first = t
                record.window = (t,)
            else:
                add_point(record, t, gap_cap(timeout, interval))
                record.start = t
        elif kind == HEARTBEAT:
            record.end = None  # a heartbeat after an end reopens the session (addHeartbeat drops it)
            add_point(record, t, gap_cap(timeout, interval))
            record.heartbeats += 1
        else:
            record.end = t  # addEnd: the latest end wins
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
    one process's (memory). Backends are in :mod:`statskit.grafana.stores`."""

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


def label_names(user_metrics: bool = True) -> List[str]:
    """The label names of the session families, sorted (as the original exposes them)."""
    return [n for n in LABEL_NAMES if user_metrics or n not in USER_LABELS]
