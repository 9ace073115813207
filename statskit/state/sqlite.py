"""The embedded default: one SQLite database in WAL mode, shared by the workers of one host.

WAL lets readers run beside the single writer; ``synchronous=NORMAL`` makes a commit cost no
fsync (a power cut may lose the last commits, a crashed process loses nothing committed).
Connections are per thread and per process, so the store is safe after ``os.fork()``.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence

from ..labels import decode_labels, encode_labels
from ..process import pid
from .buffered import BufferedCounters, CounterRow

if TYPE_CHECKING:
    from .sqlite_blocks import SQLiteLogs, SQLiteRecords

DATABASE_NAME = "statskit.db"

_COUNTERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,   -- JSON array of [name, value] pairs, sorted
    value  REAL NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;
"""


_databases: "weakref.WeakSet[SQLiteDB]" = weakref.WeakSet()
_INHERITED: List[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    for db in list(_databases):
        db._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def database_path(data_dir: str) -> str:
    os.makedirs(data_dir, exist_ok=True)
    return os.path.join(data_dir, DATABASE_NAME)


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL once. The switch needs an exclusive lock and SQLite does not call
    the busy handler for it, so workers opening a new file together retry here (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SQLiteDB:
    """A database file with one connection per (process, thread) and explicit write transactions.

        >>> db = SQLiteDB("/tmp/example.db")
        >>> db.ensure_schema("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        >>> with db.transaction() as conn:
        ...     _ = conn.execute("INSERT INTO t VALUES (1)")
    """

    def __init__(self, path: str, busy_timeout_ms: int = 10000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._schemas: set = set()
        self._lock = threading.Lock()
        self._opened: List[sqlite3.Connection] = []  # every thread's, so close() closes them all
        _databases.add(self)

    def connection(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != pid():
            # A connection inherited through fork() must never be used by the child.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            _enable_wal(conn, self.busy_timeout_ms / 1000.0)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -32768")  # 32 MiB: keeps the index pages of a big store hot
            local.conn, local.pid = conn, pid()
            with self._lock:
                self._opened.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front so that
        read-modify-write sequences from several workers never interleave."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (SQLITE_FULL) leaves the transaction open: roll it back too, or
            # this connection could never begin another one (recovery once space returns).
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    def ensure_schema(self, sql: str) -> None:
        """Run idempotent DDL once per process."""
        if sql in self._schemas:
            return
        with self.transaction() as conn:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
        self._schemas.add(sql)

    def close(self) -> None:
        """Close the connections of every thread of this process."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    def _forget_after_fork(self) -> None:
        # A forked child must neither use nor close its parent's connections: closing one drops
        # the parent's POSIX locks and can checkpoint or remove the WAL under the other
        # processes (seen as "no such table" or missing rows). Kept referenced, never closed.
        with self._lock:
            _INHERITED.extend(self._opened)
            self._opened = []
        self._local = threading.local()


def add_counters(conn: sqlite3.Connection, rows: Sequence[CounterRow]) -> None:
    """Add ``rows`` to the shared counters in ``conn``'s transaction (a caller may add its own
    rows to it: the Prometheus sink's cursor, statskit/sinks/prometheus.py)."""
    conn.executemany(
        "INSERT INTO counters (name, labels, value) VALUES (?, ?, ?) "
        "ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
        [(name, encode_labels(lk), value) for name, lk, value in rows],
    )


class SQLiteState(BufferedCounters):
    """Counters in SQLite, buffered per process and flushed at most ``flush_interval`` apart.

    Increments land in a local dict (a request costs no write); a daemon thread, started lazily
    in each process, adds them to the shared table. ``counters()`` flushes first, so the process
    answering a scrape always shows its own increments; other processes' show within one interval.
    """

    name = "sqlite"

    def __init__(self, path: str, flush_interval: float = 1.0) -> None:
        super().__init__(flush_interval)
        self.db = SQLiteDB(path)
        self.db.ensure_schema(_COUNTERS_SCHEMA)
        self._records: Optional[Any] = None
        self._logs: Optional[Any] = None

    def _write(self, rows: List[CounterRow]) -> None:
        with self.db.transaction() as conn:
            add_counters(conn, rows)

    def _read(self, prefix: str) -> List[CounterRow]:
        cur = self.db.connection().execute(
            "SELECT name, labels, value FROM counters WHERE name >= ? AND name < ? ORDER BY name, labels",
            (prefix, prefix + "\U0010ffff"),
        )
        return [(name, decode_labels(labels), value) for name, labels, value in cur]

    def close(self) -> None:
        super().close()
        # Every connection closed now, not by the garbage collector at some later point: the
        # server builds the schema in the gunicorn master, and a connection left open there
        # (or closed late, by another thread) checkpoints and removes the WAL under the workers.
        self.db.close()

    @property
    def records(self) -> "SQLiteRecords":
        """Keyed records in this database (:mod:`statskit.state.protocols`); tables made on first use."""
        if self._records is None:
            from .sqlite_blocks import SQLiteRecords

            self._records = SQLiteRecords(self.db)
        return self._records

    @property
    def logs(self) -> "SQLiteLogs":
        """Numbered logs in this database (:mod:`statskit.state.protocols`)."""
        if self._logs is None:
            from .sqlite_blocks import SQLiteLogs

            self._logs = SQLiteLogs(self.db)
        return self._logs


def open_sqlite(data_dir: str, flush_interval: float = 1.0, options: Any = None) -> SQLiteState:
    """The embedded default (``[state] backend = sqlite``): ``<data_dir>/statskit.db``."""
    return SQLiteState(database_path(data_dir), flush_interval=flush_interval)
