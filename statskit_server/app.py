"""The app factory: ``create_app(settings)`` wires the library into Falcon: the core routes
(health, events, ``/metrics``) and, for each enabled feature, the service it builds and the
routes around it.

    >>> from falcon import testing
    >>> from statskit.config import load_settings
    >>> app = create_app(load_settings(env={}, overrides={"state.backend": "memory", "sinks.enabled": []}))
    >>> testing.TestClient(app).simulate_get("/ping").json["status"]
    'ok'

gunicorn users who bring their own configuration run ``gunicorn 'statskit_server:create_app()'``;
settings then come from ``STATSKIT_CONFIG`` (an ini path) and the environment.
"""
from __future__ import annotations

import atexit
import importlib
import logging
import os
import threading
import weakref
from functools import partial
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import falcon
import orjson

from statskit.config import Settings, load_settings
from statskit.feature import Context, Feature, load_features
from statskit.metrics import MetricSource, StateMetrics
from statskit.pipeline import Pipeline, build_pipeline
from statskit.sinks.relay import BacklogMetrics
from statskit.plugins import entry_points_of
from statskit.state import StateStore, open_backend

from . import errors
from .auth import Authenticator
from .middleware import RequestMetrics
from .routes import Web, events, health, metrics

log = logging.getLogger("statskit.server")
SCRAPE_CATCH_UP = 1.0  # seconds a scrape waits at most for the counts of events already acknowledged

Closer = Callable[[Optional[float]], None]


@dataclass(eq=False)  # identity-hashed: runtimes sit in a WeakSet
class Runtime:
    """What one app built: its state, pipeline, each enabled feature's service, and the closers
    a graceful stop calls. Resources never see it; they get their own service."""

    settings: Settings
    state: StateStore
    pipeline: Pipeline
    services: Dict[str, Any] = field(default_factory=dict)
    metric_sources: List[MetricSource] = field(default_factory=list)
    closers: List[Closer] = field(default_factory=list)
    closed: bool = False

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush everything buffered (graceful stop): features first, then sinks and state.
        Once: the process's exit hooks (:func:`shutdown`) skip a runtime its owner closed."""
        with _lock:
            _runtimes.discard(self)
            if self.closed:
                return
            self.closed = True
        for closer in self.closers:
            try:
                closer(timeout)
            except Exception:
                log.exception("error while closing")
        self.pipeline.close(timeout)


class StatskitApp(falcon.App):
    """A Falcon app that carries its :class:`Runtime` as ``app.statskit`` (falcon.App has slots)."""

    statskit: Runtime


_runtimes: "weakref.WeakSet[Runtime]" = weakref.WeakSet()
_lock = threading.Lock()


def create_app(settings: Optional[Settings] = None, *, state: Optional[StateStore] = None,
               pipeline: Optional[Pipeline] = None) -> StatskitApp:
    """A Falcon app for ``settings`` (default: ``STATSKIT_CONFIG`` ini file + environment).

    ``state`` and ``pipeline`` can be injected (tests pass a MemoryState and their own sinks).
    The runtime is reachable as ``app.statskit`` and closed by :func:`shutdown`.
    """
    if settings is None:
        settings = load_settings(os.environ.get("STATSKIT_CONFIG") or None)
    if pipeline is None:
        if state is None:
            state = open_backend(settings.state.backend, settings.server.data_dir, settings.state.flush_interval,
                             settings.state)
        pipeline = build_pipeline(settings, state)
    runtime = Runtime(settings, pipeline.state, pipeline)
    # The sinks that store what /metrics shows (the Prometheus sink, fed from the log): a scrape
    # has their relays catch up first, so it shows every event acknowledged before it.
    scraped = [relay for relay in pipeline.relays if getattr(relay.sink, "scraped", False)]
    runtime.metric_sources.append(StateMetrics(runtime.state, before=[partial(r.drain, SCRAPE_CATCH_UP)
                                                                      for r in scraped]))
    web = Web(settings, Authenticator.from_settings(settings))

    app = StatskitApp(middleware=[RequestMetrics(runtime.state)])
    app.req_options.strip_url_path_trailing_slash = False
    json_handler = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.install(app)
    health.mount(app, None, web)
    events.mount(app, pipeline, web)
    ctx = Context(settings, runtime.state, pipeline)
    for feature in load_features():
        if feature.enabled(settings):
            _mount_feature(app, feature, ctx, web, runtime)
    if pipeline.relays:
        runtime.metric_sources.append(BacklogMetrics(pipeline.relays))
    metrics.mount(app, runtime.metric_sources, web)
    pipeline.start()  # after every feature added its sinks: the relays feed them from the log
    app.statskit = runtime
    with _lock:
        _runtimes.add(runtime)
    return app


def _mount_feature(app: falcon.App, feature: Feature, ctx: Context, web: Web, runtime: Runtime) -> None:
    built = feature.build(ctx)
    runtime.services[feature.name] = built.service
    runtime.metric_sources.extend(built.metric_sources)
    runtime.closers.extend(built.closers)
    route_mount(feature.name)(app, built.service, web)


def route_mount(name: str) -> Callable[[falcon.App, Any, Web], None]:
    """The ``mount`` function of a feature's routes: ``statskit_server.routes.<name>`` for a
    built-in feature, else the ``statskit_server.routes`` entry point of that name."""
    try:
        module = importlib.import_module(f"{__package__}.routes.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.routes.{name}":
            raise  # the module exists; something it imports is missing
        for ep in entry_points_of("statskit_server.routes"):
            if ep.name == name:
                return ep.load()
        raise LookupError(f"feature {name!r} has no routes module and no statskit_server.routes entry point")
    return module.mount


def shutdown(timeout: Optional[float] = None) -> None:
    """Close every runtime this process created (gunicorn's worker_exit hook and atexit call it)."""
    with _lock:
        runtimes = list(_runtimes)
        _runtimes.clear()
    for runtime in runtimes:
        runtime.close(timeout)


atexit.register(shutdown, 5.0)
