"""The embedded telemetry store: ``<data_dir>/telemetry.db`` (SQLite, WAL), its own file so
that a busy telemetry writer never holds the lock of the shared state and event store.

Tables follow the original's PostgreSQL schema (``peer_connections`` and ``substrate_logs`` /
``tetcore_logs`` with the whole message as JSON), plus two columns copied from the connection
into each log row (``audit``, and ``msg`` out of the JSON) so that the purge and the part-2
queries (per peer, per message type, newest first) run on indexes.

    >>> import tempfile, os
    >>> store = SQLiteTelemetryStore(os.path.join(tempfile.mkdtemp(), "telemetry.db"))
    >>> cid = store.open_connection("127.0.0.1:4000", audit=False)
    >>> from statskit.telemetry.parsing import parse_frame
    >>> store.insert_messages([Row(cid, False, parse_frame('{"msg": "a", "ts": "2020-01-01T00:00:00Z"}'))])
    >>> store.count_messages()
    1
    >>> store.purge("2021-01-01T00:00:00.000000")
    1
"""
from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime, timezone
from typing import Iterable, List, Optional, Sequence

from ..state.sqlite import SQLiteDB
from .parsing import NodeInfo, dumps, format_utc, now_utc
from .queries_sqlite import BENCHMARKS_SCHEMA, SQLiteQueries
from .store import ORPHAN_GRACE, Row, StoreUnavailable, TelemetryStore

DATABASE_NAME = "telemetry.db"


def _utc(epoch: float) -> str:
    """The stored time form of a Unix time."""
    return format_utc(datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None))


