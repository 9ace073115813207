"""How a feature plugs in: a :class:`Feature` names its options and builds the service its
routes use. The core names no feature; the built-in ones register through the
``statskit.features`` entry point (``setup.cfg``), exactly as a third-party one would.

A feature is a package under ``statskit/`` (or anywhere) that exposes one object::

    from statskit.config import Option
    from statskit.feature import Built, Context

    class Hello:
        name = "hello"
        options = [Option("hello", "enabled", False, parse_bool, None, None, "mount /hello")]

        def enabled(self, settings):
            return settings.hello.enabled

        def build(self, ctx: Context) -> Built:
            service = HelloService(ctx.state)                 # what the resources use
            return Built(service, metric_sources=[service], closers=[service.close])

    FEATURE = Hello()

and registers it in its ``setup.cfg``::

    [options.entry_points]
    statskit.features =
        hello = mypackage.hello:FEATURE

``statskit_server`` then mounts its routes: built-in features have a module in
``statskit_server/routes/``; a third-party feature adds a ``statskit_server.routes`` entry
point to a ``mount(app, service, web)`` function.

    >>> {"grafana", "oneshot"} <= {f.name for f in load_features()}
    True
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, runtime_checkable

from .config import Option, Settings, register_options

log = logging.getLogger("statskit.feature")

#: What a graceful stop calls: flush what is buffered within ``timeout`` seconds.
Closer = Callable[[Optional[float]], None]

ENTRY_POINT_GROUP = "statskit.features"


@dataclass
class Context:
    """What a feature may build on: settings, the shared state backend and the sink pipeline."""

    settings: Settings
    state: Any  # statskit.state.Backend (Any here: the protocol lives with the backends)
    pipeline: Any  # statskit.pipeline.Pipeline


@dataclass
class Built:
    """A built feature: the service its resources use, its ``/metrics`` sources and closers."""

    service: Any
    metric_sources: List[Any] = field(default_factory=list)
    closers: List[Closer] = field(default_factory=list)


@runtime_checkable
class Feature(Protocol):
    name: str
    options: Sequence[Option]

    def enabled(self, settings: Settings) -> bool:
        """Whether ``settings`` switch this feature on."""

    def build(self, ctx: Context) -> Built:
        """Build the feature's service (called once per process, after the fork)."""


_features: Optional[Dict[str, Feature]] = None
_lock = threading.Lock()


def load_features() -> List[Feature]:
    """Every registered feature (entry points), their options registered with the config."""
    global _features
    with _lock:
        if _features is None:
            found: Dict[str, Feature] = {}
            for ep in entry_points_of(ENTRY_POINT_GROUP):
                try:
                    feature = ep.load()
                except Exception:
                    log.exception("cannot load feature %s (%s)", ep.name, ep.value)
                    continue
                found[feature.name] = feature
                register_options(feature.options)
            _features = found
        return list(_features.values())


def entry_points_of(group: str) -> List[Any]:
    from importlib.metadata import entry_points

    eps = entry_points()
    if hasattr(eps, "select"):  # Python 3.10+
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # type: ignore[attr-defined]  # Python 3.9
