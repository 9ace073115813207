"""The PostgreSQL telemetry store, with the original's schema (diesel migrations of
substrate-analytics / tetcore-analytics), so that SQL written against the original database
(Grafana dashboards) keeps working: ``peer_connections`` and ``substrate_logs`` (or
``tetcore_logs``) with the whole message in ``logs jsonb``.

Additions, all compatible: ``peer_connections.closed_at`` (the purge keeps open connections),
an index on ``(peer_connection_id, created_at)`` for the per-node queries, and a one-row
``telemetry_meta`` table through which several hosts share one purge round. The schema is
created when missing, under an advisory lock so that hosts starting together do not race.

Driver: psycopg 3 (``pip install 'statskit[postgresql]'``). Messages go in with ``COPY``, one
transaction per batch; a connection per thread, reopened after an error.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Iterable, List, Optional, Sequence

from .parsing import NodeInfo, dumps, now_utc
from .queries_postgres import BENCHMARKS_SCHEMA, PostgresQueries
from .store import ORPHAN_GRACE, Row, StoreUnavailable, TelemetryStore

_SCHEMA_LOCK = 7302401  # pg_advisory_xact_lock key: "statskit telemetry schema"


def schema(table: str) -> List[str]:
    return [
        """CREATE TABLE IF NOT EXISTS peer_connections (
            id SERIAL PRIMARY KEY,
            ip_addr VARCHAR NOT NULL,
            peer_id VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT NOW(),
            audit BOOLEAN NOT NULL DEFAULT false,
            name VARCHAR,
            chain VARCHAR,
            version VARCHAR,
            authority BOOLEAN,
            startup_time BIGINT,
            implementation VARCHAR)""",
        "ALTER TABLE peer_connections ADD COLUMN IF NOT EXISTS closed_at TIMESTAMP",
        "ALTER TABLE peer_connections ADD COLUMN IF NOT EXISTS listener VARCHAR",
        "CREATE INDEX IF NOT EXISTS peer_connections_open_idx ON peer_connections (listener) WHERE closed_at IS NULL",
        # heartbeats (statskit.telemetry.presence), in seconds on the database's clock
        "CREATE TABLE IF NOT EXISTS telemetry_listeners (instance VARCHAR PRIMARY KEY, beat DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS peer_connections_peer_id_idx ON peer_connections (peer_id)",
        f"""CREATE TABLE IF NOT EXISTS {table} (
            id SERIAL PRIMARY KEY,
            created_at TIMESTAMP NOT NULL,
            logs JSONB NOT NULL,
            peer_connection_id INTEGER NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {table}_msg_idx ON {table} ((logs->>'msg'))",
        f"CREATE INDEX IF NOT EXISTS {table}_created_at_msg_idx ON {table} (created_at, (logs->>'msg'))",
        f"CREATE INDEX IF NOT EXISTS {table}_conn_created_idx ON {table} (peer_connection_id, created_at)",
        # /nodes/logs?msg= and the live feed: a node's messages of one type, newest first
        f"CREATE INDEX IF NOT EXISTS {table}_conn_msg_created_idx ON {table} (peer_connection_id, (logs->>'msg'), created_at)",
        "CREATE TABLE IF NOT EXISTS telemetry_meta (key VARCHAR PRIMARY KEY, value DOUBLE PRECISION NOT NULL)",
    ]


_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def jsonb_text(obj: dict) -> str:
    r"""The JSON text of a message as jsonb takes it: jsonb refuses ``\u0000``, which JSON allows,
    so a NUL character is kept as the six characters ``\u0000``.

    >>> jsonb_text({"a": "x\x00y", "b": "\\u0000"})
    '{"a":"x\\\\u0000y","b":"\\\\u0000"}'
    """
    text = dumps(obj)
    return _NUL.sub(r"\1\\\\u0000", text) if "\\u0000" in text else text


def connection_url(url: str) -> str:
    """libpq takes ``postgres://`` and ``postgresql://``; diesel's ``DATABASE_URL`` is either."""
    return url


