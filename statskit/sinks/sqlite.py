"""The embedded event store: every event in the SQLite database under the data directory.

It is what ``GET /log/event/{id}`` and ``GET /log/events`` read when InfluxDB is off. Inserts
ignore an ``event_id`` already stored, so a client that retries with its own ids stores once.
"""
from __future__ import annotations

import json
import time
from typing import Any, List, Optional, Sequence

from ..events import Event
from ..state.sqlite import SQLiteDB, SQLiteState, database_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    time_ns     INTEGER NOT NULL,
    measurement TEXT NOT NULL,
    uid         TEXT,
    event       TEXT,
    tags        TEXT NOT NULL,
    fields      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_uid ON events (uid, time_ns);
CREATE INDEX IF NOT EXISTS events_event ON events (event, time_ns);
"""

_COLUMNS = "id, time_ns, measurement, uid, event, tags, fields"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class SQLiteSink:
    """Stores events durably in the request (a commit without fsync: see :mod:`statskit.state.sqlite`)."""

    name = "sqlite"

    def __init__(self, db: SQLiteDB, retention_days: float = 0.0) -> None:
        self.db = db
        self.db.ensure_schema(SCHEMA)
        self.retention_ns = int(retention_days * 86400e9)
        self._next_purge = 0.0

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "SQLiteSink":
        # Share the state's database when there is one: one file, one WAL, one set of connections.
        db = state.db if isinstance(state, SQLiteState) else SQLiteDB(database_path(settings.server.data_dir))
        return cls(db, settings.sqlite.retention_days)

    def emit(self, events: Sequence[Event]) -> None:
        rows = [(e.id, e.time_ns, e.measurement, e.uid, e.event, _dumps(e.tags), _dumps(e.fields)) for e in events]
        with self.db.transaction() as conn:
            conn.executemany(f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            if self.retention_ns and time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + 600
                conn.execute("DELETE FROM events WHERE time_ns < ?", (time.time_ns() - self.retention_ns,))

    def get(self, event_id: str) -> Optional[Event]:
        row = self.db.connection().execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
        return _to_event(row) if row else None

    def query(self, uid: Optional[str] = None, event: Optional[str] = None, since_ns: Optional[int] = None,
              until_ns: Optional[int] = None, limit: int = 100) -> List[Event]:
        """Newest first."""
        where, args = [], []
        for clause, value in (("uid = ?", uid), ("event = ?", event), ("time_ns >= ?", since_ns), ("time_ns < ?", until_ns)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_ns DESC, seq DESC LIMIT ?"
        return [_to_event(row) for row in self.db.connection().execute(sql, (*args, int(limit)))]

    def count(self) -> int:
        return self.db.connection().execute("SELECT count(*) FROM events").fetchone()[0]

    def flush(self, timeout: Optional[float] = None) -> None:
        pass  # every emit is committed before it returns

    def close(self, timeout: Optional[float] = None) -> None:
        pass  # the database belongs to the state store or outlives the sink


def _to_event(row: tuple) -> Event:
    event_id, time_ns, measurement, uid, name, tags, fields = row
    return Event(event_id, time_ns, measurement, json.loads(tags), json.loads(fields), uid=uid, event=name)
