"""Panel payloads are journaled before their 201: ``POST /write`` answers once its payload is
committed to a SQLite journal on the host (group commit, as the event store's); the process that
took it applies its payloads to the sessions in arrival order, deleting what it applied (so a
scrape of that worker sees its own payloads at once, as before the journal).

So a crash (kill -9 included) loses no acknowledged payload: each process holds a lock file
while it lives, and another process adopts the rows of one whose lock is free (dead) and
applies them. The shared session store being down (Redis restarting) does not stop the
route either: payloads wait in the journal, on disk, until it is back. A payload whose
application was done but not yet deleted when the process died is applied again at the restart
(at least once): a heartbeat applied twice changes nothing, since a session only moves forward
to a later payload time.

    >>> import os, tempfile
    >>> from statskit.state.sqlite import SQLiteDB
    >>> applied = []
    >>> journal = PayloadJournal(SQLiteDB(os.path.join(tempfile.mkdtemp(), "j.db")), applied.extend, decode=bytes.decode)
    >>> journal.append(b"payload", 1.5)
    >>> journal.flush(5.0)
    True
    >>> applied
    [('payload', 1.5)]
"""
from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import RetryableError
from ..hostlock import HostLock
from ..logs import RateLimit
from ..state.sqlite_writer import CommitBeforeReturn

log = logging.getLogger("statskit.grafana.journal")

SCHEMA = """
CREATE TABLE IF NOT EXISTS grafana_journal (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    owner    TEXT NOT NULL,     -- the process (journal instance) that took it and applies it
    received REAL NOT NULL,     -- when statskit got it (the session clock's "now")
    body     BLOB NOT NULL      -- the payload as posted (it was valid)
)
"""

Item = Tuple[Any, float]  # (decoded payload, received)
ADOPT_EVERY = 5.0  # seconds between two looks for rows of processes that died
MAX_DECODED = 10_000  # payloads kept decoded for the thread that applies them (beyond: decoded again)
_MISSING = object()


class PayloadJournal:
    """``append`` commits a payload; this process's thread applies it (and adopts the dead's)."""

    def __init__(self, db: Any, apply: Callable[[List[Item]], None], *, decode: Callable[[bytes], Any],
                 batch: int = 1000, interval: float = 0.05, commit_wait: float = 0.002) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)
        self.apply = apply
        self.decode = decode
        self.batch = batch
        self.interval = interval
        self.group: CommitBeforeReturn[Tuple[str, float, bytes]] = CommitBeforeReturn(db, self._insert,
                                                                                       wait=commit_wait)
        self.owner = uuid.uuid4().hex[:16]
        self.lock = HostLock(self._lock_path(self.owner))  # held while this journal lives
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._thread_lock = threading.Lock()
        self._failures = RateLimit(10.0)
        # The payloads append's callers decoded already, by row (received, body): applying them
        # does not decode them again. Rows of other processes (adopted) are decoded.
        self._decoded: Dict[Tuple[float, bytes], Any] = {}

    def _lock_path(self, owner: str) -> str:
        return f"{self.db.path}.journal-{owner}.lock"

    def _insert(self, conn: sqlite3.Connection, rows: List[Tuple[str, float, bytes]]) -> None:
        conn.executemany("INSERT INTO grafana_journal (owner, received, body) VALUES (?, ?, ?)", rows)

    def append(self, body: bytes, received: float, decoded: Any = _MISSING) -> None:
        """Return once the payload is committed (raises when it cannot be: nothing stored).

        ``decoded``: ``decode(body)``, when the caller has it (kept for the thread that applies
        the row). The thread is not woken: it applies what arrived every ``interval`` seconds
        (waking it costs more than a request here, and each wake applied a payload or two)."""
        if self._thread is None:
            self.start()
        key = (received, body)
        if decoded is not _MISSING and len(self._decoded) < MAX_DECODED:
            self._decoded[key] = decoded  # before the commit: the thread may apply the row at once
        try:
            self.group.commit([(self.owner, received, body)])
        except BaseException:
            self._decoded.pop(key, None)
            raise

    def start(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                self.lock.take()  # a new name: nobody else holds it
                self._thread = threading.Thread(target=self._run, name="statskit-grafana-journal", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        """This process's payloads not applied yet."""
        return int(self.db.connection().execute("SELECT count(*) FROM grafana_journal WHERE owner = ?",
                                                (self.owner,)).fetchone()[0])

    def adopt(self) -> int:
        """Take over the rows of journals whose process is gone (their lock is free)."""
        owners = [row[0] for row in self.db.connection().execute(
            "SELECT DISTINCT owner FROM grafana_journal WHERE owner != ?", (self.owner,))]
        adopted = 0
        for owner in owners:
            other = HostLock(self._lock_path(owner))
            if not other.take():
                continue  # alive: it applies its own
            try:
                with self.db.transaction() as conn:
                    adopted += conn.execute("UPDATE grafana_journal SET owner = ? WHERE owner = ?",
                                            (self.owner, owner)).rowcount
            finally:
                other.release()
            try:
                os.unlink(self._lock_path(owner))
            except OSError:
                pass
        if adopted:
            log.warning("applying %d panel payloads a stopped process had acknowledged", adopted)
        return adopted

    # -- applying --------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        next_adopt = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_adopt:
                    next_adopt = time.monotonic() + ADOPT_EVERY
                    self.adopt()
                with self._mutex:
                    moved = self._apply_once()
                attempt = 0
            except Exception as exc:  # the store is down or locked: the journal keeps the payloads
                attempt += 1
                if self._failures.allow("apply"):
                    log.warning("applying panel payloads failed, retrying (%s); they wait in the journal (%d more "
                                "failures not logged)", exc, self._failures.suppressed("apply"),
                                exc_info=not isinstance(exc, (RetryableError, sqlite3.Error)))
                self._stop.wait(random.uniform(0, min(2.0, 0.1 * 2 ** attempt)))
                continue
            if moved < self.batch:
                self._wake.wait(self.interval)
                self._wake.clear()

    def _apply_once(self) -> int:
        rows = self.db.connection().execute(
            "SELECT seq, received, body FROM grafana_journal WHERE owner = ? ORDER BY seq LIMIT ?",
            (self.owner, self.batch)).fetchall()
        if not rows:
            return 0
        take = self._decoded.pop
        items = []
        for _, received, body in rows:
            payload = take((received, body), _MISSING)
            items.append((self.decode(body) if payload is _MISSING else payload, received))
        self.apply(items)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM grafana_journal WHERE owner = ? AND seq <= ?", (self.owner, rows[-1][0]))
        return len(rows)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Apply this process's payloads now; False when ``timeout`` ran out first (the store
        down: they stay in the journal)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._mutex.acquire(timeout=-1 if left is None else left):
                return False
            try:
                if self._apply_once() < self.batch:
                    return True
            except Exception as exc:  # rate-limited with the thread's: a scrape flushes too
                if self._failures.allow("apply"):
                    log.warning("applying panel payloads failed (%s); they stay in the journal (%d more failures "
                                "not logged)", exc, self._failures.suppressed("apply"))
                if deadline is None or time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
            finally:
                self._mutex.release()

    def close(self, timeout: Optional[float] = None) -> bool:
        """Apply what is left (within ``timeout``), then stop; the rest waits for the next start."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = self.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if done and not self.pending():
            try:
                os.unlink(self._lock_path(self.owner))
            except OSError:
                pass
        self.lock.release()  # what is left is adopted by the next process
        return done
