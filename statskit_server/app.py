"""The app factory: ``create_app(settings)`` wires the library into Falcon.

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
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

import falcon
import orjson

from statskit.config import Settings, load_settings
from statskit.metrics import MetricSource, StateMetrics
from statskit.pipeline import Pipeline, build_pipeline
from statskit.state import StateStore, open_state

from . import errors
from .auth import Authenticator
from .middleware import RequestMetrics
from .resources import events, grafana, health, metrics, oneshot

log = logging.getLogger("statskit.server")

# Each feature module has add_routes(app, runtime); grafana and oneshot check their own `enabled`.
FEATURES = (health, events, grafana, oneshot, metrics)


@dataclass(eq=False)  # identity-hashed: runtimes sit in a WeakSet
class Runtime:
    """What the resources share: settings, state, the sink pipeline, auth, /metrics sources."""

    settings: Settings
    state: StateStore
    pipeline: Pipeline
    auth: Authenticator
    metric_sources: List[MetricSource] = field(default_factory=list)
    closers: List[Callable[[Optional[float]], None]] = field(default_factory=list)

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush everything buffered (graceful stop): features first, then sinks and state."""
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
            state = open_state(settings.state.backend, settings.server.data_dir, settings.state.flush_interval)
        pipeline = build_pipeline(settings, state)
    runtime = Runtime(settings, pipeline.state, pipeline, Authenticator.from_settings(settings))
    runtime.metric_sources.append(StateMetrics(runtime.state))

    app = StatskitApp(middleware=[RequestMetrics(runtime.state)])
    app.req_options.strip_url_path_trailing_slash = False
    json_handler = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.install(app)
    for feature in FEATURES:
        feature.add_routes(app, runtime)
    app.statskit = runtime
    with _lock:
        _runtimes.add(runtime)
    return app


def shutdown(timeout: Optional[float] = None) -> None:
    """Close every runtime this process created (gunicorn's worker_exit hook and atexit call it)."""
    with _lock:
        runtimes = list(_runtimes)
        _runtimes.clear()
    for runtime in runtimes:
        runtime.close(timeout)


atexit.register(shutdown, 5.0)
