"""State shared by every worker process: counters that never go down, plus the feature stores.

A state store is what makes ``/metrics`` answer the same whichever gunicorn worker serves it.
Two backends ship: :class:`~statskit.state.memory.MemoryState` (tests, one process) and
:class:`~statskit.state.sqlite.SQLiteState` (the embedded default: one WAL database that the
workers of a host share and that survives restarts).

    >>> from statskit.state import open_state
    >>> state = open_state("memory")
    >>> state.incr("statskit_events_accepted", {"event": "signup"})
    >>> state.counters()
    [('statskit_events_accepted', (('event', 'signup'),), 1.0)]
"""
from __future__ import annotations

from typing import Iterable, List, Mapping, Optional, Protocol, Tuple, Union

LabelKey = Tuple[Tuple[str, str], ...]
Labels = Union[Mapping[str, str], LabelKey]
CounterRow = Tuple[str, LabelKey, float]


def label_key(labels: Labels) -> LabelKey:
    """A hashable, canonical (sorted) form of a label set."""
    if isinstance(labels, tuple):
        return labels
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


class StateStore(Protocol):
    """What the library needs from shared state."""

    def incr(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to a counter; may be buffered for up to ``flush_interval``."""

    def counters(self, prefix: str = "") -> List[CounterRow]:
        """Every counter whose name starts with ``prefix``, this process's buffer included."""

    def flush(self) -> None:
        """Push this process's buffered increments to the shared store."""

    def close(self) -> None:
        """Flush and release resources."""


def open_state(backend: str, data_dir: Optional[str] = None, flush_interval: float = 1.0) -> StateStore:
    """Build the state store named in ``[state] backend``."""
    if backend == "memory":
        from .memory import MemoryState

        return MemoryState()
    if backend == "sqlite":
        from .sqlite import SQLiteState, database_path

        return SQLiteState(database_path(data_dir or "."), flush_interval=flush_interval)
    raise ValueError(f"unknown state backend {backend!r} (use sqlite or memory)")


def sum_by(rows: Iterable[CounterRow], name: str) -> float:
    """Total of one counter over all its label sets (handy in tests and health checks)."""
    return sum(value for n, _, value in rows if n == name)
