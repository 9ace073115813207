"""Shared pytest fixtures. Keep each group in its own delimited block."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, List, TypeVar

import pytest
from falcon import testing

from servers import Redis, RealServer, ServerUnavailable
from servers_influx import InfluxDB1, VictoriaMetrics
from servers_prometheus import Prometheus
from servers_sentinel import SentinelSet
from statskit_server import create_app
from support import make_settings, mint

# ======================================================================================
# Real servers (tests/servers.py): InfluxDB 1.6, VictoriaMetrics, Prometheus, Redis.
#
# Each fixture starts its own server (well under 0.2 s; Prometheus also waits ~5 s for its
# first scrape) on a free 127.0.0.1 port with data under tmp_path, and stops it by PID at
# teardown, even when the test fails. A missing binary skips the test, but fails it when
# CI=true so a broken CI install cannot pass silently. Tests using these fixtures get the
# `realserver` marker automatically: `pytest -m "not realserver"` deselects them.
# NOTE: the marker is added by pytest_collection_modifyitems below; if you need that hook
# for something else, extend this one instead of defining a second one in this file.
# ======================================================================================

REAL_SERVER_FIXTURES = {"influxdb1", "victoria_metrics", "redis_server", "redis_sentinel", "prometheus_factory"}
S = TypeVar("S", bound=RealServer)


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection sees the items
def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        if REAL_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realserver)


def make_real_server(make: Callable[[], S]) -> S:
    """``make()`` (a server constructor); skip, or fail under CI=true, when its binary is missing."""
    try:
        return make()
    except ServerUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI=true: real servers are required)", pytrace=False)
        pytest.skip(str(exc))


def start_real_server(make: Callable[[], S]) -> S:
    """:func:`make_real_server`, then start it (closing it again if the start fails)."""
    server = make_real_server(make)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture
def influxdb1(tmp_path) -> Iterator[InfluxDB1]:
    """A fresh, empty InfluxDB 1.6.7 (no databases yet; create_database() before /write)."""
    server = start_real_server(lambda: InfluxDB1(tmp_path / "influxdb1"))
    yield server
    server.close()


@pytest.fixture
def victoria_metrics(tmp_path) -> Iterator[VictoriaMetrics]:
    """A fresh, empty VictoriaMetrics; read back with .export() (flushes first)."""
    server = start_real_server(lambda: VictoriaMetrics(tmp_path / "victoria-metrics"))
    yield server
    server.close()


@pytest.fixture
def redis_server(tmp_path) -> Iterator[Redis]:
    """A fresh, empty Redis without persistence (use Redis(..., appendonly=True) to survive restarts)."""
    server = start_real_server(lambda: Redis(tmp_path / "redis"))
    yield server
    server.close()


@pytest.fixture
def redis_sentinel(tmp_path) -> Iterator[SentinelSet]:
    """A Redis master and replica (AOF on) watched by three sentinels (quorum 2) as
    ``mymaster`` (tests/servers_sentinel.py); ``.url()`` is its ``redis+sentinel://`` URL.
    About 8 s to start: the sentinels must know the replica and each other."""
    servers = make_real_server(lambda: SentinelSet(tmp_path / "sentinel-set"))
    with servers:
        yield servers


@pytest.fixture
def prometheus_factory(tmp_path) -> Iterator[Callable[..., Prometheus]]:
    """``prometheus_factory(targets, **kwargs)`` starts a Prometheus (Prometheus() arguments);
    every one started is stopped at teardown."""
    started: List[Prometheus] = []

    def factory(scrape_targets=(), **kwargs) -> Prometheus:
        folder = tmp_path / f"prometheus-{len(started)}"
        server = start_real_server(lambda: Prometheus(folder, scrape_targets, **kwargs))
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.close()

# ======================================================================================
# End of real servers block.
# ======================================================================================


# ======================================================================================
# In-process apps (falcon.testing): ``app_client(settings)`` builds the app and a TestClient
# for it (``client.app_runtime`` is the app's runtime); every app built is closed at teardown,
# as a graceful stop would (flushing its buffers).
# ======================================================================================

@pytest.fixture
def app_client() -> Iterator[Callable[[Any], testing.TestClient]]:
    apps: List[Any] = []

    def make(settings: Any) -> testing.TestClient:
        app = create_app(settings)
        apps.append(app)
        client = testing.TestClient(app)
        client.app_runtime = app.statskit
        return client

    yield make
    for app in apps:
        app.statskit.close(2.0)


# ======================================================================================
# Settings and tokens (tests/support.py): ``settings(**overrides)`` builds settings with data
# under tmp_path and the test secret; ``token(scopes)`` mints a token that verifies with it.
# ======================================================================================

@pytest.fixture
def settings(tmp_path) -> Callable[..., Any]:
    return lambda env=None, path=None, **overrides: make_settings(tmp_path, env=env, path=path, **overrides)


@pytest.fixture
def token() -> Callable[..., str]:
    return mint
