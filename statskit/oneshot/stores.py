"""Which one-shot store a state backend gets."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ..state import StateStore, store_for
from .queue import OneShotQueue, QueueLimits, Reporter
from .store_common import log
from .store_memory import MemoryQueue
from .store_sqlite import SQLiteQueue

# --------------------------------------------------------------------------- choice


def open_queue(state: StateStore, limits: Optional[QueueLimits] = None,
               reporter: Optional[Reporter] = None) -> OneShotQueue:
    """The queue for a state store: SQLite next to an ``SQLiteState`` (same database), else in memory."""
    limits = limits or QueueLimits()
    reporter = reporter or Reporter(state)
    tuned: Dict[str, Callable[[Any], OneShotQueue]] = {"sqlite": lambda backend: SQLiteQueue(backend.db, limits, reporter)}
    tuned["memory"] = lambda _: MemoryQueue(limits, reporter)
    return store_for(state, tuned, lambda backend: _per_process(backend, limits, reporter))


def _per_process(backend: StateStore, limits: QueueLimits, reporter: Reporter) -> OneShotQueue:
    # No generic queue on the building blocks yet: a backend without a tuned one gets a queue in
    # each process, which must be said (each gunicorn worker then has its own scrapers).
    log.warning("one-shot events: no queue for the %r state backend; keeping them in memory per process "
                "(each gunicorn worker then has its own scrapers and events)", backend.name)
    return MemoryQueue(limits, reporter)
