"""One-shot queue backends: in memory (one process) and SQLite (shared by workers, persistent).

Both keep one append-only log of events, numbered by ``seq``, and per scraper a cursor: every
event with ``seq <= cursor`` is done for that scraper. Posting adds one row whatever the number
of scrapers; a scrape reads the events after its cursor, hands out the first one of each series
(Prometheus keeps one sample per series per scrape) and moves the cursor, in one transaction.
Events handed out beyond a deferred one (the second sample of a series) are remembered in a
small per-scraper "ahead" set until the cursor passes them.

    >>> from statskit.oneshot import QueueLimits, Reporter
    >>> queue = MemoryQueue(QueueLimits(), Reporter(None))
    >>> queue.scrape("prom-a", now_ms=1000).status       # first scrape registers prom-a
    'new'
    >>> queue.post('{"type":"a"}', 1.0, 1001); queue.post('{"type":"a"}', 2.0, 1002)
    >>> [d.value for d in queue.scrape("prom-a", now_ms=2000).deliveries]   # one per series ...
    [1.0]
    >>> [d.value for d in queue.scrape("prom-a", now_ms=3000).deliveries]   # ... the next one now
    [2.0]

Times: an event keeps the time it was posted at, except that the events of one series get
strictly increasing times in ``seq`` order (a later one is moved 1 ms past the one before it), so
explicit timestamps never go backwards for Prometheus, which drops such samples. A scraper gets
the events posted at or after its first scrape (minus ``backfill``), judged by that time.

Bounds (:class:`~statskit.oneshot.QueueLimits`): at most ``max_pending`` events wait per scraper
(older ones are dropped first, counted and logged); a scraper silent for ``scraper_timeout`` is
forgotten; events every scraper has passed are deleted unless a new scraper may still backfill
them (``backfill`` seconds, at most ``max_pending`` of them). Clean-ups run on every scrape and
every ``maintain_every`` posts, so the log stays bounded when nobody scrapes.
"""
from __future__ import annotations

import bisect
import logging
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..errors import Unavailable
from ..oneshot import Delivery, OneShotQueue, QueueLimits, Reporter, ScrapeResult
from ..worker import BatchWorker, RetryableError
from . import StateStore

log = logging.getLogger("statskit.oneshot")

MAX_PENDING_REASON = "max_pending"
TIMEOUT_REASON = "scraper_timeout"
# How long a series remembers its newest event time. Later events of it are stamped after that
# time; only an event held longer than this in a worker's write buffer could be stamped earlier.
SERIES_MEMORY_MS = 60_000
FLUSH_INTERVAL = 0.05


@dataclass
class Plan:
    """What one scrape hands out and where the scraper's cursor goes."""

    deliveries: List[Delivery]
    cursor: int
    ahead: Set[int]


def plan_delivery(rows: Iterable[Delivery], cursor: int, ahead: Set[int], since_ms: int = 0) -> Plan:
    """The first pending event of each series, in ``seq`` order.

    ``rows`` are the events after ``cursor`` in ``seq`` order; ``ahead`` the ones among them
    already delivered; events older than ``since_ms`` (posted before the scraper's first scrape,
    committed after it) are passed over. The cursor stops before the first deferred event;
    delivered events past it join ``ahead``.
    """
    seen: Set[str] = set()
    deliveries: List[Delivery] = []
    first_deferred: Optional[int] = None
    last = cursor
    for row in rows:
        last = row.seq
        if row.seq in ahead or row.time_ms < since_ms:
            continue
        if row.key in seen:
            if first_deferred is None:
                first_deferred = row.seq
            continue
        seen.add(row.key)
        deliveries.append(row)
    new_cursor = last if first_deferred is None else first_deferred - 1
    new_ahead = {s for s in ahead if s > new_cursor}
    new_ahead.update(d.seq for d in deliveries if d.seq > new_cursor)
    return Plan(deliveries, new_cursor, new_ahead)


