"""The embedded event store: every event in the SQLite database under the data directory.

It is what ``GET /log/event/{id}`` and ``GET /log/events`` read when InfluxDB is off.

**Durable before the answer.** ``emit`` returns only once its events are committed; the
requests of a worker's threads share transactions (group commit, waiting at most ``[sqlite]
commit_wait`` for company: :class:`~statskit.state.sqlite_writer.CommitBeforeReturn`), so an acknowledged event is readable by the next request on any worker, and a
crashed worker loses nothing it acknowledged. A commit that cannot happen (the database locked
past its busy timeout, a full disk) raises: the pipeline then feeds no other sink and the
request fails (503 for a locked store, 507 with Retry-After for a full or unwritable disk,
logged and counted) instead of answering 200 for an event that is not stored; writes resume by
themselves once the store can write, and reads keep working meanwhile.
WAL with ``synchronous=NORMAL`` makes a commit cost no fsync. Inserts ignore an ``event_id``
already stored, so a client that retries with its own ids stores once.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any, List, Optional, Sequence

import orjson

from ..errors import StorageFull, is_storage_full
from ..events import Event
from ..logs import RateLimit
from ..state import store_for
from ..state.sqlite import SQLiteDB, database_path
from ..state.sqlite_writer import CommitBeforeReturn

log = logging.getLogger("statskit.sinks.sqlite")
_full_log = RateLimit(10.0)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    time_ns INTEGER NOT NULL,
    uid     TEXT,
    event   TEXT,
    data    TEXT NOT NULL       -- Event.to_json()
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_uid ON events (uid, time_ns);
CREATE INDEX IF NOT EXISTS events_event ON events (event, time_ns);
"""


class SQLiteSink:
    name = "sqlite"
    durable = True  # the pipeline's durable copy: its failure fails the request (see Pipeline.ingest)

    def __init__(self, db: SQLiteDB, retention_days: float = 0.0, commit_wait: float = 0.002) -> None:
        self.db = db
        self.db.ensure_schema(SCHEMA)
        self.retention_ns = int(retention_days * 86400e9)
        self._next_purge = 0.0
        self.group: CommitBeforeReturn[tuple] = CommitBeforeReturn(db, self._insert, wait=commit_wait)

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "SQLiteSink":
        # Share the state's database when there is one: one file, one WAL, one set of connections.
        own = lambda _: SQLiteDB(database_path(settings.server.data_dir))  # noqa: E731  (per host)
        db = store_for(state, {"sqlite": lambda backend: backend.db}, own)
        return cls(db, settings.sqlite.retention_days, settings.sqlite.commit_wait)

    def emit(self, events: Sequence[Event]) -> None:
        """Return once ``events`` are committed (raises when they cannot be: nothing stored)."""
        try:
            self.group.commit([(e.id, e.time_ns, e.uid, e.event, e.to_json()) for e in events])
        except sqlite3.OperationalError as exc:
            if is_storage_full(exc):  # the store is down, not the request wrong
                if _full_log.allow("full"):
                    log.error("the event store %s cannot write (%s): refusing writes with 507 until it can "
                              "(%d more refusals not logged)", self.db.path, exc, _full_log.suppressed("full"))
                raise StorageFull(f"the event store cannot write ({exc}); nothing was stored, try again later") from exc
            raise  # locked/busy past the timeout: a 503 by the server's error handler

    def _insert(self, conn: sqlite3.Connection, rows: List[tuple]) -> None:
        conn.executemany("INSERT OR IGNORE INTO events (id, time_ns, uid, event, data) VALUES (?, ?, ?, ?, ?)", rows)
        if self.retention_ns and time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + 600
            conn.execute("DELETE FROM events WHERE time_ns < ?", (time.time_ns() - self.retention_ns,))

    def get(self, event_id: str) -> Optional[Event]:
        row = self.db.connection().execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
        return Event.from_dict(orjson.loads(row[0])) if row else None

    def query(self, uid: Optional[str] = None, event: Optional[str] = None, since_ns: Optional[int] = None,
              until_ns: Optional[int] = None, limit: int = 100) -> List[Event]:
        """Newest first."""
        where, args = [], []
        for clause, value in (("uid = ?", uid), ("event = ?", event), ("time_ns >= ?", since_ns), ("time_ns < ?", until_ns)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT data FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_ns DESC, seq DESC LIMIT ?"
        return [Event.from_dict(orjson.loads(row[0])) for row in self.db.connection().execute(sql, (*args, int(limit)))]

    def count(self) -> int:
        return self.db.connection().execute("SELECT count(*) FROM events").fetchone()[0]

    def flush(self, timeout: Optional[float] = None) -> None:
        pass  # nothing is buffered: emit commits

    def close(self, timeout: Optional[float] = None) -> None:
        pass  # nothing is buffered; the database's connections are closed by its owner
