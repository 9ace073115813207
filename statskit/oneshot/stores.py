"""Which one-shot store a state backend gets."""
from __future__ import annotations


from .queue import OneShotQueue, QueueLimits, Reporter
from ..state import StateStore
from .store_memory import MemoryQueue
from .store_sqlite import SQLiteQueue
from .store_common import log

# --------------------------------------------------------------------------- choice


def open_queue(state: StateStore, limits: QueueLimits, reporter: Reporter) -> OneShotQueue:
    """SQLite when the state store is SQLite (same database), else in memory."""
    from ..state.memory import MemoryState
    from ..state.sqlite import SQLiteState

    if isinstance(state, SQLiteState):
        return SQLiteQueue(state.db, limits, reporter)
    if not isinstance(state, MemoryState):
        log.warning("one-shot events: no shared queue for %s; using one in memory per process "
                    "(each gunicorn worker then has its own scrapers and events)", type(state).__name__)
    return MemoryQueue(limits, reporter)
