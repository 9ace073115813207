"""The read side of the PostgreSQL telemetry store (issue 14), on the original's schema
(``logs jsonb``): per-node queries, reputation messages, table sizes, the live feed's rows and
the original's benchmarks tables (created when missing).

Mixed into :class:`~statskit.telemetry.store_postgres.PostgresTelemetryStore`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .parsing import format_utc, now_utc

BENCHMARKS_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS benchmarks (
        id SERIAL PRIMARY KEY,
        setup JSONB NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'))""",
    """CREATE TABLE IF NOT EXISTS benchmark_events (
        id SERIAL PRIMARY KEY,
        benchmark_id INTEGER NOT NULL REFERENCES benchmarks (id),
        name VARCHAR NOT NULL,
        phase VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS benchmark_events_benchmark_idx ON benchmark_events (benchmark_id, name)",
]

NODE_COLUMNS = ("id", "ip_addr", "peer_id", "created_at", "audit", "name", "chain", "version", "authority",
                "startup_time", "implementation")
_PEER_CONNECTIONS = "l.peer_connection_id IN (SELECT id FROM peer_connections WHERE peer_id = %s)"


def stored(value: Any) -> Any:
    """A timestamp column in the stored text form (as the SQLite store returns it)."""
    return format_utc(value) if isinstance(value, datetime) else value


class PostgresQueries:
    table: str

    def _transaction(self) -> Any:  # the store's
        raise NotImplementedError

    def _rows(self, sql: str, params: Any = ()) -> List[Any]:
        with self._transaction() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def latest_nodes(self) -> List[Dict[str, Any]]:
        cols = ", ".join(NODE_COLUMNS)
        rows = self._rows(f"SELECT DISTINCT ON (peer_id) {cols} FROM peer_connections WHERE peer_id IS NOT NULL "
                          f"ORDER BY peer_id, created_at DESC, id DESC")
        return [dict(zip(NODE_COLUMNS, r[:3] + (stored(r[3]),) + r[4:])) for r in rows]

    def log_stats(self, peer_id: str) -> List[Tuple[str, int]]:
        return [(r[0] or "", int(r[1])) for r in self._rows(
            f"SELECT l.logs->>'msg' AS msg, count(*) AS qty FROM {self.table} l WHERE {_PEER_CONNECTIONS} "
            f"GROUP BY msg ORDER BY qty DESC, msg", (peer_id,))]

    def peer_logs(self, peer_id: str, msg: Optional[str], target: Optional[str], start: str, end: str,
                  limit: int, before: Optional[Tuple[str, int]] = None) -> List[Dict[str, Any]]:
        # Per connection of the peer (LATERAL): an index scan that stops at ``limit`` rows, then
        # merged; an IN over the connections sorted all of a node's rows.
        where = ["l.peer_connection_id = c.id", "l.created_at > %s", "l.created_at < %s"]
        params: List[Any] = [start, end]
        if msg is not None:
            where.append("l.logs->>'msg' = %s")
            params.append(msg)
        if target is not None:
            where.append("l.logs->>'target' = %s")
            params.append(target)
        if before is not None:
            where.append("l.created_at <= %s::timestamp AND (l.created_at, l.id) < (%s::timestamp, %s)")
            params.extend([before[0], before[0], before[1]])
        rows = self._rows(f"SELECT l.id, c.ip_addr, c.peer_id, l.logs->>'msg', l.created_at, l.logs "
                          f"FROM peer_connections c CROSS JOIN LATERAL (SELECT l.id, l.created_at, l.logs "
                          f"FROM {self.table} l WHERE {' AND '.join(where)} "
                          f"ORDER BY l.created_at DESC, l.id DESC LIMIT %s) l WHERE c.peer_id = %s "
                          f"ORDER BY l.created_at DESC, l.id DESC LIMIT %s", [*params, limit, peer_id, limit])
        return [{"id": r[0], "ip_addr": r[1], "peer_id": r[2], "msg": r[3] or "", "created_at": stored(r[4]),
                 "logs": r[5]} for r in rows]

    def network_states(self, since: str, until: Optional[str] = None,
                       mentioning: Optional[str] = None) -> Iterator[Tuple[str, str, Dict[str, Any]]]:
        where, params = ["l.logs->>'msg' = 'system.network_state'", "l.created_at > %s"], [since]
        if until is not None:
            where.append("l.created_at < %s")
            params.append(until)
        if mentioning is not None:
            where.append("(l.logs->'state'->'peerset'->'nodes' ? %s OR l.logs->'network_state'->'peerset'->'nodes' ? %s)")
            params.extend([mentioning, mentioning])
        # Fetched whole: a server-side cursor would hold a transaction open between pages.
        for r in self._rows(f"SELECT c.peer_id, l.created_at, l.logs FROM {self.table} l JOIN peer_connections c "
                            f"ON c.id = l.peer_connection_id WHERE {' AND '.join(where)} "
                            f"ORDER BY l.created_at DESC, l.id DESC LIMIT 100000", params):
            yield r[0], stored(r[1]), r[2]

    def known_peer_ids(self) -> List[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT peer_id FROM peer_connections WHERE peer_id IS NOT NULL")]

    def relation_sizes(self) -> List[Tuple[str, int]]:
        # The original's query (the PostgreSQL wiki's "disk usage"), in bytes; the route formats them.
        return [(r[0], int(r[1])) for r in self._rows(
            "SELECT n.nspname || '.' || c.relname, pg_relation_size(c.oid) AS size FROM pg_class c "
            "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' "
            "ORDER BY size DESC, 1 LIMIT 1000")]

    def pair_rows(self, peer_id: str, msg: str, after: Tuple[str, int], limit: int) -> List[Tuple[int, str, Dict[str, Any]]]:
        rows = self._rows(f"SELECT l.id, l.created_at, l.logs FROM {self.table} l WHERE {_PEER_CONNECTIONS} "
                          f"AND l.logs->>'msg' = %s AND (l.created_at, l.id) > (%s::timestamp, %s) "
                          f"ORDER BY l.created_at, l.id LIMIT %s", (peer_id, msg, after[0], after[1], limit))
        return [(r[0], stored(r[1]), r[2]) for r in rows]

    # -- benchmarks --------------------------------------------------------------------

    def create_benchmark(self, setup: Any) -> Dict[str, Any]:
        from psycopg.types.json import Jsonb

        rows = self._rows("INSERT INTO benchmarks (setup, created_at) VALUES (%s, %s) RETURNING id, setup, created_at",
                          (Jsonb(setup), now_utc()))
        return {"id": rows[0][0], "setup": rows[0][1], "created_at": stored(rows[0][2])}

    def benchmarks(self) -> List[Dict[str, Any]]:
        return [{"id": r[0], "setup": r[1], "created_at": stored(r[2])} for r in self._rows(
            "SELECT id, setup, created_at FROM benchmarks ORDER BY created_at DESC, id DESC")]

    def benchmark(self, benchmark_id: int) -> Optional[Dict[str, Any]]:
        rows = self._rows("SELECT id, setup, created_at FROM benchmarks WHERE id = %s", (benchmark_id,))
        return {"id": rows[0][0], "setup": rows[0][1], "created_at": stored(rows[0][2])} if rows else None

    def create_benchmark_event(self, benchmark_id: int, name: str, phase: str, created_at: str) -> Optional[Dict[str, Any]]:
        rows = self._rows("INSERT INTO benchmark_events (benchmark_id, name, phase, created_at) "
                          "SELECT id, %s, %s, %s FROM benchmarks WHERE id = %s RETURNING id",
                          (name, phase, created_at, benchmark_id))
        if not rows:
            return None
        return {"id": rows[0][0], "benchmark_id": benchmark_id, "name": name, "phase": phase, "created_at": created_at}

    def benchmark_events(self, benchmark_id: int) -> List[Dict[str, Any]]:
        return [{"id": r[0], "benchmark_id": r[1], "name": r[2], "phase": r[3], "created_at": stored(r[4])}
                for r in self._rows("SELECT id, benchmark_id, name, phase, created_at FROM benchmark_events "
                                    "WHERE benchmark_id = %s ORDER BY name, id", (benchmark_id,))]

    def peer_targets(self, peer_id: str) -> List[str]:
        return [r[0] for r in self._rows(
            f"SELECT DISTINCT l.logs->>'target' AS target FROM {self.table} l WHERE {_PEER_CONNECTIONS} "
            f"AND jsonb_typeof(l.logs->'target') = 'string' ORDER BY target", (peer_id,))]
