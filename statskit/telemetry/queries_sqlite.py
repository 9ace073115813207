"""The read side of the SQLite telemetry store (issue 14): per-node queries, the reputation
messages, table sizes, the live feed's rows and the benchmarks registry.

Mixed into :class:`~statskit.telemetry.store_sqlite.SQLiteTelemetryStore`; every read runs on
the calling thread's own connection (WAL: readers never wait for the writer).
"""
from __future__ import annotations

import sqlite3
from typing import Any, Dict, Iterator, List, Optional, Tuple

import orjson

from ..state.sqlite import SQLiteDB
from .parsing import dumps, now_utc

BENCHMARKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS benchmarks (
    id         INTEGER PRIMARY KEY,
    setup      TEXT NOT NULL,   -- JSON
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS benchmark_events (
    id           INTEGER PRIMARY KEY,
    benchmark_id INTEGER NOT NULL REFERENCES benchmarks (id),
    name         TEXT NOT NULL,
    phase        TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS benchmark_events_benchmark ON benchmark_events (benchmark_id, name)
"""

NODE_COLUMNS = ("id", "ip_addr", "peer_id", "created_at", "audit", "name", "chain", "version", "authority",
                "startup_time", "implementation")
_PEER_CONNECTIONS = "l.peer_connection_id IN (SELECT id FROM peer_connections WHERE peer_id = ?)"


def node_row(row: Any) -> Dict[str, Any]:
    node = dict(zip(NODE_COLUMNS, row))
    node["audit"] = bool(node["audit"])
    if node["authority"] is not None:
        node["authority"] = bool(node["authority"])
    return node


class SQLiteQueries:
    db: SQLiteDB
    table: str

    def _rows(self, sql: str, params: Any = ()) -> List[Any]:
        return self.db.connection().execute(sql, params).fetchall()

    def latest_nodes(self) -> List[Dict[str, Any]]:
        cols = ", ".join(NODE_COLUMNS)
        return [node_row(r) for r in self._rows(
            f"SELECT {cols} FROM peer_connections c WHERE peer_id IS NOT NULL AND id = (SELECT c2.id FROM "
            f"peer_connections c2 WHERE c2.peer_id = c.peer_id ORDER BY c2.created_at DESC, c2.id DESC LIMIT 1) "
            f"ORDER BY peer_id")]

    def log_stats(self, peer_id: str) -> List[Tuple[str, int]]:
        return [(r[0], int(r[1])) for r in self._rows(
            f"SELECT l.msg, count(*) AS qty FROM {self.table} l WHERE {_PEER_CONNECTIONS} "
            f"GROUP BY l.msg ORDER BY qty DESC, l.msg", (peer_id,))]

    def peer_logs(self, peer_id: str, msg: Optional[str], target: Optional[str], start: str, end: str,
                  limit: int, before: Optional[Tuple[str, int]] = None) -> List[Dict[str, Any]]:
        # One indexed backward range scan per connection of the peer (each stops at ``limit``
        # rows), merged here: an IN over the connections made SQLite sort all of a node's rows,
        # or walk the msg index of every node.
        index = f"{self.table}_conn_msg_created" if msg is not None else f"{self.table}_conn_created"
        where = ["l.peer_connection_id = ?", "l.created_at > ?", "l.created_at < ?"]
        params: List[Any] = [start, end]
        if msg is not None:
            where.append("l.msg = ?")
            params.append(msg)
        if target is not None:
            where.append("json_extract(l.logs, '$.target') = ?")
            params.append(target)
        if before is not None:
            where.append("l.created_at <= ? AND (l.created_at, l.id) < (?, ?)")  # the first: an index bound
            params.extend([before[0], before[0], before[1]])
        sql = (f"SELECT l.id, l.created_at, l.msg, l.logs FROM {self.table} l INDEXED BY {index} "
               f"WHERE {' AND '.join(where)} ORDER BY l.created_at DESC, l.id DESC LIMIT ?")
        found: List[Tuple[str, int, str, str, Any]] = []
        conn = self.db.connection()
        for cid, ip_addr in conn.execute("SELECT id, ip_addr FROM peer_connections WHERE peer_id = ?", (peer_id,)):
            for row_id, created_at, kind, logs in conn.execute(sql, [cid, *params, limit]):
                found.append((created_at, row_id, ip_addr, kind, logs))
        found.sort(reverse=True)
        return [{"id": r[1], "ip_addr": r[2], "peer_id": peer_id, "msg": r[3], "created_at": r[0],
                 "logs": orjson.loads(r[4])} for r in found[:limit]]

    def network_states(self, since: str, until: Optional[str] = None,
                       mentioning: Optional[str] = None) -> Iterator[Tuple[str, str, Dict[str, Any]]]:
        where, params = ["l.msg = 'system.network_state'", "l.created_at > ?"], [since]
        if until is not None:
            where.append("l.created_at < ?")
            params.append(until)
        if mentioning is not None:
            where.append("instr(l.logs, ?) > 0")
            params.append(dumps({"k": mentioning})[5:-1])  # the id as a JSON string
        cur = self.db.connection().execute(
            f"SELECT c.peer_id, l.created_at, l.logs FROM {self.table} l JOIN peer_connections c "
            f"ON c.id = l.peer_connection_id WHERE {' AND '.join(where)} ORDER BY l.created_at DESC, l.id DESC",
            params)
        for peer_id, created_at, logs in cur:
            yield peer_id, created_at, orjson.loads(logs)

    def known_peer_ids(self) -> List[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT peer_id FROM peer_connections WHERE peer_id IS NOT NULL")]

    def relation_sizes(self) -> List[Tuple[str, int]]:
        try:
            return [(r[0], int(r[1])) for r in self._rows(
                "SELECT name, sum(pgsize) AS size FROM dbstat GROUP BY name ORDER BY size DESC, name LIMIT 1000")]
        except sqlite3.OperationalError:  # an SQLite built without the dbstat table: the file as a whole
            pages, size = (self._rows(f"PRAGMA {p}")[0][0] for p in ("page_count", "page_size"))
            return [("telemetry.db", int(pages) * int(size))]

    def pair_rows(self, peer_id: str, msg: str, after: Tuple[str, int], limit: int) -> List[Tuple[int, str, Dict[str, Any]]]:
        conn, found = self.db.connection(), []
        sql = (f"SELECT l.id, l.created_at, l.logs FROM {self.table} l INDEXED BY {self.table}_conn_msg_created "
               f"WHERE l.peer_connection_id = ? AND l.msg = ? AND l.created_at >= ? AND (l.created_at, l.id) > (?, ?) "
               f"ORDER BY l.created_at, l.id LIMIT ?")
        for (cid,) in conn.execute("SELECT id FROM peer_connections WHERE peer_id = ?", (peer_id,)).fetchall():
            found.extend(conn.execute(sql, (cid, msg, after[0], after[0], after[1], limit)).fetchall())
        found.sort(key=lambda r: (r[1], r[0]))
        return [(r[0], r[1], orjson.loads(r[2])) for r in found[:limit]]

    # -- benchmarks --------------------------------------------------------------------

    def create_benchmark(self, setup: Any) -> Dict[str, Any]:
        created_at = now_utc()
        with self.db.transaction() as conn:
            cur = conn.execute("INSERT INTO benchmarks (setup, created_at) VALUES (?, ?)",
                               (orjson.dumps(setup).decode(), created_at))
        return {"id": cur.lastrowid, "setup": setup, "created_at": created_at}

    def benchmarks(self) -> List[Dict[str, Any]]:
        return [{"id": r[0], "setup": orjson.loads(r[1]), "created_at": r[2]} for r in self._rows(
            "SELECT id, setup, created_at FROM benchmarks ORDER BY created_at DESC, id DESC")]

    def benchmark(self, benchmark_id: int) -> Optional[Dict[str, Any]]:
        rows = self._rows("SELECT id, setup, created_at FROM benchmarks WHERE id = ?", (benchmark_id,))
        return {"id": rows[0][0], "setup": orjson.loads(rows[0][1]), "created_at": rows[0][2]} if rows else None

    def create_benchmark_event(self, benchmark_id: int, name: str, phase: str, created_at: str) -> Optional[Dict[str, Any]]:
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM benchmarks WHERE id = ?", (benchmark_id,)).fetchone() is None:
                return None
            cur = conn.execute("INSERT INTO benchmark_events (benchmark_id, name, phase, created_at) "
                               "VALUES (?, ?, ?, ?)", (benchmark_id, name, phase, created_at))
        return {"id": cur.lastrowid, "benchmark_id": benchmark_id, "name": name, "phase": phase,
                "created_at": created_at}

    def benchmark_events(self, benchmark_id: int) -> List[Dict[str, Any]]:
        return [{"id": r[0], "benchmark_id": r[1], "name": r[2], "phase": r[3], "created_at": r[4]}
                for r in self._rows("SELECT id, benchmark_id, name, phase, created_at FROM benchmark_events "
                                    "WHERE benchmark_id = ? ORDER BY name, id", (benchmark_id,))]

    def peer_targets(self, peer_id: str) -> List[str]:
        return [r[0] for r in self._rows(
            f"SELECT DISTINCT json_extract(l.logs, '$.target') AS target FROM {self.table} l "
            f"WHERE {_PEER_CONNECTIONS} AND json_type(l.logs, '$.target') = 'text' ORDER BY target", (peer_id,))]
