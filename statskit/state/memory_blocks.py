"""The memory backend's :mod:`~statskit.state.protocols`: dicts under one lock."""
from __future__ import annotations

import threading
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .protocols import Change, T


class MemoryRecords:
    def __init__(self, lock: "threading.RLock") -> None:
        self._lock = lock
        self._tables: Dict[str, Dict[str, bytes]] = {}

    def update(self, table: str, keys: Sequence[str], change: Change[T]) -> T:
        with self._lock:
            rows = self._tables.setdefault(table, {})
            writes, result = change({k: rows.get(k) for k in keys})
            for key, value in writes.items():
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value
            return result

    def get(self, table: str, key: str) -> Optional[bytes]:
        with self._lock:
            return self._tables.get(table, {}).get(key)

    def scan(self, table: str) -> Iterator[Tuple[str, bytes]]:
        with self._lock:
            snapshot = list(self._tables.get(table, {}).items())
        return iter(snapshot)

    def delete(self, table: str, keys: Sequence[str]) -> int:
        with self._lock:
            rows = self._tables.get(table, {})
            return sum(rows.pop(k, None) is not None for k in keys)

    def count(self, table: str) -> int:
        with self._lock:
            return len(self._tables.get(table, {}))


class MemoryLogs:
    def __init__(self, lock: "threading.RLock") -> None:
        self._lock = lock
        self._logs: Dict[str, List[Tuple[int, bytes]]] = {}
        self._last: Dict[str, int] = {}

    def append(self, log: str, items: Sequence[bytes]) -> int:
        with self._lock:
            entries = self._logs.setdefault(log, [])
            last = self._last.get(log, 0)
            for item in items:
                last += 1
                entries.append((last, item))
            self._last[log] = last
            return last

    def read(self, log: str, after: int, limit: int) -> List[Tuple[int, bytes]]:
        with self._lock:
            return [e for e in self._logs.get(log, []) if e[0] > after][:limit]

    def trim(self, log: str, upto: int) -> int:
        with self._lock:
            entries = self._logs.get(log, [])
            kept = [e for e in entries if e[0] > upto]
            self._logs[log] = kept
            return len(entries) - len(kept)

    def last(self, log: str) -> int:
        with self._lock:
            return self._last.get(log, 0)
