"""How a feature plugs in: a :class:`Feature` names its options and builds the service its
routes use. The core names no feature: the built-in ones are the packages of ``statskit``
that hold a ``feature`` module (:func:`statskit.plugins.features`); a third-party one registers
through the ``statskit.features`` entry point.

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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Protocol, Sequence, runtime_checkable

from .config import Option, Settings, register_options
from .plugins import features

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .state import Backend

#: What a graceful stop calls: flush what is buffered within ``timeout`` seconds.
Closer = Callable[[Optional[float]], None]



@dataclass
class Context:
    """What a feature may build on: settings, the shared state backend and the sink pipeline."""

    settings: Settings
    state: Backend
    pipeline: Pipeline


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


def load_features() -> List[Feature]:
    """Every feature (built-in and entry points), their options registered with the config."""
    found = features()
    for feature in found.values():
        register_options(feature.options)
    return list(found.values())
