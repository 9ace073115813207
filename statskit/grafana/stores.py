"""Session caches (:class:`statskit.grafana.sessions.SessionCache`) tuned for the memory and
SQLite backends.

Which one a server uses follows its state backend's name (:func:`open_session_cache`): ``sqlite``
gets :class:`SQLiteSessionCache` on the same database (every worker of the host sees every
session, and sessions survive restarts); ``memory`` gets :class:`MemorySessionCache` (one
process); any other backend the generic cache on its keyed records
(:class:`~statskit.grafana.store_records.RecordSessionCache`).

**Eviction** only forgets cache entries; the counters already credited stay as they are. A
session is forgotten when

1. it has had no payload for ``idle_timeout`` seconds (0 = never), or
2. the cache holds more than ``max_size`` sessions (0 or less = no limit): then sessions are
   forgotten down to 99% of ``max_size``, finished ones first (least recently seen first), then
   the least recently seen open ones. Never everything at once, as the original's flush did.

A payload for a forgotten session starts a new one (counted again), as after the original's flush.
"""
from __future__ import annotations

import logging
import sqlite3
import struct
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..constants import INT64_MAX, INT64_MIN
from ..labels import LabelKey, decode_labels, encode_labels
from ..state import StateStore, store_for
from .sessions import Change, SessionCache, SessionRecord
from .store_records import RecordSessionCache

log = logging.getLogger("statskit.sessions")

# Checks for idle sessions at most this often (seconds) per process.
MAINTAIN_INTERVAL = 1.0
# SQLite keeps "last seen" rounded down to this many seconds (at most a quarter of the idle
# timeout): its index then changes once in ten heartbeats of a session, not at every one (an
# index update doubled the cost of a payload).
SEEN_RESOLUTION = 600.0