def trim_cursor(pending_seqs: List[int], max_pending: int) -> Tuple[Optional[int], int]:
    """Where a cursor must move so that at most ``max_pending`` of ``pending_seqs`` (in order,
    ahead ones excluded) remain, and how many that drops: ``(None, 0)`` when under the limit."""
    excess = len(pending_seqs) - max_pending
    if excess <= 0:
        return None, 0
    return pending_seqs[excess - 1], excess


def order_times(rows: Iterable[Tuple[int, str, float]], latest: Dict[str, int]) -> List[Tuple[int, str, float]]:
    """``(time_ms, key, value)`` rows with each series' times strictly increasing; ``latest``
    (series -> newest time so far) is read and updated."""
    out = []
    for time_ms, key, value in rows:
        last = latest.get(key)
        if last is not None and time_ms <= last:
            time_ms = last + 1
        latest[key] = time_ms
        out.append((time_ms, key, value))
    return out


# --------------------------------------------------------------------------- memory


@dataclass
class _Scraper:
    cursor: int
    last_ms: int
    since_ms: int
    ahead: Set[int] = field(default_factory=set)


class MemoryQueue:
    """The queue in this process only: for tests and single-process embedding (gunicorn workers
    would each have their own, and a restart loses it)."""

    def __init__(self, limits: QueueLimits, reporter: Reporter) -> None:
        self.limits = limits
        self.reporter = reporter
        self._lock = threading.Lock()
        self._events: List[Delivery] = []  # seq-ordered; seqs only ever removed from the front
        self._seqs: List[int] = []
        self._last_seq = 0
        self._scrapers: Dict[str, _Scraper] = {}
        self._series: Dict[str, int] = {}

    def post(self, key: str, value: float, time_ms: int) -> None:
        with self._lock:
            ((time_ms, key, value),) = order_times([(time_ms, key, value)], self._series)
            self._last_seq += 1
            self._events.append(Delivery(self._last_seq, time_ms, key, value))
            self._seqs.append(self._last_seq)
            if self._last_seq % self.limits.maintain_every == 0:
                self._maintain(time_ms)

    def _after(self, cursor: int) -> List[Delivery]:
        return self._events[bisect.bisect_right(self._seqs, cursor):]

    def _pending(self, scraper: _Scraper) -> int:
        return len(self._seqs) - bisect.bisect_right(self._seqs, scraper.cursor) - len(scraper.ahead)

    def scrape(self, scraper: str, now_ms: int, consume: bool = True) -> ScrapeResult:
        with self._lock:
            if not consume:
                return self._peek(scraper)
            self._forget_silent(now_ms)
            self._trim()
            result = ScrapeResult(pending={sid: self._pending(s) for sid, s in self._scrapers.items()})
            state = self._scrapers.get(scraper)
            if state is None:
                if len(self._scrapers) >= self.limits.max_scrapers:
                    result.status = "refused"
                    self.reporter.refused(scraper, self.limits.max_scrapers)
                    self._gc(now_ms)
                    return result
                since = int(now_ms - self.limits.backfill * 1000)
                state = self._scrapers[scraper] = _Scraper(self._register_cursor(since), now_ms, since)
                result.status = "new"
                self._trim_one(scraper, state)
            plan = plan_delivery(self._after(state.cursor), state.cursor, state.ahead, state.since_ms)
            state.cursor, state.ahead, state.last_ms = plan.cursor, plan.ahead, now_ms
            result.deliveries = plan.deliveries
            self._gc(now_ms)
            return result

    def _peek(self, scraper: str) -> ScrapeResult:
        result = ScrapeResult(pending={sid: self._pending(s) for sid, s in self._scrapers.items()}, status="peek")
        state = self._scrapers.get(scraper)
        if state is not None:
            result.deliveries = plan_delivery(self._after(state.cursor), state.cursor, state.ahead,
                                              state.since_ms).deliveries
        return result

    def maintain(self, now_ms: int) -> None:
        with self._lock:
            self._maintain(now_ms)

    def _maintain(self, now_ms: int) -> None:
        self._forget_silent(now_ms)
        self._trim()
        self._gc(now_ms)
        for key in [k for k, t in self._series.items() if t < now_ms - SERIES_MEMORY_MS]:
            del self._series[key]

    def _register_cursor(self, since_ms: int) -> int:
        if self.limits.backfill > 0:
            for event in self._events:
                if event.time_ms >= since_ms:
                    return event.seq - 1
        return self._last_seq

    def _forget_silent(self, now_ms: int) -> None:
        limit = self.limits.scraper_timeout * 1000
        for sid, state in list(self._scrapers.items()):
            if now_ms - state.last_ms > limit:
                lost = self._pending(state)
                del self._scrapers[sid]
                self.reporter.forgotten(sid, (now_ms - state.last_ms) / 1000)
                self.reporter.dropped(TIMEOUT_REASON, lost, sid, "scraper forgotten with events pending")

    def _trim(self) -> None:
        for sid, state in self._scrapers.items():
            self._trim_one(sid, state)

    def _trim_one(self, sid: str, state: _Scraper) -> None:
        if self._pending(state) <= self.limits.max_pending:
            return
        pending = [e.seq for e in self._after(state.cursor) if e.seq not in state.ahead]
        cursor, dropped = trim_cursor(pending, self.limits.max_pending)
        if cursor is not None:
            state.cursor = cursor
            state.ahead = {s for s in state.ahead if s > cursor}
            self.reporter.dropped(MAX_PENDING_REASON, dropped, sid,
                                  f"over max_pending={self.limits.max_pending}, oldest first")

    def _gc(self, now_ms: int) -> None:
        upto = min((s.cursor for s in self._scrapers.values()), default=self._last_seq)
        cut = bisect.bisect_right(self._seqs, upto)
        if self.limits.backfill > 0:  # keep what a new scraper may still backfill
            cutoff = now_ms - self.limits.backfill * 1000
            keep_after = self._last_seq - self.limits.max_pending
            cut = next((i for i in range(cut) if self._events[i].time_ms >= cutoff and self._seqs[i] > keep_after),
                       cut)
        if cut:
            del self._events[:cut]
            del self._seqs[:cut]

    def flush(self, timeout: Optional[float] = None) -> bool:
        return True  # nothing is buffered

    def stored(self) -> int:
        """Events held (what bounds memory)."""
        with self._lock:
            return len(self._events)

    def close(self, timeout: Optional[float] = None) -> None:
        pass


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS oneshot_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, even once emptied
    time_ms INTEGER NOT NULL,
    series  TEXT NOT NULL,                      -- canonical JSON of the labels
    value   REAL                                -- NULL stands for NaN (SQLite stores NaN as NULL)
);
CREATE TABLE IF NOT EXISTS oneshot_scrapers (
    id             TEXT PRIMARY KEY,
    cursor         INTEGER NOT NULL,            -- every event with seq <= cursor is done
    last_scrape_ms INTEGER NOT NULL,
    since_ms       INTEGER NOT NULL             -- first scrape minus backfill: older events are not its
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oneshot_ahead (      -- delivered although after the cursor
    scraper TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (scraper, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oneshot_series (     -- newest event time per recent series
    series  TEXT PRIMARY KEY,
    last_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SQLiteQueue:
    """The queue in the state database: every gunicorn worker of a host sees the same events and
    cursors, and both survive restarts. A scrape is one ``BEGIN IMMEDIATE`` transaction, so two
    workers can never hand the same event to the same scraper.

    Posts are group-committed, as the SQLite event sink does: a writer thread per process commits
    them at most ``flush_interval`` (50 ms) apart, one transaction per batch rather than one per
    request, which is what keeps ``POST /event`` close to a bare Falcon app. A scrape first
    commits its own process's posts; another worker's reach it within the interval (at the next
    scrape at worst, still exactly once). A graceful stop commits everything (:meth:`close`);
    a crash loses at most the last interval.
    """

    def __init__(self, db, limits: QueueLimits, reporter: Reporter, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.db = db
        self.limits = limits
        self.reporter = reporter
        db.ensure_schema(_SCHEMA)
        # Retries while the database is locked; the bounded queue is the limit, and a full queue
        # makes post() write inline (slower, never lossy).
        self.writer = BatchWorker(self._write, max_queue=100_000, batch_size=5000, max_latency=flush_interval,
                                  max_retries=None, backoff=0.05, max_backoff=1.0, name="statskit-oneshot-writer")

    def post(self, key: str, value: float, time_ms: int) -> None:
        row = (time_ms, key, value)
        # submit(), not submit_many(): it wakes the writer thread only when the queue stops being
        # empty, not on every post (a wake-up per request cost a third of the POST rate).
        if not self.writer.submit(row):
            # Queue full or closed: write inline, slower, never lossy. Still locked past the busy
            # timeout, the post is refused with a 503 (nothing stored) for the client to retry.
            try:
                self._write([row], retryable=False)
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"one-shot store busy: {exc}") from exc

    def _write(self, rows: List[Tuple[int, str, float]], retryable: bool = True) -> None:
        try:
            with self.db.transaction() as conn:
                keys = {key for _, key, _ in rows}
                latest = dict(_select_in(conn, "SELECT series, last_ms FROM oneshot_series WHERE series IN", keys))
                rows = order_times(rows, latest)
                conn.executemany("INSERT INTO oneshot_series (series, last_ms) VALUES (?, ?) ON CONFLICT (series) "
                                 "DO UPDATE SET last_ms = excluded.last_ms",
                                 [(key, latest[key]) for key in keys])
                before = _last_seq(conn)
                conn.executemany("INSERT INTO oneshot_events (time_ms, series, value) VALUES (?, ?, ?)",
                                 [(t, key, None if math.isnan(v) else v) for t, key, v in rows])
                every = self.limits.maintain_every
                if (before + len(rows)) // every > before // every:
                    # "Now" is the newest post's time: the clock the rest of the queue runs on.
                    self._maintain(conn, max(t for t, _, _ in rows))
        except sqlite3.OperationalError as exc:  # locked/busy beyond busy_timeout: try again
            if not retryable:
                raise
            raise RetryableError(str(exc)) from exc

    def scrape(self, scraper: str, now_ms: int, consume: bool = True) -> ScrapeResult:
        self.writer.flush(1.0)  # this process's posts first: a worker always sees its own
        if not consume:
            return self._peek(scraper)
        with self.db.transaction() as conn:
            self._forget_silent(conn, now_ms)
            last_seq = _last_seq(conn)
            scrapers = self._scrapers(conn)
            self._trim(conn, scrapers, last_seq)
            result = ScrapeResult(pending={sid: self._pending(conn, cursor, ahead)
                                           for sid, (cursor, ahead, _) in scrapers.items()})
            state = scrapers.get(scraper)
            if state is None:
                if len(scrapers) >= self.limits.max_scrapers:
                    result.status = "refused"
                    self.reporter.refused(scraper, self.limits.max_scrapers)
                    self._gc(conn, now_ms, scrapers, last_seq)
                    return result
                since = int(now_ms - self.limits.backfill * 1000)
                cursor = self._register_cursor(conn, since, last_seq)
                conn.execute("INSERT INTO oneshot_scrapers (id, cursor, last_scrape_ms, since_ms) VALUES (?, ?, ?, ?)",
                             (scraper, cursor, now_ms, since))
                result.status = "new"
                fresh = {scraper: (cursor, 0, since)}
                self._trim(conn, fresh, last_seq)  # a backfill longer than max_pending
                state = scrapers[scraper] = fresh[scraper]
            cursor, ahead_count, since = state
            ahead = self._ahead(conn, scraper) if ahead_count else set()
            plan = plan_delivery(self._rows(conn, cursor), cursor, ahead, since)
            conn.execute("UPDATE oneshot_scrapers SET cursor = ?, last_scrape_ms = ? WHERE id = ?",
                         (plan.cursor, now_ms, scraper))
            if ahead or plan.ahead:
                conn.execute("DELETE FROM oneshot_ahead WHERE scraper = ? AND seq <= ?", (scraper, plan.cursor))
                conn.executemany("INSERT OR IGNORE INTO oneshot_ahead (scraper, seq) VALUES (?, ?)",
                                 [(scraper, seq) for seq in plan.ahead - ahead])
            scrapers[scraper] = (plan.cursor, len(plan.ahead), since)
            self._gc(conn, now_ms, scrapers, last_seq)
            result.deliveries = plan.deliveries
            return result

    def _peek(self, scraper: str) -> ScrapeResult:
        """HEAD /metrics: what a GET would hand out, without changing anything."""
        conn = self.db.connection()
        scrapers = self._scrapers(conn)
        result = ScrapeResult(pending={sid: self._pending(conn, c, a) for sid, (c, a, _) in scrapers.items()},
                              status="peek")
        if scraper in scrapers:
            cursor, ahead_count, since = scrapers[scraper]
            ahead = self._ahead(conn, scraper) if ahead_count else set()
            result.deliveries = plan_delivery(self._rows(conn, cursor), cursor, ahead, since).deliveries
        return result

    def maintain(self, now_ms: int) -> None:
        self.writer.flush(1.0)
        with self.db.transaction() as conn:
            self._maintain(conn, now_ms)

    def _maintain(self, conn: sqlite3.Connection, now_ms: int) -> None:
        self._forget_silent(conn, now_ms)
        last_seq = _last_seq(conn)
        scrapers = self._scrapers(conn)
        self._trim(conn, scrapers, last_seq)
        self._gc(conn, now_ms, scrapers, last_seq)
        conn.execute("DELETE FROM oneshot_series WHERE last_ms < ?", (now_ms - SERIES_MEMORY_MS,))

    # -- pieces, each run inside the caller's transaction

    @staticmethod
    def _scrapers(conn: sqlite3.Connection) -> Dict[str, Tuple[int, int, int]]:
        """id -> (cursor, number of ahead rows, since_ms)."""
        rows = conn.execute("SELECT s.id, s.cursor, (SELECT COUNT(*) FROM oneshot_ahead a WHERE a.scraper = s.id), "
                            "s.since_ms FROM oneshot_scrapers s")
        return {sid: (cursor, ahead, since) for sid, cursor, ahead, since in rows}

    @staticmethod
    def _ahead(conn: sqlite3.Connection, scraper: str) -> Set[int]:
        return {seq for (seq,) in conn.execute("SELECT seq FROM oneshot_ahead WHERE scraper = ?", (scraper,))}

    @staticmethod
    def _rows(conn: sqlite3.Connection, cursor: int) -> List[Delivery]:
        cur = conn.execute("SELECT seq, time_ms, series, value FROM oneshot_events WHERE seq > ? ORDER BY seq",
                           (cursor,))
        return [Delivery(seq, time_ms, series, math.nan if value is None else value)
                for seq, time_ms, series, value in cur]

    @staticmethod
    def _pending(conn: sqlite3.Connection, cursor: int, ahead: int) -> int:
        (after,) = conn.execute("SELECT COUNT(*) FROM oneshot_events WHERE seq > ?", (cursor,)).fetchone()
        return after - ahead

    def _register_cursor(self, conn: sqlite3.Connection, since_ms: int, last_seq: int) -> int:
        if self.limits.backfill > 0:
            (first,) = conn.execute("SELECT MIN(seq) FROM oneshot_events WHERE time_ms >= ?", (since_ms,)).fetchone()
            if first is not None:
                return first - 1
        return last_seq

    def _forget_silent(self, conn: sqlite3.Connection, now_ms: int) -> None:
        deadline = int(now_ms - self.limits.scraper_timeout * 1000)
        stale = conn.execute("SELECT id, cursor, last_scrape_ms FROM oneshot_scrapers WHERE last_scrape_ms < ?",
                             (deadline,)).fetchall()
        for sid, cursor, last_ms in stale:
            (ahead,) = conn.execute("SELECT COUNT(*) FROM oneshot_ahead WHERE scraper = ?", (sid,)).fetchone()
            lost = self._pending(conn, cursor, ahead)
            conn.execute("DELETE FROM oneshot_scrapers WHERE id = ?", (sid,))
            conn.execute("DELETE FROM oneshot_ahead WHERE scraper = ?", (sid,))
            self.reporter.forgotten(sid, (now_ms - last_ms) / 1000)
            self.reporter.dropped(TIMEOUT_REASON, lost, sid, "scraper forgotten with events pending")

    def _trim(self, conn: sqlite3.Connection, scrapers: Dict[str, Tuple[int, int, int]], last_seq: int) -> None:
        """Drop the oldest pending events of every scraper over ``max_pending`` (updates ``scrapers``)."""
        limit = self.limits.max_pending
        for sid, (cursor, ahead_count, since) in list(scrapers.items()):
            # seqs after a cursor are never deleted, so last_seq - cursor - ahead is the backlog
            # (an upper bound were there ever gaps): read the exact list only when it may be over.
            if last_seq - cursor - ahead_count <= limit:
                continue
            ahead = self._ahead(conn, sid) if ahead_count else set()
            pending = [seq for (seq,) in conn.execute(
                "SELECT seq FROM oneshot_events WHERE seq > ? ORDER BY seq", (cursor,)) if seq not in ahead]
            new_cursor, dropped = trim_cursor(pending, limit)
            if new_cursor is None:
                continue
            conn.execute("UPDATE oneshot_scrapers SET cursor = ? WHERE id = ?", (new_cursor, sid))
            conn.execute("DELETE FROM oneshot_ahead WHERE scraper = ? AND seq <= ?", (sid, new_cursor))
            scrapers[sid] = (new_cursor, sum(1 for s in ahead if s > new_cursor), since)
            self.reporter.dropped(MAX_PENDING_REASON, dropped, sid, f"over max_pending={limit}, oldest first")

    def _gc(self, conn: sqlite3.Connection, now_ms: int, scrapers: Dict[str, Tuple[int, int, int]],
            last_seq: int) -> None:
        upto = min((cursor for cursor, _, _ in scrapers.values()), default=last_seq)
        if self.limits.backfill > 0:  # keep what a new scraper may still backfill
            cutoff = int(now_ms - self.limits.backfill * 1000)
            conn.execute("DELETE FROM oneshot_events WHERE seq <= ? AND (time_ms < ? OR seq <= ?)",
                         (upto, cutoff, last_seq - self.limits.max_pending))
        else:
            conn.execute("DELETE FROM oneshot_events WHERE seq <= ?", (upto,))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Commit this process's buffered posts now."""
        return self.writer.flush(timeout)

    def stored(self) -> int:
        """Events held in the table (what bounds its size), this process's unwritten ones included."""
        self.writer.flush(1.0)
        return int(self.db.connection().execute("SELECT COUNT(*) FROM oneshot_events").fetchone()[0])

    def close(self, timeout: Optional[float] = None) -> None:
        """Commit every post still buffered (graceful stop). The state store owns the connection."""
        if not self.writer.close(timeout):
            log.error("one-shot queue stopped with %d event(s) not stored", len(self.writer))


def _last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'oneshot_events'").fetchone()
    return int(row[0]) if row else 0


def _select_in(conn: sqlite3.Connection, sql: str, keys: Set[str]) -> List[tuple]:
    keys_list, out = list(keys), []
    for i in range(0, len(keys_list), 500):  # SQLite caps bound parameters per statement
        chunk = keys_list[i:i + 500]
        out += conn.execute(f"{sql} ({','.join('?' * len(chunk))})", chunk).fetchall()
    return out


# --------------------------------------------------------------------------- choice


def open_queue(state: StateStore, limits: QueueLimits, reporter: Reporter) -> OneShotQueue:
    """SQLite when the state store is SQLite (same database), else in memory."""
    from .memory import MemoryState
    from .sqlite import SQLiteState

    if isinstance(state, SQLiteState):
        return SQLiteQueue(state.db, limits, reporter)
    if not isinstance(state, MemoryState):
        log.warning("one-shot events: no shared queue for %s; using one in memory per process "
                    "(each gunicorn worker then has its own scrapers and events)", type(state).__name__)
    return MemoryQueue(limits, reporter)
