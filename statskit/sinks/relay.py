"""Sinks fed from the durable event log, each from its own cursor.

A request is acknowledged once its events are committed to the log (the SQLite event table,
:class:`~statskit.sinks.sqlite.SQLiteSink`). Sinks that write somewhere else (InfluxDB, stdout,
a third party's) do not get the events from the request: a :class:`Relay` reads the log after
the sink's cursor, hands the events to the sink, and moves the cursor once the sink says they
are stored (the cursor's commit runs on a thread of its own while the next batch is sent). So
a crash, a restart or an outage of the sink loses nothing acknowledged: the relay starts again
from the cursor. Delivery is at least once: what was sent but not yet confirmed when a process
died is sent again (InfluxDB stores a re-sent point once, since it has
the same series and time; a stdout line may repeat, with its ``event_id``).

One process of a host runs each relay (an exclusive ``flock`` beside the database); when it
dies, another worker takes over within ``LOCK_RETRY`` seconds.

A sink is fed from the log when it has ``prepare`` and ``send`` (a :class:`Follower`):

    >>> import os, tempfile
    >>> from statskit.state.sqlite import SQLiteDB
    >>> from statskit.sinks.sqlite import SQLiteSink
    >>> from statskit.state.memory import MemoryState
    >>> from statskit.events import parse_items
    >>> class Printer:
    ...     name, relay_batch, relay_interval = "printer", 100, 0.01
    ...     def prepare(self, events): return [e.event for e in events]
    ...     def send(self, batch): print(batch)
    >>> log = SQLiteSink(SQLiteDB(os.path.join(tempfile.mkdtemp(), "log.db")))
    >>> relay = Relay(Printer(), log, MemoryState())
    >>> log.emit(parse_items([{"uid": "u1", "event": "signup"}]))
    >>> relay.drain(5.0)
    ['signup']
    True
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

from prometheus_client.core import GaugeMetricFamily, Metric

from ..errors import RetryableError
from ..events import Event
from ..hostlock import HostLock
from ..logs import RateLimit
from ..process import pid

log = logging.getLogger("statskit.sinks.relay")

LOCK_RETRY = 1.0  # seconds between two tries to become the process that runs a relay
MAX_BACKOFF = 30.0
QUIET_POLL = 0.05  # seconds between two looks at the log while a relay waits for a batch to fill
MAX_RETRY_AFTER = 600.0


@runtime_checkable
class Follower(Protocol):
    """A sink fed from the durable log: ``send(prepare(events))`` returns once they are stored.

    ``send`` raises :class:`~statskit.errors.RetryableError` when the backend is down: the same
    batch is sent again later (it may remove from the list what it did store first). Any other
    exception gives the batch up (counted as ``rejected``).

    Optional: ``prepare_stored(rows)`` takes the log's rows as stored instead of Events
    (``(seq, time_ns, JSON text)``: ``SQLiteSink.read_stored_after``), for a sink that formats
    them more cheaply than it could decode them (InfluxDB's lines);
    ``send_at(batch, seq)`` stores the batch and the cursor together (exactly once);
    ``follows_log = False`` has the pipeline give it events in the request instead;
    ``needs_log = False`` makes no outbox for it alone; ``scraped = True`` has a scrape of
    ``/metrics`` let its relay catch up first (it stores what /metrics shows)."""

    name: str
    relay_batch: int  # events per delivery at most
    relay_interval: float  # seconds between deliveries while the log has less than a batch

    def prepare(self, events: Sequence[Event]) -> List[Any]: ...  # may run while the last send is in flight

    def send(self, batch: List[Any]) -> None: ...


class Relay:
    """Feeds one :class:`Follower` from ``log`` (see the module docstring)."""

    def __init__(self, sink: Follower, log: Any, state: Any, *, max_backlog: int = 1_000_000,
                 lock_retry: float = LOCK_RETRY, name: Optional[str] = None,
                 lock: Optional[HostLock] = None) -> None:
        self.sink = sink
        # The cursor's (and lock's, and metrics') name: the sink's, unless it follows two logs.
        self.name = name or sink.name
        self.log = log
        self.state = state
        self.max_backlog = max_backlog
        self.lock_retry = lock_retry
        self.batch = max(1, int(getattr(sink, "relay_batch", 1000)))
        self.interval = float(getattr(sink, "relay_interval", 0.1))
        # ``lock``: one the relays of a log share (the pipeline's), so that one process runs them
        # all and they share its decoded rows (SQLiteSink.read_after); its owner releases it.
        self.lock = lock or HostLock(f"{log.db.path}.relay-{self.name}.lock")
        self._own_lock = lock is None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._mutex = threading.Lock()  # one delivery at a time: the thread's, or drain()'s
        self._failing = False
        self._log_failure = RateLimit(10.0)
        self._log_cursor_failure = RateLimit(10.0)
        self._ahead: Optional[Tuple[int, "Future[Any]"]] = None  # (after, the batch after it)
        # Two helper threads, each with its own SQLite connection for the relay's life in this
        # process: one reads and prepares the next batch, one commits the cursor (in outbox mode
        # also trimming the log), both while a batch is sent.
        self._threads: Dict[str, Tuple[int, ThreadPoolExecutor]] = {}
        # What this process's sends have confirmed (pid, seq): the cursor in the log follows it.
        self._confirmed = (0, 0)
        self._storing = 0  # the pid whose cursor thread has a commit of it to do
        log.follow(self.name)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or self._thread.pid != pid():  # type: ignore[attr-defined]
            thread = threading.Thread(target=self._run, name=f"statskit-relay-{self.name}", daemon=True)
            thread.pid = pid()  # type: ignore[attr-defined]
            self._thread = thread
            thread.start()

    def close(self, timeout: Optional[float] = None) -> bool:
        """Stop the thread, then deliver what the log holds (if this process runs the relay) for
        at most ``timeout`` seconds. What is left stays in the log for the next start."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and getattr(thread, "pid", 0) == pid():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        drained = self.drain(left) if self.lock.held() else True
        for owner, executor in self._threads.values():
            if owner == pid():
                # A read ahead or a cursor commit still running must end before close returns:
                # the caller closes the database next, and closing a connection that another
                # thread is using crashes the process (a segfault in sqlite3, seen in CI).
                executor.shutdown(wait=True)
        self._threads.clear()
        self._store_cursor()  # what was confirmed, even when the drain ran out of time
        if self._own_lock:
            self.lock.release()
        return drained

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Deliver until the log's end; False when ``timeout`` ran out first (or another process
        runs this relay)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.lock.take():
            return False
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not self._mutex.acquire(timeout=-1 if left is None else left):
                return False  # the thread is stuck in a write
            try:
                moved = self._deliver_once(give_up_at=deadline)
            finally:
                self._mutex.release()
            if moved is None:
                return False  # failing, and out of time
            if moved < self.batch and self._cursor() >= self.log.last_seq():
                self._store_cursor()
                return True

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.lock.take():
                self._stop.wait(self.lock_retry)
                continue
            try:
                with self._mutex:
                    moved = self._deliver_once(give_up_at=None)
            except Exception:  # the log itself failed (disk gone, locked past its timeout): try later
                log.exception("relay to %s: reading the event log failed", self.name)
                moved = 0
            if moved is None or moved < self.batch:
                self._wait_for_batch()

    def _wait_for_batch(self) -> None:
        """Wait until the next batch is worth sending: a full one is in the log, or the log has
        stopped growing (a burst is over: its end is not held back), or ``interval`` has passed.
        The log's end is looked at every ``QUIET_POLL`` seconds (one query on its primary key)."""
        deadline = time.monotonic() + self.interval
        cursor = newest = -1
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(QUIET_POLL, left)):
                self._wake.clear()
                return
            try:
                if cursor < 0:
                    cursor = self._cursor()  # only this process moves it meanwhile
                last, newest = newest, self.log.last_seq()
            except Exception:  # the log failed: _deliver_once says why, after the interval
                continue
            waiting = newest - cursor
            if waiting >= self.batch or (waiting > 0 and newest == last):
                return

    def _deliver_once(self, give_up_at: Optional[float]) -> Optional[int]:
        """Send one batch after the cursor and move the cursor. How many events it moved past,
        or None when the sink kept failing until ``give_up_at`` (or the relay is stopping)."""
        cursor = self._cursor()
        own = getattr(self.sink, "position", None)
        if own is not None:  # the sink keeps its cursor with its data: it knows best what it has
            cursor = max(cursor, own() or 0)
        cursor = self._bounded(cursor)
        ready = self._ready(cursor)
        if ready is None:
            return 0
        upto, count, batch = ready
        if count == self.batch:  # more waiting: read and prepare the next batch while this one is sent
            self._ahead = self._read_ahead(upto)
        if not self._send(batch, count, upto, give_up_at):
            return None
        self._confirm(upto)
        return count

    # -- the cursor ------------------------------------------------------------------------

    def _cursor(self) -> int:
        """Where the next batch starts: the log's cursor, or what this process's sends have
        confirmed since (its commit may still be on the way)."""
        owner, confirmed = self._confirmed
        cursor = self.log.cursor(self.name)
        return max(cursor, confirmed) if owner == pid() else cursor

    def _confirm(self, upto: int) -> None:
        """The sink has every event up to ``upto``: move the cursor there, on the cursor thread
        (a write transaction, in outbox mode one that trims the log, while the next batch is
        already being sent). Confirmations that come while one commit waits share it."""
        self._confirmed = (pid(), upto)
        if self._storing == pid():
            return
        self._storing = pid()
        if self._submit("cursor", self._store_cursor) is None:  # shut down (interpreter exit): store it here
            self._store_cursor()

    def _store_cursor(self) -> None:
        """Commit the confirmed position (never back; a failure is retried by the next one)."""
        self._storing = 0  # before reading the position: a confirmation from now on submits again
        owner, confirmed = self._confirmed
        if owner != pid() or confirmed <= 0:
            return
        try:
            self.log.set_cursor(self.name, confirmed)
        except Exception as exc:  # the log cannot write now (locked, disk full): the next one tries again
            if self._log_cursor_failure.allow("cursor"):
                log.error("relay to %s: storing the cursor failed (%s: %s); the events after the stored one are "
                          "sent again if this process stops before it works (%d more failures not logged)",
                          self.name, exc.__class__.__name__, exc, self._log_cursor_failure.suppressed("cursor"))

    def _prepared(self, after: int) -> Optional[Tuple[int, int, List[Any]]]:
        """The next batch after ``after``: (its last number, how many events, the sink's form)."""
        prepare_stored = getattr(self.sink, "prepare_stored", None)
        if prepare_stored is not None and hasattr(self.log, "read_stored_after"):
            stored = self.log.read_stored_after(after, self.batch)
            return (stored[-1][0], len(stored), prepare_stored(stored)) if stored else None
        rows = self.log.read_after(after, self.batch)
        if not rows:
            return None
        return rows[-1][0], len(rows), self.sink.prepare([event for _, event in rows])

    def _submit(self, kind: str, call: Callable[..., Any], *args: Any) -> "Optional[Future[Any]]":
        """Run ``call`` on this relay's ``kind`` thread in this process; None once shut down."""
        owner, executor = self._threads.get(kind, (0, None))
        if executor is None or owner != pid():
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"statskit-relay-{self.name}-{kind}")
            self._threads[kind] = (pid(), executor)
        try:
            return executor.submit(call, *args)
        except RuntimeError:  # shut down (interpreter exit)
            return None

    def _read_ahead(self, after: int) -> Optional[Tuple[int, "Future[Any]"]]:
        """Read and prepare the batch after ``after`` on the reader thread (read it when it is
        needed if that thread is gone)."""
        future = self._submit("ahead", self._prepared, after)
        return None if future is None else (after, future)

    def _ready(self, cursor: int) -> Optional[Tuple[int, int, List[Any]]]:
        """The batch after ``cursor``: the one read ahead when it starts there, else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and self._threads.get("ahead", (0,))[0] == pid():
            after, future = ahead
            try:
                result = future.result()
            except Exception:  # read again here, where a failure is reported
                result = None
            else:
                if after == cursor:
                    return result
        return self._prepared(cursor)

    def _send(self, batch: List[Any], count: int, upto: int, give_up_at: Optional[float]) -> bool:
        send_at = getattr(self.sink, "send_at", None)
        attempt = 0
        while True:
            try:
                if send_at is not None:
                    send_at(batch, upto)  # stores the batch and its cursor in one transaction
                else:
                    self.sink.send(batch)
            except RetryableError as exc:
                attempt += 1
                delay = (min(exc.retry_after, MAX_RETRY_AFTER) if exc.retry_after is not None
                         else random.uniform(0, min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1))))
                self._failed(exc)
                if give_up_at is None:  # the thread: until it works, or the relay stops
                    if self._stop.wait(delay):
                        return False
                elif time.monotonic() + delay > give_up_at:  # drain(): within its time
                    return False
                else:
                    time.sleep(delay)
                continue
            except Exception as exc:  # a bug, not the backend: give the batch up and say why
                self.state.incr("statskit_sink_dropped", {"sink": self.name, "reason": "rejected"}, count)
                log.error("relay to %s: gave up %d events: %s: %s", self.name, count,
                          exc.__class__.__name__, exc, exc_info=True)
                return True
            if self._failing:
                self._failing = False
                log.warning("relay to %s: writes work again", self.name)
            return True

    def _failed(self, exc: Exception) -> None:
        self._failing = True
        if self._log_failure.allow("failed"):
            log.warning("relay to %s: write failed, retrying (%s); %d events behind (%d more failures not logged)",
                        self.name, exc, self.backlog(), self._log_failure.suppressed("failed"))

    def _bounded(self, cursor: int) -> int:
        """The cursor, moved on when the sink is more than ``max_backlog`` events behind: the
        oldest are skipped, counted and logged, so a sink down for days cannot fill the disk."""
        last = self.log.last_seq()
        if last - cursor <= self.max_backlog:
            return cursor
        target = last - self.max_backlog
        skipped = self.log.count_between(cursor, target)
        self.log.set_cursor(self.name, target)
        if skipped:
            self.state.incr("statskit_sink_dropped", {"sink": self.name, "reason": "backlog_full"}, skipped)
            log.error("relay to %s: %d events behind, over [sinks] max_backlog = %d: skipped the oldest %d",
                      self.name, last - cursor, self.max_backlog, skipped)
        return target

    def backlog(self) -> int:
        """Events in the log this sink has not confirmed (a gauge in /metrics)."""
        return max(0, self.log.last_seq() - self._cursor())


class BacklogMetrics:
    """``statskit_sink_backlog_events{sink}``: events in the log a relay's sink has not confirmed."""

    def __init__(self, relays: Sequence[Relay]) -> None:
        self.relays = list(relays)

    def collect(self, scrape: Any) -> Iterator[Metric]:
        family = GaugeMetricFamily("statskit_sink_backlog_events",
                                   "Events in the durable log a sink fed from it has not confirmed stored.",
                                   labels=["sink"])
        for relay in self.relays:
            family.add_metric([relay.name], relay.backlog())
        yield family
