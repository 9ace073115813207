"""Sinks: where validated events go. One small protocol, chosen by name in ``[sinks] enabled``.

A sink is any object with ``name``, ``emit(events)``, ``flush(timeout)`` and ``close(timeout)``.
Built-in sinks and third-party ones are found through the ``statskit.sinks`` entry point
group; each is built by ``from_settings(settings, state)``. A sink with ``durable = True`` (the
SQLite store) commits in ``emit`` and is fed first: its failure fails the request (see
:meth:`statskit.pipeline.Pipeline.ingest`); any other sink's failure is counted and logged.

    >>> class PrintSink:
    ...     name = "print"
    ...     @classmethod
    ...     def from_settings(cls, settings, state):
    ...         return cls()
    ...     def emit(self, events):
    ...         for event in events:
    ...             print(event.name)
    ...     def flush(self, timeout=None): pass
    ...     def close(self, timeout=None): pass

Register it in your package's ``setup.cfg``::

    [options.entry_points]
    statskit.sinks =
        print = mypackage:PrintSink
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Optional, Protocol, Sequence, runtime_checkable

from ..events import Event
from ..plugins import entry_points_of

BUILTIN_SINKS: Dict[str, str] = {
    "sqlite": "statskit.sinks.sqlite:SQLiteSink",
    "stdout": "statskit.sinks.stdout:StdoutSink",
    "prometheus": "statskit.sinks.prometheus:PrometheusSink",
    "influxdb": "statskit.sinks.influxdb:InfluxDBSink",
}


@runtime_checkable
class Sink(Protocol):
    name: str

    def emit(self, events: Sequence[Event]) -> None:
        """Take a batch. Must not block on a remote system: buffer and write in the background."""

    def flush(self, timeout: Optional[float] = None) -> None:
        """Write what is buffered, waiting at most ``timeout`` seconds."""

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush, then release resources."""


@runtime_checkable
class EventReader(Protocol):
    """A sink that can also answer ``GET /log/event/{id}`` and ``GET /log/events``."""

    def get(self, event_id: str) -> Optional[Event]: ...

    def query(self, uid: Optional[str] = None, event: Optional[str] = None, since_ns: Optional[int] = None,
              until_ns: Optional[int] = None, limit: int = 100) -> List[Event]: ...


def _resolve(name: str) -> Any:
    target = BUILTIN_SINKS.get(name)
    if target is None:
        for ep in entry_points_of("statskit.sinks"):
            if ep.name == name:
                return ep.load()
        raise ValueError(f"unknown sink {name!r}: built-in sinks are {', '.join(BUILTIN_SINKS)}; "
                         "others register under the 'statskit.sinks' entry point")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_sinks(names: Sequence[str], settings: Any, state: Any) -> List[Sink]:
    return [_resolve(name).from_settings(settings, state) for name in names]
