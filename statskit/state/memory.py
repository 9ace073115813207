"""In-process state: for tests and single-process embedding. Nothing is shared or persisted."""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple

from ..errors import is_transient
from ..labels import LabelKey, Labels, label_key
from . import CounterRow
from .memory_blocks import MemoryLogs, MemoryRecords


class MemoryState:
    """Counters in a dict guarded by a lock."""

    name = "memory"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._counters: Dict[Tuple[str, LabelKey], float] = {}
        self.records = MemoryRecords(self.lock)
        self.logs = MemoryLogs(self.lock)

    def incr(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = (name, label_key(labels))
        with self.lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def counters(self, prefix: str = "") -> List[CounterRow]:
        with self.lock:
            return [(n, lk, v) for (n, lk), v in sorted(self._counters.items()) if n.startswith(prefix)]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)  # nothing of its own fails that way; a store's errors may


def open_memory(data_dir: Optional[str] = None, flush_interval: float = 0.0, options: Any = None) -> MemoryState:
    """The memory backend (``[state] backend = memory``): nothing is shared or persisted."""
    return MemoryState()
