"""The listener app in process (falcon.testing's ASGI conductor, no gunicorn): connection
limits and the handshake refusals, quickly. The real server is in test_telemetry_e2e.py."""
from __future__ import annotations

import asyncio

import falcon
import pytest
from falcon import testing

from statskit.config import load_settings
from statskit.state.memory import MemoryState
from statskit.telemetry.store_sqlite import SQLiteTelemetryStore
from statskit_server.telemetry_asgi import create_telemetry_app

HELLO = '{"msg":"system.connected","ts":"2021-01-01T00:00:00Z","network_id":"QmIn"}'


def make(tmp_path, **env):
    settings = load_settings(env={"STATSKIT_DATA_DIR": str(tmp_path), "DB_SAVE_LATENCY_MS": "1", **env})
    state, store = MemoryState(), SQLiteTelemetryStore.in_data_dir(str(tmp_path))
    return create_telemetry_app(settings, state=state, store=store), state, store


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_max_connections_refuses_the_next_one(tmp_path):
    app, state, store = make(tmp_path, MAX_PENDING_CONNECTIONS="1")

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            async with conductor.simulate_ws("/") as first:
                await first.send_text(HELLO)
                with pytest.raises(falcon.WebSocketDisconnected):
                    async with conductor.simulate_ws("/audit"):
                        pass
            async with conductor.simulate_ws("/audit") as again:  # room again once the first left
                await again.send_text(HELLO)

    run(scenario())
    assert [c["audit"] for c in store.connections()] == [0, 1]
    refused = [(dict(labels), v) for n, labels, v in state.counters() if n == "statskit_telemetry_refused"]
    assert refused == [({"reason": "max_connections"}, 1.0)]
    assert store.count_messages() == 2  # written at the ASGI shutdown at the latest


def test_unknown_paths_are_refused(tmp_path):
    app, _, store = make(tmp_path)

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            with pytest.raises(falcon.WebSocketDisconnected):
                async with conductor.simulate_ws("/feed/nope"):
                    pass

    run(scenario())
    assert store.connections() == []


def test_behind_a_trusted_proxy_the_forwarded_address_counts(tmp_path):
    app, _, store = make(tmp_path, TRUSTED_PROXIES="10.9.0.1", TELEMETRY_ALLOWED_NETWORKS="192.0.2.0/24")

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            async with conductor.simulate_ws("/", remote_addr="10.9.0.1",
                                             headers={"X-Forwarded-For": "192.0.2.7"}) as ws:
                await ws.send_text(HELLO)
            with pytest.raises(falcon.WebSocketDisconnected):  # the proxy's own address is not allowed
                async with conductor.simulate_ws("/", remote_addr="10.9.0.1"):
                    pass
            with pytest.raises(falcon.WebSocketDisconnected):  # nor a header from an untrusted peer
                async with conductor.simulate_ws("/", remote_addr="10.9.0.2",
                                                 headers={"X-Forwarded-For": "192.0.2.7"}):
                    pass

    run(scenario())
    assert [c["ip_addr"] for c in store.connections()] == ["192.0.2.7"]
