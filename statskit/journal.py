"""Requests journaled before their answer: ``append`` returns once its payload is committed to
a SQLite table on the host (group commit, as the event store's); the process that took it
applies its payloads in arrival order on a thread of its own, deleting what it applied.
``POST /write`` journals its panel payloads here (``grafana_journal``), and so do one-shot posts
that find Redis away (``oneshot_journal``).

So a crash (kill -9 included) loses no acknowledged payload: each process holds a lock file
while it lives, and another process adopts the rows of one whose lock is free (dead) and
applies them. The store behind ``apply`` being down (Redis restarting) does not stop the
route either: payloads wait in the journal, on disk, until it is back. A payload whose
application was done but not yet deleted when the process died is applied again at the restart
(at least once), unless ``settled`` tells the adopter how far the dead process got; each
entry reaches ``apply`` with its number (``seq``, increasing for each owner) for that: a store
that records the last number it applied for an owner can skip what it has already.

    >>> import os, tempfile
    >>> from statskit.state.sqlite import SQLiteDB
    >>> applied = []
    >>> journal = PayloadJournal(SQLiteDB(os.path.join(tempfile.mkdtemp(), "j.db")), applied.extend,
    ...                          decode=bytes.decode, table="demo_journal")
    >>> journal.append(b"payload", 1.5)
    >>> journal.flush(5.0)
    True
    >>> applied
    [('payload', 1.5, 1)]
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

from .errors import RetryableError
from .hostlock import HostLock
from .logs import RateLimit
from .state.sqlite_writer import CommitBeforeReturn

log = logging.getLogger("statskit.journal")

SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    owner    TEXT NOT NULL,     -- the process (journal instance) that took it and applies it
    received REAL NOT NULL,     -- when statskit got it (the session clock's "now")
    body     BLOB NOT NULL      -- the payload as posted (it was valid)
)
"""

Entry = Tuple[Any, float, int]  # (decoded payload, received, seq)
ADOPT_EVERY = 5.0  # seconds between two looks for rows of processes that died
MAX_DECODED = 10_000  # payloads kept decoded for the thread that applies them (beyond: decoded again)
_MISSING = object()


