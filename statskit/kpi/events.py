"""KPIs over statskit's own event stream: events posted to ``/log/event(s)`` feed the same
indicator/KPI engine as the access logs (``[kpi] events = true``).

Each accepted event is written by :class:`EventInbox` (a sink fed from the durable event log:
it stores each batch with the log position it reached, in one ``kpi.db`` transaction, so a
crash neither loses nor repeats an event) to the ``event_inbox`` table; the tailing process
consumes the inbox in the same transaction as the indicator updates (exactly once), giving two
hourly indicators:

* 1101 EventCount: dimension = event name (a point's measurement); count of events.
* 1102 EventUid: dimension = uid; count of events (so distinct uids can be counted per period).

and two KPIs, rolled into D/W/M/Y like the others:

* 2101 EventCounts: ``{"items": [{"event", "count"}] (top 10), "totalEvents"}``.
* 2102 DistinctUids: ``{"distinctUids"}``: uids seen in the period (not the sum of the hours).
"""
from __future__ import annotations

import sqlite3
from typing import Any, List, Optional, Sequence, Tuple

from ..errors import RetryableError, is_storage_full, is_transient
from ..events import Event
from ..state.sqlite import SQLiteDB
from .inputs import EVENT, EVENT_UID, Input

INBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ns INTEGER NOT NULL, name TEXT NOT NULL, uid TEXT
)
"""
POSITION_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_inbox_position (  -- the event log's seq the inbox holds events up to
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL
)
"""
BATCH = 5000


class EventInbox:
    """A sink (the pipeline's protocol) writing events to ``kpi.db`` for the KPI engine."""

    name = "kpi"
    relay_batch = BATCH
    relay_interval = 0.1

    def __init__(self, db: SQLiteDB, names: Sequence[str] = ()) -> None:
        self.db = db
        self.names = set(names)
        db.ensure_schema(INBOX_SCHEMA)
        db.ensure_schema(POSITION_SCHEMA)

    def prepare(self, events: Sequence[Event]) -> List[Tuple[int, str, Optional[str]]]:
        return [(e.time_ns, e.name, e.uid) for e in events if not self.names or e.name in self.names]

    def emit(self, events: Sequence[Event]) -> None:
        """Given events directly (a library pipeline without a durable log)."""
        self.send(self.prepare(events))

    def send(self, rows: List[Tuple[int, str, Optional[str]]]) -> None:
        self.send_at(rows, None)

    def send_at(self, rows: List[Tuple[int, str, Optional[str]]], seq: Optional[int]) -> None:
        """Store ``rows`` and, with them, the log position ``seq`` they reach."""
        try:
            with self.db.transaction() as conn:
                if rows:
                    conn.executemany("INSERT INTO event_inbox (time_ns, name, uid) VALUES (?, ?, ?)", rows)
                if seq is not None:
                    conn.execute("INSERT INTO event_inbox_position (id, seq) VALUES (1, ?) "
                                 "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq", (seq,))
        except sqlite3.OperationalError as exc:
            if is_transient(exc) or is_storage_full(exc):
                raise RetryableError(f"kpi.db cannot write: {exc}") from exc
            raise

    def position(self) -> Optional[int]:
        row = self.db.connection().execute("SELECT seq FROM event_inbox_position WHERE id = 1").fetchone()
        return None if row is None else int(row[0])

    def flush(self, timeout: Optional[float] = None) -> None:
        return None

    def close(self, timeout: Optional[float] = None) -> None:
        return None


def consume(conn: sqlite3.Connection, engine: Any, limit: int = BATCH) -> int:
    """Feed up to ``limit`` inbox events to ``engine`` and delete them, in ``conn``'s
    transaction; returns how many."""
    rows = conn.execute("SELECT seq, time_ns, name, uid FROM event_inbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
    for _, time_ns, name, uid in rows:
        inputs = [Input(EVENT, name)] + ([Input(EVENT_UID, uid)] if uid else [])
        engine.feed(conn, time_ns / 1e9, inputs)
    if rows:
        conn.execute("DELETE FROM event_inbox WHERE seq <= ?", (rows[-1][0],))
    return len(rows)
