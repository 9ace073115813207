"""Group commit: rows written to the SQLite database by one writer thread per process, one
transaction per batch instead of one per request.

This is what lets a gunicorn worker keep up with a bare Falcon app: a commit costs far more than
the rows in it. Every store that appends to SQLite from the request path uses it.

    >>> import tempfile, os
    >>> from statskit.state.sqlite import SQLiteDB
    >>> db = SQLiteDB(os.path.join(tempfile.mkdtemp(), "demo.db"))
    >>> db.ensure_schema("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    >>> writer = GroupCommit(db, lambda conn, rows: conn.executemany("INSERT INTO t VALUES (?)", rows), name="demo")
    >>> writer.submit((1,)); writer.submit_many([(2,), (3,)]); writer.flush(5.0)
    True
    >>> db.connection().execute("SELECT count(*) FROM t").fetchone()[0]
    3
    >>> writer.close(1.0)
    True
"""
from __future__ import annotations

import sqlite3
from typing import Any, Callable, Generic, List, Optional, Sequence, TypeVar

from ..errors import RetryableError, Unavailable, is_transient
from ..worker import BatchWorker

Row = TypeVar("Row")
#: How long a row may wait for its batch (seconds).
FLUSH_INTERVAL = 0.05


class GroupCommit(Generic[Row]):
    """``write(conn, rows)`` runs inside one ``BEGIN IMMEDIATE`` transaction per batch.

    A locked database is retried (with backoff) for as long as it takes: the bounded queue is the
    limit, and a full queue makes the caller write inline (slower, never lossy); locked even
    then, the caller gets :class:`~statskit.errors.Unavailable` (a 503) with nothing stored.
    """

    def __init__(self, db: Any, write: Callable[[sqlite3.Connection, List[Row]], None], *, name: str,
                 flush_interval: float = FLUSH_INTERVAL, max_queue: int = 100_000, batch_size: int = 5000) -> None:
        self.db = db
        self.write = write
        self.name = name
        self.worker = BatchWorker(self._commit, max_queue=max_queue, batch_size=batch_size, max_latency=flush_interval,
                                  max_retries=None, backoff=0.05, max_backoff=1.0, name=f"statskit-{name}-writer")

    def _commit(self, rows: List[Row]) -> None:
        try:
            with self.db.transaction() as conn:
                self.write(conn, rows)
        except sqlite3.OperationalError as exc:
            if is_transient(exc):  # locked/busy beyond busy_timeout: try again
                raise RetryableError(str(exc)) from exc
            raise

    def _commit_inline(self, rows: List[Row]) -> None:
        try:
            self._commit(rows)
        except RetryableError as exc:
            raise Unavailable(f"{self.name} store busy: {exc}") from exc

    def submit(self, row: Row) -> None:
        # submit(), not submit_many(), for one row: it wakes the writer thread only when the queue
        # stops being empty, not on every call (a wake-up per request cost a third of the rate).
        if not self.worker.submit(row):
            self._commit_inline([row])

    def submit_many(self, rows: Sequence[Row]) -> None:
        taken = self.worker.submit_many(rows)
        if taken < len(rows):
            self._commit_inline(list(rows[taken:]))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Commit this process's queued rows now; False if ``timeout`` ran out first."""
        return self.worker.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        return self.worker.close(timeout)

    def __len__(self) -> int:
        return len(self.worker)
