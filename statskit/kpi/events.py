"""KPIs over statskit's own event stream: events posted to ``/log/event(s)`` feed the same
indicator/KPI engine as the access logs (``[kpi] events = true``).

Each accepted event is written by :class:`EventInbox` (a sink, in the request, so a 2xx means
it is in ``kpi.db``) to the ``event_inbox`` table; the tailing process consumes the inbox in
the same transaction as the indicator updates (exactly once), giving two hourly indicators:

* 1101 EventCount: dimension = event name (a point's measurement); count of events.
* 1102 EventUid: dimension = uid; count of events (so distinct uids can be counted per period).

and two KPIs, rolled into D/W/M/Y like the others:

* 2101 EventCounts: ``{"items": [{"event", "count"}] (top 10), "totalEvents"}``.
* 2102 DistinctUids: ``{"distinctUids"}``: uids seen in the period (not the sum of the hours).
"""
from __future__ import annotations

import sqlite3
from typing import Any, Optional, Sequence

from ..events import Event
from ..state.sqlite import SQLiteDB
from .inputs import EVENT, EVENT_UID, Input

INBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ns INTEGER NOT NULL, name TEXT NOT NULL, uid TEXT
)
"""
BATCH = 5000


class EventInbox:
    """A sink (the pipeline's protocol) writing events to ``kpi.db`` for the KPI engine."""

    name = "kpi"

    def __init__(self, db: SQLiteDB, names: Sequence[str] = ()) -> None:
        self.db = db
        self.names = set(names)
        db.ensure_schema(INBOX_SCHEMA)

    def emit(self, events: Sequence[Event]) -> None:
        rows = [(e.time_ns, e.name, e.uid) for e in events if not self.names or e.name in self.names]
        if rows:
            with self.db.transaction() as conn:
                conn.executemany("INSERT INTO event_inbox (time_ns, name, uid) VALUES (?, ?, ?)", rows)

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
