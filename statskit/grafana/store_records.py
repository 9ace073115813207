"""The generic session cache: on any backend's keyed records (:mod:`statskit.state.protocols`).

A backend with no cache tuned for it (SQLite and memory have theirs in :mod:`.stores`) still
shares sessions between every process and host using it: a batch of payloads is one atomic
``records.update``. Eviction walks the whole table, at most every ``MAINTAIN_INTERVAL``
seconds: fine for the generic path; a tuned store keeps an index by "last seen" instead.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..labels import decode_labels, encode_labels
from ..state.protocols import KeyedRecords
from .sessions import Change, SessionRecord

TABLE = "grafana_sessions"
MAINTAIN_INTERVAL = 1.0
# start, first, end, interval, heartbeats (int64); flags (uint8: 1 = has an end, 2 = started);
# base, credited, seen (float64); window length (uint8); then the window and the labels' text.
_HEAD = struct.Struct("<qqqqqBdddB")
_HAS_END, _STARTED = 1, 2


def pack(r: SessionRecord) -> bytes:
    flags = (_HAS_END if r.end is not None else 0) | (_STARTED if r.started else 0)
    return (_HEAD.pack(r.start, r.first, r.end if r.end is not None else 0, r.interval, r.heartbeats, flags,
                       r.base, r.credited, r.seen, len(r.window))
            + struct.pack(f"<{len(r.window)}q", *r.window) + encode_labels(r.labels).encode())


def unpack(data: bytes) -> SessionRecord:
    start, first, end, interval, hbs, flags, base, credited, seen, n = _HEAD.unpack_from(data)
    window = struct.unpack_from(f"<{n}q", data, _HEAD.size)
    labels = decode_labels(data[_HEAD.size + 8 * n:].decode())
    return SessionRecord(labels, bool(flags & _STARTED), start, first, window,
                         end if flags & _HAS_END else None, hbs, base, credited, interval, seen)


class RecordSessionCache:
    """:class:`~statskit.grafana.sessions.SessionCache` on ``records``."""

    def __init__(self, records: KeyedRecords, max_size: int = 0, idle_timeout: float = 0.0) -> None:
        self.records = records
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self._next_maintain = 0.0

    def apply(self, changes: Sequence[Tuple[str, Change]], now: float) -> List[Any]:
        keys = list(dict.fromkeys(uuid for uuid, _ in changes))

        def run(current: Dict[str, Optional[bytes]]) -> Tuple[Dict[str, Optional[bytes]], List[Any]]:
            records = {k: None if v is None else unpack(v) for k, v in current.items()}
            results, touched = [], set()
            for uuid, change in changes:
                record = records[uuid]
                new, result = change(None if record is None else unpack(pack(record)))  # a private copy
                if new is not None:
                    records[uuid] = new
                    touched.add(uuid)
                results.append(result)
            return {k: pack(r) for k, r in records.items() if k in touched and r is not None}, results

        results = self.records.update(TABLE, keys, run)
        if now >= self._next_maintain:
            self.maintain(now)
        return results

    def get(self, uuid: str) -> Optional[SessionRecord]:
        data = self.records.get(TABLE, uuid)
        return None if data is None else unpack(data)

    def __len__(self) -> int:
        return self.records.count(TABLE)

    def maintain(self, now: float) -> int:
        self._next_maintain = now + MAINTAIN_INTERVAL
        sessions = [(k, unpack(v)) for k, v in self.records.scan(TABLE)]
        gone = []
        if self.idle_timeout > 0:
            gone = [k for k, r in sessions if r.seen < now - self.idle_timeout]
        kept = [(k, r) for k, r in sessions if k not in set(gone)]
        if self.max_size > 0 and len(kept) > self.max_size:
            excess = len(kept) - self.max_size + max(1, self.max_size // 100)  # down to 99%
            # Finished sessions first, least recently seen first; then any.
            order = sorted(kept, key=lambda kr: (kr[1].end is None, kr[1].seen))
            gone += [k for k, _ in order[:excess]]
        return self.records.delete(TABLE, gone) if gone else 0

    def close(self) -> None:
        pass
