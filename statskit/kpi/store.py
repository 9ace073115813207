"""The KPI database: its own SQLite file (``kpi.db``, WAL), with the original's tables plus the
tailer's file positions, the engine's clock and the skip counters, so that one transaction
holds a batch of lines' effects and the offsets that produced them.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Dict, Iterable, List, Optional, Tuple

import orjson

from .indicators import Dimension

SCHEMA = """
CREATE TABLE IF NOT EXISTS indicator_period (timestamp INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS indicator_dimension (
    id INTEGER PRIMARY KEY, value0 TEXT, value1 TEXT, value2 TEXT,
    key TEXT NOT NULL UNIQUE                -- JSON of the values: NULLs are never equal in UNIQUE
);
CREATE INDEX IF NOT EXISTS indicator_dimension_value0 ON indicator_dimension (value0);
CREATE TABLE IF NOT EXISTS indicator_record (
    id INTEGER PRIMARY KEY, indicator_id INTEGER NOT NULL, value INTEGER NOT NULL,
    period_id INTEGER NOT NULL REFERENCES indicator_period (timestamp),
    dimension_id INTEGER NOT NULL REFERENCES indicator_dimension (id),
    UNIQUE (indicator_id, period_id, dimension_id)
);
CREATE INDEX IF NOT EXISTS indicator_record_period ON indicator_record (period_id);
CREATE TABLE IF NOT EXISTS indicator_state (
    id INTEGER PRIMARY KEY, indicator_id INTEGER NOT NULL, state TEXT NOT NULL,
    period_id INTEGER NOT NULL REFERENCES indicator_period (timestamp),
    dimension_id INTEGER NOT NULL REFERENCES indicator_dimension (id),
    UNIQUE (indicator_id, period_id, dimension_id)
);
CREATE TABLE IF NOT EXISTS kpi (
    id INTEGER PRIMARY KEY, kpi_id INTEGER NOT NULL, agg_kind TEXT NOT NULL, agg_value TEXT NOT NULL,
    kpi_value TEXT NOT NULL, UNIQUE (kpi_id, agg_value)
);
CREATE INDEX IF NOT EXISTS kpi_kpi_id ON kpi (kpi_id);
CREATE INDEX IF NOT EXISTS kpi_agg_kind ON kpi (agg_kind);
CREATE TABLE IF NOT EXISTS log_file (       -- the tailer's files, known by identity
    id INTEGER PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    fp_len INTEGER NOT NULL, fp_hash TEXT NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL,
    UNIQUE (dev, ino)
);
CREATE TABLE IF NOT EXISTS kpi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kpi_counter (
    name TEXT NOT NULL, reason TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (name, reason)
) WITHOUT ROWID
"""


def hour_start(ts: float) -> int:
    """The epoch of the start of the local hour holding ``ts``."""
    moment = datetime.fromtimestamp(ts).replace(minute=0, second=0, microsecond=0)
    return int(moment.timestamp())


def as_local(ts: int) -> datetime:
    return datetime.fromtimestamp(ts)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class Writer:
    """Write operations inside one open transaction (``conn``), with a dimension id cache."""

    def __init__(self) -> None:
        self._dims: Dict[Dimension, int] = {}

    def forget_dimensions(self) -> None:
        self._dims = {}

    def dimension_id(self, conn: sqlite3.Connection, dimension: Dimension) -> int:
        found = self._dims.get(dimension)
        if found is not None:
            return found
        key = orjson.dumps(list(dimension)).decode()
        row = conn.execute("SELECT id FROM indicator_dimension WHERE key = ?", (key,)).fetchone()
        if row is None:
            values = list(dimension) + [None] * (3 - len(dimension))
            cur = conn.execute("INSERT INTO indicator_dimension (value0, value1, value2, key) VALUES (?, ?, ?, ?)",
                               (*values[:3], key))
            found = int(cur.lastrowid)  # type: ignore[arg-type]
        else:
            found = int(row[0])
        self._dims[dimension] = found
        return found

    def write(self, conn: sqlite3.Connection, table: str, period: int,
              rows: Iterable[Tuple[int, Dimension, int, str]]) -> None:
        """Upsert the period, then each row's value (records) or state (states)."""
        conn.execute("INSERT OR IGNORE INTO indicator_period (timestamp) VALUES (?)", (period,))
        column, index = ("value", 2) if table == "indicator_record" else ("state", 3)
        conn.executemany(
            f"INSERT INTO {table} (indicator_id, {column}, period_id, dimension_id) VALUES (?, ?, ?, ?) "
            f"ON CONFLICT (indicator_id, period_id, dimension_id) DO UPDATE SET {column} = excluded.{column}",
            [(row[0], row[index], period, self.dimension_id(conn, row[1])) for row in rows])

    def cleanup(self, conn: sqlite3.Connection, period: int) -> None:
        """Forget records, states and periods older than a year before ``period``."""
        moment = as_local(period)
        try:
            limit = epoch(moment.replace(year=moment.year - 1))
        except ValueError:  # 29 February
            limit = epoch(moment - timedelta(days=365))
        for table in ("indicator_record", "indicator_state"):
            conn.execute(f"DELETE FROM {table} WHERE period_id < ?", (limit,))
        conn.execute("DELETE FROM indicator_period WHERE timestamp < ?", (limit,))
        conn.execute("DELETE FROM indicator_dimension WHERE id NOT IN (SELECT dimension_id FROM indicator_record) "
                     "AND id NOT IN (SELECT dimension_id FROM indicator_state)")
        self.forget_dimensions()


def sums(conn: sqlite3.Connection, start: int, stop: int) -> Dict[Tuple[int, Dimension], int]:
    """Record values summed per (indicator, dimension) over ``start <= period <= stop``."""
    result: Dict[Tuple[int, Dimension], int] = {}
    for indicator, v0, v1, v2, total in conn.execute(
            "SELECT r.indicator_id, d.value0, d.value1, d.value2, SUM(r.value) FROM indicator_record r "
            "JOIN indicator_dimension d ON d.id = r.dimension_id WHERE r.period_id BETWEEN ? AND ? "
            "GROUP BY r.indicator_id, r.dimension_id", (start, stop)):
        result[(indicator, tuple(v for v in (v0, v1, v2) if v is not None))] = int(total)
    return result


def put_kpi(conn: sqlite3.Connection, kpi_id: int, kind: str, value: str, stored: dict) -> None:
    conn.execute("INSERT INTO kpi (kpi_id, agg_kind, agg_value, kpi_value) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (kpi_id, agg_value) DO UPDATE SET kpi_value = excluded.kpi_value",
                 (kpi_id, kind, value, orjson.dumps(stored).decode()))


def last_record_period(conn: sqlite3.Connection) -> Optional[int]:
    row = conn.execute("SELECT MAX(period_id) FROM indicator_record").fetchone()
    return None if row[0] is None else int(row[0])


def states_of(conn: sqlite3.Connection, period: int) -> List[Tuple[int, Dimension, str]]:
    return [(ind, tuple(v for v in (v0, v1, v2) if v is not None), state) for ind, v0, v1, v2, state in conn.execute(
        "SELECT s.indicator_id, d.value0, d.value1, d.value2, s.state FROM indicator_state s "
        "JOIN indicator_dimension d ON d.id = s.dimension_id WHERE s.period_id = ?", (period,))]


def last_state_period(conn: sqlite3.Connection) -> Optional[int]:
    row = conn.execute("SELECT MAX(period_id) FROM indicator_state").fetchone()
    return None if row[0] is None else int(row[0])


def get_meta(conn: sqlite3.Connection, key: str) -> Optional[str]:
    row = conn.execute("SELECT value FROM kpi_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: Optional[str]) -> None:
    if value is None:
        conn.execute("DELETE FROM kpi_meta WHERE key = ?", (key,))
    else:
        conn.execute("INSERT OR REPLACE INTO kpi_meta (key, value) VALUES (?, ?)", (key, value))


def add_counters(conn: sqlite3.Connection, name: str, amounts: Dict[str, int]) -> None:
    conn.executemany("INSERT INTO kpi_counter (name, reason, value) VALUES (?, ?, ?) "
                     "ON CONFLICT (name, reason) DO UPDATE SET value = value + excluded.value",
                     [(name, reason, n) for reason, n in amounts.items() if n])


def counters(conn: sqlite3.Connection) -> List[Tuple[str, str, int]]:
    return [(str(n), str(r), int(v)) for n, r, v in conn.execute("SELECT name, reason, value FROM kpi_counter")]
