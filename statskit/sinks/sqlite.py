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
from typing import Any, Dict, List, Optional, Sequence, Tuple

import orjson

from ..errors import StorageFull, is_storage_full
from ..events import Event
from ..logs import RateLimit
from ..state import store_for
from ..state.sqlite import SQLiteDB, database_path
from ..state.sqlite_writer import CommitLock, group_commit

log = logging.getLogger("statskit.sinks.sqlite")
# Receive times follow the clock 1 ns apart while it repeats itself or steps back a little;
# further back than this (a VM resumed, NTP stepping the clock), the clock wins again.
MAX_CLOCK_LEAD_NS = 1_000_000_000
_clock_log = RateLimit(60.0)
RECENT = 20_000  # decoded events read_after keeps for the next relay (about 10 MB at most)
_full_log = RateLimit(10.0)

SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    time_ns INTEGER NOT NULL,
    uid     TEXT,
    event   TEXT,
    data    TEXT NOT NULL       -- Event.to_json()
);
CREATE TABLE IF NOT EXISTS log_clock (
    one     INTEGER PRIMARY KEY CHECK (one = 0),
    time_ns INTEGER NOT NULL    -- the latest receive time given to an event (see _stamp)
);
CREATE TABLE IF NOT EXISTS sink_cursors (
    sink    TEXT PRIMARY KEY,   -- a sink fed from this log (statskit.sinks.relay)
    seq     INTEGER NOT NULL    -- the last event it confirmed stored
);
"""
# What GET /log/events filters by: not made for an outbox, which nobody queries (a third of
# an insert's cost); made when the sqlite sink is enabled on the same file later.
INDEXES = """
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_uid ON events (uid, time_ns);
CREATE INDEX IF NOT EXISTS events_event ON events (event, time_ns);
"""


def _host_database(settings: Any, state: Any) -> SQLiteDB:
    """The state's database when it is SQLite (one file, one WAL, one set of connections), else
    one of the host's own beside a shared store."""
    own = lambda _: SQLiteDB(database_path(settings.server.data_dir))  # noqa: E731
    return store_for(state, {"sqlite": lambda backend: backend.db}, own)


def _stamp(conn: sqlite3.Connection, rows: List[tuple]) -> List[tuple]:
    """The rows to insert, every receive time made later than the host's last one.

    InfluxDB keeps one point per series and time: two workers (or two requests) stamping the
    same nanosecond for the same series would store one event of the two, silently. The write
    transaction is the one place where all the host's events pass in turn, so the receive times
    given there are unique on the host; the log keeps them, so every sink and every re-send gets
    the same. A time the client sent is left alone. If the clock steps back, times go on 1 ns
    apart from the last one until it catches up; more than ``MAX_CLOCK_LEAD_NS`` back, the
    clock wins again (logged)."""
    if all(row[5] is None for row in rows):
        return [row[:5] for row in rows]
    found = conn.execute("SELECT time_ns FROM log_clock").fetchone()
    last = found[0] if found else 0
    now = time.time_ns()
    if last > now + MAX_CLOCK_LEAD_NS:  # the clock stepped back (or jumped forward once) by a lot
        if _clock_log.allow("clock"):
            log.warning("the clock is %.1f s behind the latest receive time the log gave; giving times "
                        "from the clock again", (last - now) / 1e9)
        last = 0
    out = []
    for id_, time_ns, uid, name, data, event in rows:
        if event is not None:
            if time_ns <= last:
                moved = last + 1
                event.time_ns = moved
                if moved // 1000 != time_ns // 1000:  # the JSON shows microseconds: changed only then
                    event._json = None
                    data = event.to_json()
                time_ns = moved
            last = time_ns
        out.append((id_, time_ns, uid, name, data))
    conn.execute("INSERT OR REPLACE INTO log_clock (one, time_ns) VALUES (0, ?)", (last,))
    return out


def advance_cursor(conn: sqlite3.Connection, name: str, seq: int) -> None:
    """Move the cursor of the sink ``name`` to ``seq`` (never back), in ``conn``'s transaction:
    a sink that stores its data in the same database commits the two together."""
    conn.execute("UPDATE sink_cursors SET seq = max(seq, ?) WHERE sink = ?", (seq, name))


