"""The SQLite backend's :mod:`~statskit.state.protocols`, in the shared state database.

``update`` is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken before the read, so
two workers changing the same key never interleave.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Tuple

from .protocols import Change, T

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv_records (
    tbl   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_logs (
    log  TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    item BLOB NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_log_last (
    log  TEXT PRIMARY KEY,
    last INTEGER NOT NULL
) WITHOUT ROWID;
"""
_CHUNK = 500  # keys per IN (...): well under SQLite's variable limit


class SQLiteRecords:
    def __init__(self, db: Any) -> None:
        self.db = db
        db.ensure_schema(_SCHEMA)

    def update(self, table: str, keys: Sequence[str], change: Change[T]) -> T:
        with self.db.transaction() as conn:
            current: dict = {k: None for k in keys}
            unique = list(current)
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i:i + _CHUNK]
                sql = f"SELECT key, value FROM kv_records WHERE tbl = ? AND key IN ({','.join('?' * len(chunk))})"
                for key, value in conn.execute(sql, (table, *chunk)):
                    current[key] = bytes(value)
            writes, result = change(current)
            conn.executemany("INSERT INTO kv_records (tbl, key, value) VALUES (?, ?, ?) ON CONFLICT (tbl, key) "
                             "DO UPDATE SET value = excluded.value",
                             [(table, k, v) for k, v in writes.items() if v is not None])
            conn.executemany("DELETE FROM kv_records WHERE tbl = ? AND key = ?",
                             [(table, k) for k, v in writes.items() if v is None])
            return result

    def get(self, table: str, key: str) -> Optional[bytes]:
        row = self.db.connection().execute("SELECT value FROM kv_records WHERE tbl = ? AND key = ?",
                                           (table, key)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, table: str) -> Iterator[Tuple[str, bytes]]:
        rows = self.db.connection().execute("SELECT key, value FROM kv_records WHERE tbl = ?", (table,)).fetchall()
        return iter([(k, bytes(v)) for k, v in rows])

    def delete(self, table: str, keys: Sequence[str]) -> int:
        with self.db.transaction() as conn:
            return sum(conn.execute("DELETE FROM kv_records WHERE tbl = ? AND key = ?", (table, k)).rowcount
                       for k in keys)

    def count(self, table: str) -> int:
        return int(self.db.connection().execute("SELECT COUNT(*) FROM kv_records WHERE tbl = ?",
                                                (table,)).fetchone()[0])


class SQLiteLogs:
    def __init__(self, db: Any) -> None:
        self.db = db
        db.ensure_schema(_SCHEMA)

    def append(self, log: str, items: Sequence[bytes]) -> int:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT last FROM kv_log_last WHERE log = ?", (log,)).fetchone()
            last = row[0] if row else 0
            conn.executemany("INSERT INTO kv_logs (log, seq, item) VALUES (?, ?, ?)",
                             [(log, last + i, item) for i, item in enumerate(items, 1)])
            last += len(items)
            conn.execute("INSERT INTO kv_log_last (log, last) VALUES (?, ?) ON CONFLICT (log) "
                         "DO UPDATE SET last = excluded.last", (log, last))
            return last

    def read(self, log: str, after: int, limit: int) -> List[Tuple[int, bytes]]:
        rows = self.db.connection().execute("SELECT seq, item FROM kv_logs WHERE log = ? AND seq > ? ORDER BY seq "
                                            "LIMIT ?", (log, after, limit)).fetchall()
        return [(seq, bytes(item)) for seq, item in rows]

    def trim(self, log: str, upto: int) -> int:
        with self.db.transaction() as conn:
            return int(conn.execute("DELETE FROM kv_logs WHERE log = ? AND seq <= ?", (log, upto)).rowcount)

    def last(self, log: str) -> int:
        row = self.db.connection().execute("SELECT last FROM kv_log_last WHERE log = ?", (log,)).fetchone()
        return int(row[0]) if row else 0