def schema(table: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS peer_connections (
    id             INTEGER PRIMARY KEY,
    ip_addr        TEXT NOT NULL,
    peer_id        TEXT,
    created_at     TEXT NOT NULL,
    audit          INTEGER NOT NULL DEFAULT 0,
    name           TEXT,
    chain          TEXT,
    version        TEXT,
    authority      INTEGER,
    startup_time   INTEGER,
    implementation TEXT,
    closed_at      TEXT,  -- NULL while the connection is open: the purge keeps such rows
    listener       TEXT   -- instance id of the listener process holding it (presence.py)
);
CREATE INDEX IF NOT EXISTS peer_connections_peer_id ON peer_connections (peer_id, created_at);
CREATE INDEX IF NOT EXISTS peer_connections_open ON peer_connections (listener) WHERE closed_at IS NULL;
CREATE TABLE IF NOT EXISTS telemetry_listeners (instance TEXT PRIMARY KEY, beat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS {table} (
    id                 INTEGER PRIMARY KEY,
    created_at         TEXT NOT NULL,     -- UTC, fixed-width ISO: text order is time order
    peer_connection_id INTEGER NOT NULL,
    audit              INTEGER NOT NULL,  -- the connection's, so the purge needs no join
    msg                TEXT NOT NULL,     -- logs->>'msg'
    logs               TEXT NOT NULL      -- the whole message, JSON
);
CREATE INDEX IF NOT EXISTS {table}_conn_created ON {table} (peer_connection_id, created_at);
CREATE INDEX IF NOT EXISTS {table}_conn_msg_created ON {table} (peer_connection_id, msg, created_at);
CREATE INDEX IF NOT EXISTS {table}_expiry ON {table} (audit, created_at);
CREATE INDEX IF NOT EXISTS {table}_msg_created ON {table} (msg, created_at);  -- /reputation
CREATE TABLE IF NOT EXISTS telemetry_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)
"""


class SQLiteTelemetryStore(SQLiteQueries, TelemetryStore):
    def __init__(self, path: str, table: str = "substrate_logs") -> None:
        self.path, self.table = path, table
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            # Only possible before the file's first page is written (the switch to WAL writes
            # it): lets a purge give pages back to the file system.
            first = sqlite3.connect(path)
            try:
                first.execute("PRAGMA auto_vacuum = INCREMENTAL")
                first.execute("PRAGMA journal_mode = WAL")
            finally:
                first.close()
        self.db = SQLiteDB(path)
        with self.db.transaction() as conn:  # a file of an older statskit: the new column first
            columns = [r[1] for r in conn.execute("PRAGMA table_info(peer_connections)")]
            if columns and "listener" not in columns:
                conn.execute("ALTER TABLE peer_connections ADD COLUMN listener TEXT")
        self.db.ensure_schema(schema(table) + ";" + BENCHMARKS_SCHEMA)
        self._insert = (f"INSERT INTO {table} (created_at, peer_connection_id, audit, msg, logs) "
                        f"VALUES (?, ?, ?, ?, ?)")

    @classmethod
    def in_data_dir(cls, data_dir: str, table: str = "substrate_logs") -> "SQLiteTelemetryStore":
        os.makedirs(data_dir, exist_ok=True)
        return cls(os.path.join(data_dir, DATABASE_NAME), table)

    def _write(self, sql: str, params: Sequence = ()) -> sqlite3.Cursor:
        try:
            with self.db.transaction() as conn:
                return conn.execute(sql, params)
        except sqlite3.OperationalError as exc:  # locked, busy, disk full, I/O: worth a retry
            raise StoreUnavailable(str(exc)) from exc

    def open_connection(self, ip_addr: str, audit: bool, listener: Optional[str] = None) -> int:
        cur = self._write("INSERT INTO peer_connections (ip_addr, created_at, audit, listener) VALUES (?, ?, ?, ?)",
                          (ip_addr, now_utc(), int(audit), listener))
        assert cur.lastrowid is not None  # an INSERT always has one
        return int(cur.lastrowid)

    def update_connection(self, connection_id: int, info: NodeInfo) -> None:
        self._write("UPDATE peer_connections SET peer_id = ?, name = COALESCE(?, name), chain = COALESCE(?, chain), "
                    "version = COALESCE(?, version), authority = COALESCE(?, authority), "
                    "startup_time = COALESCE(?, startup_time), implementation = COALESCE(?, implementation) "
                    "WHERE id = ?",
                    (info.peer_id, info.name, info.chain, info.version,
                     None if info.authority is None else int(info.authority), info.startup_time,
                     info.implementation, connection_id))

    def close_connection(self, connection_id: int) -> None:
        self._write("UPDATE peer_connections SET closed_at = ? WHERE id = ?", (now_utc(), connection_id))

    def beat_listener(self, instance: str, open_ids: Sequence[int]) -> int:
        try:
            with self.db.transaction() as conn:
                known = conn.execute("SELECT 1 FROM telemetry_listeners WHERE instance = ?", (instance,)).fetchone()
                conn.execute("INSERT INTO telemetry_listeners (instance, beat) VALUES (?, ?) "
                             "ON CONFLICT (instance) DO UPDATE SET beat = excluded.beat", (instance, time.time()))
                if known or not open_ids:
                    return 0
                ids = list(open_ids)
                return conn.execute(f"UPDATE peer_connections SET closed_at = NULL WHERE listener = ? AND id IN "
                                    f"({','.join('?' * len(ids))})", [instance, *ids]).rowcount
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close_orphans(self, timeout: float) -> int:
        now = time.time()
        closed = 0
        try:
            with self.db.transaction() as conn:
                stale = conn.execute("SELECT instance, beat FROM telemetry_listeners WHERE beat < ?",
                                     (now - timeout,)).fetchall()
                for instance, beat in stale:
                    closed += conn.execute("UPDATE peer_connections SET closed_at = ? WHERE listener = ? AND "
                                           "closed_at IS NULL", (_utc(beat), instance)).rowcount
                    conn.execute("DELETE FROM telemetry_listeners WHERE instance = ?", (instance,))
                closed += conn.execute(
                    "UPDATE peer_connections SET closed_at = ? WHERE closed_at IS NULL AND listener IS NOT NULL "
                    "AND created_at < ? AND listener NOT IN (SELECT instance FROM telemetry_listeners)",
                    (now_utc(), _utc(now - timeout - ORPHAN_GRACE))).rowcount
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return closed

    def forget_listener(self, instance: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE peer_connections SET closed_at = ? WHERE listener = ? AND closed_at IS NULL",
                         (now_utc(), instance))
            conn.execute("DELETE FROM telemetry_listeners WHERE instance = ?", (instance,))

    def insert_messages(self, rows: Iterable[Row]) -> Optional[int]:
        params = [(r.message.created_at, r.connection_id, int(r.audit), r.message.msg, dumps(r.message.logs))
                  for r in rows]
        try:
            with self.db.transaction() as conn:
                conn.executemany(self._insert, params)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return None  # SQLite stores every row or none (no per-row refusal to report)

    def claim_purge(self, interval: float, now: float) -> bool:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO telemetry_meta (key, value) VALUES ('last_purge', 0)")
            cur = conn.execute("UPDATE telemetry_meta SET value = ? WHERE key = 'last_purge' AND value <= ?",
                               (now, now - interval))
            return cur.rowcount == 1

    def purge(self, cutoff: str, batch: int = 5000) -> int:
        """Delete expiring (non-audit) rows older than ``cutoff`` in short transactions, then
        the connections closed before ``cutoff`` left without rows; returns the log rows deleted."""
        deleted = 0
        while True:
            cur = self._write(f"DELETE FROM {self.table} WHERE id IN (SELECT id FROM {self.table} "
                              f"WHERE audit = 0 AND created_at < ? LIMIT ?)", (cutoff, batch))
            deleted += cur.rowcount
            self._reclaim()
            if cur.rowcount < batch:
                break
        self._write(f"DELETE FROM peer_connections WHERE audit = 0 AND closed_at < ? AND NOT EXISTS "
                    f"(SELECT 1 FROM {self.table} l WHERE l.peer_connection_id = peer_connections.id)", (cutoff,))
        return deleted

    def _reclaim(self, pages: int = 2000) -> None:
        """Give up to ``pages`` free pages back to the file system (bounded: a short lock)."""
        try:
            # executescript steps the pragma to its end; execute() would free one page only
            # (the pragma returns no rows, so the sqlite3 module stops after its first step).
            self.db.connection().executescript(f"PRAGMA incremental_vacuum({int(pages)});")
        except sqlite3.OperationalError:
            pass  # busy: the free pages are reused by the next inserts anyway

    def count_messages(self, audit: Optional[bool] = None) -> int:
        sql = f"SELECT count(*) FROM {self.table}"
        params: List = []
        if audit is not None:
            sql += " WHERE audit = ?"
            params.append(int(audit))
        return int(self.db.connection().execute(sql, params).fetchone()[0])

    def messages(self, limit: int = 1000) -> List[dict]:
        cur = self.db.connection().execute(
            f"SELECT l.created_at, l.msg, l.logs, c.peer_id, c.ip_addr, c.audit FROM {self.table} l "
            f"JOIN peer_connections c ON c.id = l.peer_connection_id ORDER BY l.id LIMIT ?", (limit,))
        import orjson

        return [{"created_at": r[0], "msg": r[1], "logs": orjson.loads(r[2]), "peer_id": r[3], "ip_addr": r[4],
                 "audit": bool(r[5])} for r in cur.fetchall()]

    def connections(self) -> List[dict]:
        cur = self.db.connection().execute("SELECT * FROM peer_connections ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def close(self) -> None:
        self.db.close()
