"""The embedded event store: every event in the SQLite database under the data directory.

It is what ``GET /log/event/{id}`` and ``GET /log/events`` read when InfluxDB is off.

Writes are group-committed: ``emit`` queues events for a writer thread that commits them at
most ``FLUSH_INTERVAL`` apart (one commit per batch instead of one per request is what lets a
gunicorn worker keep up with a bare Falcon app). Reads see the events of their own process at
once, and a lookup of an id younger than the interval waits that long for other workers' commits.
A graceful stop commits everything; a crash loses at most the last interval. Inserts ignore an
``event_id`` already stored, so a client that retries with its own ids stores once.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any, List, Optional, Sequence

import orjson

from ..events import Event, id_time
from ..state.sqlite import SQLiteDB, database_path
from ..worker import BatchWorker, RetryableError

log = logging.getLogger("statskit.sinks.sqlite")

FLUSH_INTERVAL = 0.05
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

    def __init__(self, db: SQLiteDB, retention_days: float = 0.0, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.db = db
        self.db.ensure_schema(SCHEMA)
        self.retention_ns = int(retention_days * 86400e9)
        self.flush_interval = flush_interval
        self._next_purge = 0.0
        # Retries forever on "database is locked": the queue is the bound, and a full queue
        # makes emit() write inline instead of dropping (the local disk is the durable copy).
        self.writer = BatchWorker(self._write, max_queue=100_000, batch_size=5000, max_latency=flush_interval,
                                  max_retries=None, backoff=0.05, max_backoff=1.0, name="statskit-sqlite-writer")

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "SQLiteSink":
        # Share the state's database when there is one: one file, one WAL, one set of connections.
        db = state.db if state.name == "sqlite" else SQLiteDB(database_path(settings.server.data_dir))
        return cls(db, settings.sqlite.retention_days)

    def emit(self, events: Sequence[Event]) -> None:
        rows = [(e.id, e.time_ns, e.uid, e.event, e.to_json()) for e in events]
        taken = self.writer.submit_many(rows)
        if taken < len(rows):
            self._write(rows[taken:])  # back-pressure: slower, never lossy

    def _write(self, rows: List[tuple]) -> None:
        try:
            with self.db.transaction() as conn:
                conn.executemany("INSERT OR IGNORE INTO events (id, time_ns, uid, event, data) VALUES (?, ?, ?, ?, ?)", rows)
                if self.retention_ns and time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + 600
                    conn.execute("DELETE FROM events WHERE time_ns < ?", (time.time_ns() - self.retention_ns,))
        except sqlite3.OperationalError as exc:  # locked/busy beyond busy_timeout: try again
            raise RetryableError(str(exc)) from exc

    def get(self, event_id: str) -> Optional[Event]:
        self.writer.flush(1.0)
        found = self._select_one(event_id)
        created = id_time(event_id)
        if found is None and created is not None:
            # Another worker may still hold it in its write queue for up to one interval.
            wait = created + 2 * self.flush_interval - time.time()
            if 0 < wait <= 2 * self.flush_interval:
                time.sleep(wait)
                found = self._select_one(event_id)
        return found

    def _select_one(self, event_id: str) -> Optional[Event]:
        row = self.db.connection().execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
        return Event.from_dict(orjson.loads(row[0])) if row else None

    def query(self, uid: Optional[str] = None, event: Optional[str] = None, since_ns: Optional[int] = None,
              until_ns: Optional[int] = None, limit: int = 100) -> List[Event]:
        """Newest first."""
        self.writer.flush(1.0)
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
        self.writer.flush(1.0)
        return self.db.connection().execute("SELECT count(*) FROM events").fetchone()[0]

    def flush(self, timeout: Optional[float] = None) -> None:
        self.writer.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        if not self.writer.close(timeout):
            log.error("stopped with %d events not yet stored", len(self.writer))
