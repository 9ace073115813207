"""Which one-shot store a state backend gets."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ..state import StateStore, store_for
from .queue import OneShotQueue, QueueLimits, Reporter
from .store_memory import MemoryQueue
from .store_records import RecordsQueue
from .store_redis import RedisQueue
from .store_sqlite import SQLiteQueue

def open_queue(state: StateStore, limits: Optional[QueueLimits] = None, reporter: Optional[Reporter] = None,
               host_db: Optional[Callable[[], Any]] = None, commit_wait: float = 0.002) -> OneShotQueue:
    """The queue for a state backend: the tuned SQLite (same database) or memory one, else the
    generic queue on the backend's keyed records and numbered log. ``host_db`` opens the host's
    SQLite database, where the Redis queue journals the posts that find Redis away."""
    limits = limits or QueueLimits()
    reporter = reporter or Reporter(state)
    tuned: Dict[str, Callable[[Any], OneShotQueue]] = {"sqlite": lambda backend: SQLiteQueue(backend.db, limits, reporter)}
    tuned["memory"] = lambda _: MemoryQueue(limits, reporter)
    tuned["redis"] = lambda backend: RedisQueue(backend, limits, reporter, host_db() if host_db else None,
                                                commit_wait)
    # Any other backend: the generic queue on its keyed records and numbered log (shared).
    return store_for(state, tuned, lambda backend: RecordsQueue(backend.records, backend.logs, limits, reporter))