class PostgresTelemetryStore(PostgresQueries, TelemetryStore):
    def __init__(self, url: str, table: str = "substrate_logs") -> None:
        import psycopg  # only needed with this store

        self._psycopg = psycopg
        self.url, self.table = connection_url(url), table
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list = []
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in schema(table) + BENCHMARKS_SCHEMA:
                cur.execute(statement)

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = self._psycopg.connect(self.url, connect_timeout=10)
            except self._psycopg.OperationalError as exc:
                raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _transaction(self) -> Any:
        store = self

        class _Tx:
            def __enter__(self):  # type: ignore[no-untyped-def]
                self.conn = store._connection()
                self.cur = self.conn.cursor()
                return self.cur

            def __exit__(self, kind, exc, tb):  # type: ignore[no-untyped-def]
                try:
                    if kind is None:
                        self.conn.commit()
                    else:
                        self.conn.rollback()
                except store._psycopg.Error:
                    self.conn.close()
                    if kind is None:
                        raise StoreUnavailable("commit failed")
                finally:
                    self.cur.close()
                if isinstance(exc, store._psycopg.OperationalError):
                    self.conn.close()  # the next call reconnects
                    raise StoreUnavailable(str(exc)) from exc
                return False

        return _Tx()

    def open_connection(self, ip_addr: str, audit: bool, listener: Optional[str] = None) -> int:
        with self._transaction() as cur:
            cur.execute("INSERT INTO peer_connections (ip_addr, audit, created_at, listener) VALUES (%s, %s, %s, %s) "
                        "RETURNING id", (ip_addr, audit, now_utc(), listener))
            return int(cur.fetchone()[0])

    def update_connection(self, connection_id: int, info: NodeInfo) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE peer_connections SET peer_id = %s, name = COALESCE(%s, name), "
                        "chain = COALESCE(%s, chain), version = COALESCE(%s, version), "
                        "authority = COALESCE(%s, authority), startup_time = COALESCE(%s, startup_time), "
                        "implementation = COALESCE(%s, implementation) WHERE id = %s",
                        (info.peer_id, info.name, info.chain, info.version, info.authority, info.startup_time,
                         info.implementation, connection_id))

    def close_connection(self, connection_id: int) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE peer_connections SET closed_at = %s WHERE id = %s", (now_utc(), connection_id))

    def beat_listener(self, instance: str, open_ids: Sequence[int]) -> int:
        with self._transaction() as cur:
            # xmax = 0: the row was inserted (it was missing), atomically with the upsert, so a
            # host reaping it at this very moment cannot make this listener miss that it was reaped.
            cur.execute("INSERT INTO telemetry_listeners (instance, beat) VALUES (%s, extract(epoch FROM "
                        "clock_timestamp())) ON CONFLICT (instance) DO UPDATE SET beat = excluded.beat "
                        "RETURNING (xmax = 0)", (instance,))
            inserted = cur.fetchone()[0]
            if not inserted or not open_ids:
                return 0
            cur.execute("UPDATE peer_connections SET closed_at = NULL WHERE listener = %s AND id = ANY(%s)",
                        (instance, list(open_ids)))
            return int(cur.rowcount)

    def close_orphans(self, timeout: float) -> int:
        with self._transaction() as cur:
            cur.execute("WITH stale AS (DELETE FROM telemetry_listeners WHERE beat < extract(epoch FROM "
                        "clock_timestamp()) - %s RETURNING instance, beat) UPDATE peer_connections c "
                        "SET closed_at = timezone('UTC', to_timestamp(s.beat)) FROM stale s "
                        "WHERE c.listener = s.instance AND c.closed_at IS NULL", (timeout,))
            closed = int(cur.rowcount)
            cur.execute("UPDATE peer_connections c SET closed_at = timezone('UTC', now()) WHERE c.closed_at IS NULL "
                        "AND c.listener IS NOT NULL AND c.created_at < timezone('UTC', now()) - make_interval(secs => %s) "
                        "AND NOT EXISTS (SELECT 1 FROM telemetry_listeners t WHERE t.instance = c.listener)",
                        (timeout + ORPHAN_GRACE,))
            return closed + int(cur.rowcount)

    def forget_listener(self, instance: str) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE peer_connections SET closed_at = %s WHERE listener = %s AND closed_at IS NULL",
                        (now_utc(), instance))
            cur.execute("DELETE FROM telemetry_listeners WHERE instance = %s", (instance,))

    def insert_messages(self, rows: Iterable[Row]) -> int:
        """One COPY; if PostgreSQL refuses the data, row by row, skipping (and returning the
        number of) the rows it refuses, so one bad message cannot block the writer."""
        params = [(r.message.created_at, jsonb_text(r.message.logs), r.connection_id) for r in rows]
        try:
            with self._transaction() as cur:
                with cur.copy(f"COPY {self.table} (created_at, logs, peer_connection_id) FROM STDIN") as copy:
                    for p in params:
                        copy.write_row(p)
            return 0
        except self._psycopg.DataError:
            pass
        refused = 0
        with self._transaction() as cur:
            for p in params:
                try:
                    with cur.connection.transaction():  # a savepoint per row
                        cur.execute(f"INSERT INTO {self.table} (created_at, logs, peer_connection_id) "
                                    f"VALUES (%s, %s, %s)", p)
                except self._psycopg.DataError:
                    refused += 1
        return refused

    def claim_purge(self, interval: float, now: float) -> bool:
        with self._transaction() as cur:
            cur.execute("INSERT INTO telemetry_meta (key, value) VALUES ('last_purge', 0) ON CONFLICT DO NOTHING")
            cur.execute("UPDATE telemetry_meta SET value = %s WHERE key = 'last_purge' AND value <= %s",
                        (now, now - interval))
            return cur.rowcount == 1

    def purge(self, cutoff: str, batch: int = 5000) -> int:
        deleted = 0
        while True:
            with self._transaction() as cur:
                cur.execute(f"DELETE FROM {self.table} WHERE id IN (SELECT l.id FROM {self.table} l "
                            f"JOIN peer_connections c ON c.id = l.peer_connection_id "
                            f"WHERE NOT c.audit AND l.created_at < %s LIMIT %s)", (cutoff, batch))
                n = cur.rowcount
            deleted += n
            if n < batch:
                break
        with self._transaction() as cur:
            cur.execute(f"DELETE FROM peer_connections c WHERE NOT c.audit AND c.closed_at < %s AND NOT EXISTS "
                        f"(SELECT 1 FROM {self.table} l WHERE l.peer_connection_id = c.id)", (cutoff,))
        return deleted  # autovacuum reclaims the space

    def count_messages(self, audit: Optional[bool] = None) -> int:
        with self._transaction() as cur:
            if audit is None:
                cur.execute(f"SELECT count(*) FROM {self.table}")
            else:
                cur.execute(f"SELECT count(*) FROM {self.table} l JOIN peer_connections c "
                            f"ON c.id = l.peer_connection_id WHERE c.audit = %s", (audit,))
            return int(cur.fetchone()[0])

    def messages(self, limit: int = 1000) -> List[dict]:
        with self._transaction() as cur:
            cur.execute(f"SELECT to_char(l.created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), l.logs->>'msg', l.logs, "
                        f"c.peer_id, c.ip_addr, c.audit FROM {self.table} l "
                        f"JOIN peer_connections c ON c.id = l.peer_connection_id ORDER BY l.id LIMIT %s", (limit,))
            return [{"created_at": r[0], "msg": r[1] or "", "logs": r[2], "peer_id": r[3], "ip_addr": r[4],
                     "audit": r[5]} for r in cur.fetchall()]

    def connections(self) -> List[dict]:
        with self._transaction() as cur:
            cur.execute("SELECT * FROM peer_connections ORDER BY id")
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            try:
                conn.close()
            except Exception:
                pass
        self._local = threading.local()