def low_water(max_size: int) -> int:
    """How many sessions remain after a size eviction: 99% of the limit (at least 1 fewer)."""
    return max(0, max_size - max(1, max_size // 100))


def open_session_cache(state: StateStore, max_size: int, idle_timeout: float) -> SessionCache:
    """The cache that goes with the state backend: SQLite on its database, else memory."""
    tuned: Dict[str, Callable[[Any], SessionCache]] = {"sqlite": lambda backend: SQLiteSessionCache(backend.db, max_size, idle_timeout)}
    tuned["memory"] = lambda _: MemorySessionCache(max_size, idle_timeout)
    # Any other backend: the generic cache on its keyed records (shared, like the tuned ones).
    return store_for(state, tuned, lambda backend: RecordSessionCache(backend.records, max_size, idle_timeout))


# --------------------------------------------------------------------------- memory

# start, first, end, interval (int64); heartbeats, label id (uint32); flags (uint8: 1 = has an
# end, 2 = started); base, credited, seen (float64); then the window, int64 each. 65 + 8n
# bytes a session instead of ~600 as Python objects.
_PACK = struct.Struct("<qqqqIIBddd")
_SEEN, _FLAGS = 9, 6
_HAS_END, _STARTED = 1, 2
_UINT32_MAX = 2**32 - 1


def _key(uuid: str) -> Any:
    """The dict key for a uuid: the panel's uuids (canonical, lowercase v4) as their 16 bytes,
    which saves 32 bytes a session over the 36-character string; anything else as it is."""
    if len(uuid) == 36 and uuid[8] == "-" and uuid[13] == "-" and uuid[18] == "-" and uuid[23] == "-":
        try:
            raw = bytes.fromhex(uuid[:8] + uuid[9:13] + uuid[14:18] + uuid[19:23] + uuid[24:])
        except ValueError:
            return uuid
        # Only if it maps back to exactly this text: "ABCD..." and "abcd..." are two sessions.
        if raw.hex() == uuid.replace("-", ""):
            return raw
    return uuid


class MemorySessionCache:
    """Sessions of this process in a dict kept in least-recently-seen order.

    Each session is one packed ``bytes`` value (see ``_PACK``) under its uuid (16 raw bytes for
    a canonical uuid); label sets are interned (sessions of one dashboard and user share one,
    and the memory state's counters hold the same tuples). Updating a session moves it to the
    end of the dict, so the oldest sessions are always at its front.
    """

    def __init__(self, max_size: int = 0, idle_timeout: float = 0.0) -> None:
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self._lock = threading.RLock()
        self._sessions: Dict[Any, bytes] = {}
        self._label_ids: Dict[LabelKey, int] = {}
        self._labels: List[LabelKey] = []
        self._next_maintain = 0.0
        self.evicted = 0

    def _pack(self, r: SessionRecord) -> bytes:
        label_id = self._label_ids.get(r.labels)
        if label_id is None:
            label_id = self._label_ids[r.labels] = len(self._labels)
            self._labels.append(r.labels)
        end = r.end
        flags = (_HAS_END if end is not None else 0) | (_STARTED if r.started else 0)
        return _PACK.pack(r.start, r.first, end if end is not None else 0, r.interval,
                          min(r.heartbeats, _UINT32_MAX), label_id, flags, r.base, r.credited,
                          r.seen) + struct.pack(f"<{len(r.window)}q", *r.window)

    def _unpack(self, data: bytes) -> SessionRecord:
        start, first, end, interval, hbs, label_id, flags, base, credited, seen = _PACK.unpack_from(data)
        window = struct.unpack_from(f"<{(len(data) - _PACK.size) // 8}q", data, _PACK.size)
        return SessionRecord(self._labels[label_id], bool(flags & _STARTED), start, first, window,
                             end if flags & _HAS_END else None, hbs, base, credited, interval, seen)

    def apply(self, changes: Sequence[Tuple[str, Change]], now: float) -> List[Any]:
        results = []
        staged: Dict[Any, bytes] = {}  # all or nothing: nothing is stored if a change raises
        with self._lock:
            sessions = self._sessions
            for uuid, change in changes:
                key = _key(uuid)
                data = staged.get(key) or sessions.get(key)
                new, result = change(None if data is None else self._unpack(data))
                if new is not None:
                    staged[key] = self._pack(new)
                elif data is not None and key not in staged:
                    staged[key] = data  # unchanged, but seen: it moves to the recent end too
                results.append(result)
            for key, data in staged.items():
                sessions.pop(key, None)
                sessions[key] = data  # re-inserted last: the dict stays in seen order
            if (self.max_size > 0 and len(sessions) > self.max_size) or now >= self._next_maintain:
                self.maintain(now)
        return results

    def get(self, uuid: str) -> Optional[SessionRecord]:
        with self._lock:
            data = self._sessions.get(_key(uuid))
            return None if data is None else self._unpack(data)

    def __len__(self) -> int:
        return len(self._sessions)

    def maintain(self, now: float) -> int:
        with self._lock:
            self._next_maintain = now + MAINTAIN_INTERVAL
            sessions = self._sessions
            before = len(sessions)
            if self.idle_timeout > 0:
                horizon = now - self.idle_timeout
                stale = []
                for uuid, data in sessions.items():  # oldest first: stop at the first recent one
                    if _PACK.unpack_from(data)[_SEEN] >= horizon:
                        break
                    stale.append(uuid)
                for uuid in stale:
                    del sessions[uuid]
            if self.max_size > 0 and len(sessions) > self.max_size:
                self._trim(low_water(self.max_size))
            evicted = before - len(sessions)
            self.evicted += evicted
            return evicted

    def _trim(self, target: int) -> None:
        sessions = self._sessions
        excess = len(sessions) - target
        # Finished sessions first, looking at the oldest few thousand only (they are where
        # finished sessions collect); then the least recently seen, whatever their state.
        finished: List[Any] = []
        for i, (uuid, data) in enumerate(sessions.items()):
            if i >= 4 * excess + 1024 or len(finished) >= excess:
                break
            if _PACK.unpack_from(data)[_FLAGS] & _HAS_END:
                finished.append(uuid)
        for uuid in finished:
            del sessions[uuid]
        excess -= len(finished)
        if excess > 0:
            for uuid in [u for u, _ in zip(sessions, range(excess))]:
                del sessions[uuid]

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grafana_sessions (
    uuid       TEXT PRIMARY KEY,
    labels     TEXT NOT NULL,     -- JSON array of [name, value] pairs, sorted
    started    INTEGER NOT NULL,
    start_t    INTEGER NOT NULL,
    first_t    INTEGER NOT NULL,
    window     TEXT NOT NULL,     -- the latest points, comma-separated
    end_t      INTEGER,           -- NULL while the session is open
    heartbeats INTEGER NOT NULL,
    base       REAL NOT NULL,
    credited   REAL NOT NULL,
    interval_s INTEGER NOT NULL,
    seen       REAL NOT NULL      -- server time of the last payload, rounded down (seen_step)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS grafana_sessions_seen ON grafana_sessions (seen);
"""
_COLUMNS = "labels, started, start_t, first_t, window, end_t, heartbeats, base, credited, interval_s, seen"
_SELECT = f"SELECT {_COLUMNS} FROM grafana_sessions WHERE uuid = ?"
_INSERT = f"INSERT INTO grafana_sessions (uuid, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET = "started = ?, start_t = ?, first_t = ?, window = ?, end_t = ?, heartbeats = ?, base = ?, credited = ?, interval_s = ?"
_UPDATE = f"UPDATE grafana_sessions SET {_SET} WHERE uuid = ?"
_UPDATE_SEEN = f"UPDATE grafana_sessions SET {_SET}, seen = ? WHERE uuid = ?"


class SQLiteSessionCache:
    """Sessions in the state database: one write transaction per batch of payloads.

    ``BEGIN IMMEDIATE`` takes the write lock before any session is read, so two workers
    updating one session queue up instead of losing an update. A session with several
    payloads in a batch is read and written once. Eviction runs in its own transaction, in
    whichever process finds it due: every ``MAINTAIN_INTERVAL`` seconds, or after 1% of
    ``max_size`` new sessions. Nothing is kept in the server's memory but a small cache of
    decoded label sets.
    """

    def __init__(self, db: Any, max_size: int = 0, idle_timeout: float = 0.0) -> None:
        self.db = db
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        db.ensure_schema(_SCHEMA)
        self._lock = threading.Lock()
        self._next_maintain = 0.0
        self._new_since_maintain = 0
        self._new_budget = max(1, max_size // 100) if max_size > 0 else 0
        self.seen_step = min(SEEN_RESOLUTION, idle_timeout / 4) if idle_timeout > 0 else SEEN_RESOLUTION

    def _record(self, row: tuple) -> SessionRecord:
        labels, started, start, first, window, end, hbs, base, credited, interval, seen = row
        return SessionRecord(decode_labels(labels), bool(started), start, first,
                             tuple(int(t) for t in window.split(",")), end, hbs, base, credited, interval, seen)

    def _rounded(self, seen: float) -> float:
        return seen - seen % self.seen_step

    def apply(self, changes: Sequence[Tuple[str, Change]], now: float) -> List[Any]:
        results = []
        rows: Dict[str, Optional[tuple]] = {}
        records: Dict[str, Optional[SessionRecord]] = {}
        changed: Dict[str, SessionRecord] = {}  # in first-change order
        with self.db.transaction() as conn:
            for uuid, change in changes:
                if uuid not in rows:
                    row = rows[uuid] = conn.execute(_SELECT, (uuid,)).fetchone()
                    records[uuid] = None if row is None else self._record(row)
                new, result = change(records[uuid])
                if new is not None:
                    records[uuid] = changed[uuid] = new
                results.append(result)
            created = 0
            for uuid, record in changed.items():
                row = rows[uuid]
                _check_int64(record)
                window = ",".join(map(str, record.window))
                values = (int(record.started), record.start, record.first, window, record.end, record.heartbeats,
                          record.base, record.credited, record.interval)
                seen = self._rounded(record.seen)
                if row is None:
                    conn.execute(_INSERT, (uuid, encode_labels(record.labels)) + values + (seen,))
                    created += 1
                elif seen != row[10]:
                    conn.execute(_UPDATE_SEEN, values + (seen, uuid))
                else:
                    conn.execute(_UPDATE, values + (uuid,))
        with self._lock:
            self._new_since_maintain += created
            due = now >= self._next_maintain or (self._new_budget and self._new_since_maintain >= self._new_budget)
        if due:
            try:
                self.maintain(now)
            except sqlite3.Error as exc:  # the batch is committed: never make the caller retry it
                log.warning("evicting grafana sessions failed, will retry: %s", exc)
        return results

    def get(self, uuid: str) -> Optional[SessionRecord]:
        row = self.db.connection().execute(_SELECT, (uuid,)).fetchone()
        return None if row is None else self._record(row)

    def __len__(self) -> int:
        return self.db.connection().execute("SELECT COUNT(*) FROM grafana_sessions").fetchone()[0]

    def maintain(self, now: float) -> int:
        with self._lock:
            self._next_maintain = now + MAINTAIN_INTERVAL
            self._new_since_maintain = 0
        evicted = 0
        with self.db.transaction() as conn:
            if self.idle_timeout > 0:
                # seen is rounded down: a row may have been seen up to seen_step later.
                evicted += conn.execute("DELETE FROM grafana_sessions WHERE seen < ?",
                                        (now - self.idle_timeout - self.seen_step,)).rowcount
            if self.max_size > 0:
                excess = conn.execute("SELECT COUNT(*) FROM grafana_sessions").fetchone()[0] - self.max_size
                if excess > 0:
                    excess += self.max_size - low_water(self.max_size)
                    for where in ("WHERE end_t IS NOT NULL ", ""):  # finished first, then any
                        if excess <= 0:
                            break
                        n = conn.execute(
                            "DELETE FROM grafana_sessions WHERE uuid IN (SELECT uuid FROM grafana_sessions "
                            f"{where}ORDER BY seen LIMIT ?)", (excess,)).rowcount
                        evicted += n
                        excess -= n
        return evicted

    def close(self) -> None:
        pass


def _check_int64(record: SessionRecord) -> None:
    # SQLite integers are int64, and so are the payload's ints (Go's int): only a bug gets here.
    for value in (record.start, record.first, record.interval, *record.window):
        if not INT64_MIN <= value <= INT64_MAX:
            raise OverflowError("session time outside int64")


def open_cache_for_tests(max_size: int = 0, idle_timeout: float = 0.0) -> SessionCache:
    """An in-memory cache (handy in doctests and library use)."""
    return MemorySessionCache(max_size, idle_timeout)