class PayloadJournal:
    """``append`` commits a payload; this process's thread applies it (and adopts the dead's).

    ``settled(owner)``: the highest ``seq`` of that (dead) owner's entries that the store has
    already; the adopter deletes those instead of applying them again."""

    def __init__(self, db: Any, apply: Callable[[List[Entry]], None], *, decode: Callable[[bytes], Any],
                 table: str, settled: Optional[Callable[[str], int]] = None, batch: int = 1000,
                 interval: float = 0.05, commit_wait: float = 0.002) -> None:
        self.db = db
        self.table = table
        db.ensure_schema(SCHEMA.format(table=table))
        self.apply = apply
        self.decode = decode
        self.settled = settled
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
        self._unapplied = 0  # this process's rows not yet applied, an upper bound (see waiting())
        self._count_lock = threading.Lock()
        # This process's rows up to here are applied; deleting them may lag (a full disk must not
        # stop the rows after them): they are read after it, and deleted at the next chance.
        self._applied_upto = 0
        self._deleted_upto = 0
        # The payloads append's callers decoded already, by row (received, body): applying them
        # does not decode them again. Rows of other processes (adopted) are decoded.
        self._decoded: Dict[Tuple[float, bytes], Any] = {}

    def _lock_path(self, owner: str) -> str:
        return f"{self.db.path}.journal-{owner}.lock"

    def _insert(self, conn: sqlite3.Connection, rows: List[Tuple[str, float, bytes]]) -> None:
        conn.executemany(f"INSERT INTO {self.table} (owner, received, body) VALUES (?, ?, ?)", rows)

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
        self._count(1)  # counted before the commit too, so the count is never below the rows
        try:
            self.group.commit([(self.owner, received, body)])
        except BaseException:
            self._count(-1)
            self._decoded.pop(key, None)
            raise

    def waiting(self) -> int:
        """This process's rows not applied yet, without asking the database: never less than
        the truth (a caller that must keep its order behind them can trust a 0)."""
        return self._unapplied

    def _count(self, n: int) -> None:
        with self._count_lock:
            self._unapplied += n

    def start(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                self.lock.take()  # a new name: nobody else holds it
                self._thread = threading.Thread(target=self._run, name=f"statskit-{self.table}", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        """This process's payloads not applied yet."""
        return int(self.db.connection().execute(f"SELECT count(*) FROM {self.table} WHERE owner = ? AND seq > ?",
                                                (self.owner, self._applied_upto)).fetchone()[0])

    def adopt(self) -> int:
        """Take over the rows of journals whose process is gone (their lock is free). They are
        numbered anew, after this process's own (each owner's numbers keep increasing), so they
        are applied after what this process took before adopting them."""
        table = self.table
        owners = [row[0] for row in self.db.connection().execute(
            f"SELECT DISTINCT owner FROM {table} WHERE owner != ?", (self.owner,))]
        adopted = 0
        for owner in owners:
            other = HostLock(self._lock_path(owner))
            if not other.take():
                continue  # alive: it applies its own
            try:
                done = self.settled(owner) if self.settled is not None else 0  # before any change
                # Nobody else writes the rows of an owner whose lock we hold: count them first,
                # so that waiting() is never below the rows (a post may not pass them).
                (moving,) = self.db.connection().execute(f"SELECT count(*) FROM {table} WHERE owner = ? AND seq > ?",
                                                         (owner, done)).fetchone()
                self._count(moving)
                try:
                    with self.db.transaction() as conn:
                        conn.execute(f"DELETE FROM {table} WHERE owner = ? AND seq <= ?", (owner, done))
                        conn.execute(f"INSERT INTO {table} (owner, received, body) SELECT ?, received, body "
                                     f"FROM {table} WHERE owner = ? ORDER BY seq", (self.owner, owner))
                        conn.execute(f"DELETE FROM {table} WHERE owner = ?", (owner,))
                except BaseException:
                    self._count(-moving)
                    raise
                adopted += moving
            finally:
                other.release()
            try:
                os.unlink(self._lock_path(owner))
            except OSError:
                pass
        if adopted:
            log.warning("%s: applying %d payloads a stopped process had acknowledged", table, adopted)
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
                moved = 0
                if self._unapplied:  # (an upper bound: 0 means nothing of ours to read)
                    with self._mutex:
                        moved = self._apply_once()
                attempt = 0
            except Exception as exc:  # the store is down or locked: the journal keeps the payloads
                attempt += 1
                if self._failures.allow("apply"):
                    log.warning("%s: applying payloads failed, retrying (%s); they wait in the journal (%d more "
                                "failures not logged)", self.table, exc, self._failures.suppressed("apply"),
                                exc_info=not isinstance(exc, (RetryableError, sqlite3.Error)))
                self._stop.wait(random.uniform(0, min(2.0, 0.1 * 2 ** attempt)))
                continue
            if moved < self.batch:
                self._wake.wait(self.interval)
                self._wake.clear()

    def _apply_once(self) -> int:
        self._delete_applied()
        rows = self.db.connection().execute(
            f"SELECT seq, received, body FROM {self.table} WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?",
            (self.owner, self._applied_upto, self.batch)).fetchall()
        if not rows:
            return 0
        take = self._decoded.pop
        entries = []
        for seq, received, body in rows:
            payload = take((received, body), _MISSING)
            entries.append((self.decode(body) if payload is _MISSING else payload, received, seq))
        self.apply(entries)
        self._applied_upto = rows[-1][0]
        self._count(-len(rows))
        self._delete_applied()
        return len(rows)

    def _delete_applied(self) -> None:
        """Delete the rows applied so far; a failure (a full disk) leaves them for the next try.
        Rows a process applied but could not delete before it died are applied again by the
        adopter, unless ``settled`` says they were."""
        if self._deleted_upto >= self._applied_upto:
            return
        upto = self._applied_upto
        try:
            with self.db.transaction() as conn:
                conn.execute(f"DELETE FROM {self.table} WHERE owner = ? AND seq <= ?", (self.owner, upto))
        except Exception as exc:
            if self._failures.allow("delete"):
                log.warning("%s: deleting applied payloads failed (%s); deleted later (%d more failures not logged)",
                            self.table, exc, self._failures.suppressed("delete"))
            return
        self._deleted_upto = upto

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
                    log.warning("%s: applying payloads failed (%s); they stay in the journal (%d more failures "
                                "not logged)", self.table, exc, self._failures.suppressed("apply"))
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