class SQLiteSink:
    """The event store, and the durable log the other sinks are fed from (``seq`` order).

    ``outbox=True`` (InfluxDB or stdout enabled without the ``sqlite`` sink): the same table, kept
    only until every sink fed from it has confirmed its events, and not read by ``GET /log/...``.
    """

    name = "sqlite"
    durable = True  # the pipeline's durable copy: its failure fails the request (see Pipeline.ingest)

    def __init__(self, db: SQLiteDB, retention_days: float = 0.0, commit_wait: float = 0.002, *,
                 outbox: bool = False, ack: str = "durable", table: str = "events") -> None:
        self.db = db
        self.table = table  # another log beside the events: a feature's points (grafana/tracker.py)
        self.db.ensure_schema(SCHEMA.format(table=table))
        if not outbox:
            self.db.ensure_schema(INDEXES)  # only the events table is ever queried
        self.outbox = outbox
        self.retention_ns = int(retention_days * 86400e9)
        self._next_purge = 0.0
        self.followers: List[str] = []  # names of the sinks fed from this log (their cursors bound trimming)
        self._recent: Dict[int, Event] = {}  # seq -> decoded event, shared by the relays (read_after)
        self.group = group_commit(db, self._insert, ack=ack, wait=commit_wait)
        self.commit_lock = CommitLock(db)  # the cursor commits queue with the group commits (set_cursor)

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "SQLiteSink":
        return cls(_host_database(settings, state), settings.sqlite.retention_days, settings.sqlite.commit_wait,
                   ack=settings.server.ack)

    @classmethod
    def outbox_from_settings(cls, settings: Any, state: Any) -> "SQLiteSink":
        """The log alone, for sinks fed from it when the ``sqlite`` sink is not enabled."""
        return cls(_host_database(settings, state), 0.0, settings.sqlite.commit_wait, outbox=True,
                   ack=settings.server.ack)

    def emit(self, events: Sequence[Event]) -> None:
        """Return once ``events`` are committed (raises when they cannot be: nothing stored)."""
        try:
            self.group.commit([(e.id, e.time_ns, e.uid, e.event, e.to_json(), e if e.stamped else None)
                               for e in events])
        except sqlite3.OperationalError as exc:
            if is_storage_full(exc):  # the store is down, not the request wrong
                if _full_log.allow("full"):
                    log.error("the event store %s cannot write (%s): refusing writes with 507 until it can "
                              "(%d more refusals not logged)", self.db.path, exc, _full_log.suppressed("full"))
                raise StorageFull(f"the event store cannot write ({exc}); nothing was stored, try again later") from exc
            raise  # locked/busy past the timeout: a 503 by the server's error handler

    def _insert(self, conn: sqlite3.Connection, rows: List[tuple]) -> None:
        conn.executemany(f"INSERT OR IGNORE INTO {self.table} (id, time_ns, uid, event, data) VALUES (?, ?, ?, ?, ?)",
                         _stamp(conn, rows))
        if self.retention_ns and time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + 600
            self._delete(conn, "time_ns < ?", time.time_ns() - self.retention_ns)

    def _delete(self, conn: sqlite3.Connection, where: str, arg: int) -> None:
        """Delete old events, never one a sink fed from the log has not confirmed, and never the
        newest row: ``seq`` is max + 1 (no AUTOINCREMENT), so an emptied table would hand out
        numbers again that the cursors have passed."""
        sql = f"DELETE FROM {self.table} WHERE {where} AND seq < (SELECT max(seq) FROM {self.table})"
        args: List[int] = [arg]
        if self.followers:
            marks = ", ".join("?" * len(self.followers))
            sql += f" AND seq <= (SELECT coalesce(min(seq), 0) FROM sink_cursors WHERE sink IN ({marks}))"
            args += self.followers  # type: ignore[arg-type]
        conn.execute(sql, args)

    # -- the durable log the other sinks follow (statskit.sinks.relay) -------------------------

    def follow(self, name: str) -> None:
        """Register a sink fed from this log. A new one starts at the log's end: at start-up, before
        this process accepts an event, so nothing acknowledged from now on is skipped."""
        if name not in self.followers:
            self.followers.append(name)
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO sink_cursors (sink, seq) VALUES (?, "
                         f"(SELECT coalesce(max(seq), 0) FROM {self.table}))", (name,))

    def cursor(self, name: str) -> int:
        row = self.db.connection().execute("SELECT seq FROM sink_cursors WHERE sink = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, seq: int) -> None:
        """``name`` has stored every event up to ``seq``; in outbox mode, trim what all have."""
        # Queued on the group commits' file lock: this commit (in outbox mode deleting a batch of
        # rows, tens of ms under load) and their leaders wake each other at once, where SQLite's
        # busy handler sleeps grow to 25-100 ms.
        with self.commit_lock.held(), self.db.transaction() as conn:
            advance_cursor(conn, name, seq)
            if self.outbox:
                self._delete(conn, "seq <= ?", seq)

    def last_seq(self) -> int:
        return int(self.db.connection().execute(f"SELECT coalesce(max(seq), 0) FROM {self.table}").fetchone()[0])

    def read_after(self, seq: int, limit: int) -> List[Tuple[int, Event]]:
        """Up to ``limit`` events after ``seq``, in log order, with their numbers.

        The sinks fed from the log read the same rows at about the same time (stdout, the
        Prometheus counts, InfluxDB), and decoding a row costs more than reading it: the last
        ``RECENT`` decoded events are shared (a row never changes, and no sink changes an event)."""
        rows = self.read_stored_after(seq, limit)
        out = []
        recent = self._recent
        for seq_, time_ns, data in rows:
            event = recent.get(seq_)
            if event is None:
                event = Event.from_dict(orjson.loads(data), time_ns)  # exact: the JSON keeps microseconds
                event._json = data  # what to_json() would give again: the stdout lines reuse it
                recent[seq_] = event
            out.append((seq_, event))
        if len(recent) > RECENT and rows:  # keep the newest half (deleting from a dict's front is O(n) a time)
            newest = rows[-1][0]
            self._recent = {k: v for k, v in list(recent.items()) if k > newest - RECENT // 2}
        return out

    def read_stored_after(self, seq: int, limit: int) -> List[Tuple[int, int, str]]:
        """Up to ``limit`` rows after ``seq`` as stored: ``(seq, time_ns, Event.to_json())``, for
        a sink that formats them without decoding them into Events (the InfluxDB lines)."""
        return self.db.connection().execute(f"SELECT seq, time_ns, data FROM {self.table} WHERE seq > ? ORDER BY seq LIMIT ?",
                                            (seq, limit)).fetchall()

    def count_between(self, after: int, upto: int) -> int:
        return int(self.db.connection().execute(f"SELECT count(*) FROM {self.table} WHERE seq > ? AND seq <= ?",
                                                (after, upto)).fetchone()[0])

    def get(self, event_id: str) -> Optional[Event]:
        row = self.db.connection().execute(f"SELECT data FROM {self.table} WHERE id = ?", (event_id,)).fetchone()
        return Event.from_dict(orjson.loads(row[0])) if row else None

    def query(self, uid: Optional[str] = None, event: Optional[str] = None, since_ns: Optional[int] = None,
              until_ns: Optional[int] = None, limit: int = 100) -> List[Event]:
        """Newest first."""
        where, args = [], []
        for clause, value in (("uid = ?", uid), ("event = ?", event), ("time_ns >= ?", since_ns), ("time_ns < ?", until_ns)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT data FROM {self.table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_ns DESC, seq DESC LIMIT ?"
        return [Event.from_dict(orjson.loads(row[0])) for row in self.db.connection().execute(sql, (*args, int(limit)))]

    def count(self) -> int:
        return self.db.connection().execute(f"SELECT count(*) FROM {self.table}").fetchone()[0]

    def flush(self, timeout: Optional[float] = None) -> None:
        self.group.flush(timeout)  # nothing with ack = durable: emit commits

    def close(self, timeout: Optional[float] = None) -> None:
        self.group.close(timeout)  # the database's connections are closed by its owner
