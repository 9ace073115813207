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

import importlib
from typing import (
    Any,
    Callable,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
)

from ..labels import LabelKey, Labels, label_key  # noqa: F401  (re-exported: the state API)
from ..plugins import entry_points_of, load_group
from .protocols import KeyedRecords, NumberedLog

CounterRow = Tuple[str, LabelKey, float]


class Backend(Protocol):
    """What every state backend offers: counters that never go down, buffered per process.

    ``name`` is what features choose their stores by (:func:`store_for`): a backend is named
    once, and nothing else inspects its class. ``is_transient(exc)`` tells a store that is busy
    or down (retry later, answer 503) from a bug."""

    name: str

    def incr(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to a counter; may be buffered for up to ``flush_interval``."""

    def counters(self, prefix: str = "") -> List[CounterRow]:
        """Every counter whose name starts with ``prefix``, this process's buffer included."""

    def flush(self) -> None:
        """Push this process's buffered increments to the shared store."""

    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` (raised by this backend or a store on it) is worth retrying."""

    @property
    def records(self) -> KeyedRecords:
        """Keyed records, changed atomically in batches (:mod:`statskit.state.protocols`)."""

    @property
    def logs(self) -> NumberedLog:
        """Append-only numbered logs (:mod:`statskit.state.protocols`)."""

    def close(self) -> None:
        """Flush and release resources."""


StateStore = Backend  # the name used before backends were pluggable

#: Built-in backends; others register under the ``statskit.backends`` entry point, as a
#: callable ``(data_dir, flush_interval, options) -> Backend``.
BUILTIN_BACKENDS = {"memory": "statskit.state.memory:open_memory", "sqlite": "statskit.state.sqlite:open_sqlite",
                    "redis": "statskit.state.redis:open_redis"}
BACKEND_GROUP = "statskit.backends"


def backend_names() -> List[str]:
    return sorted(set(BUILTIN_BACKENDS) | {ep.name for ep in entry_points_of(BACKEND_GROUP)})


def open_backend(name: str, data_dir: Optional[str] = None, flush_interval: float = 1.0,
                 options: Optional[Any] = None) -> Backend:
    """The backend named in ``[state] backend``; ``options`` is the ``[state]`` section (a
    network backend's address and key prefix)."""
    target = BUILTIN_BACKENDS.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    else:
        factory = load_group(BACKEND_GROUP).get(name)
        if factory is None:
            raise ValueError(f"unknown state backend {name!r} (use {' or '.join(backend_names())})")
    return factory(data_dir or ".", flush_interval, options)


open_state = open_backend  # the name used before backends were pluggable

T = TypeVar("T")


def store_for(backend: Backend, tuned: Mapping[str, Callable[[Any], T]], generic: Callable[[Backend], T]) -> T:
    """A feature's store for ``backend``: the one tuned for its name, else ``generic`` (built on
    the backend's :mod:`~statskit.state.protocols` building blocks)."""
    make = tuned.get(backend.name)
    return make(backend) if make is not None else generic(backend)


def sum_by(rows: Iterable[CounterRow], name: str) -> float:
    """Total of one counter over all its label sets (handy in tests and health checks)."""
    return sum(value for n, _, value in rows if n == name)
