"""The query routes and the live feed end to end: real ``statskit-server`` (gunicorn, both
masters), real websocket producers and subscriber, on SQLite and on a real PostgreSQL."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
import websockets

from pg_server import postgresql  # noqa: F401  (fixture)
from telemetry_server import TelemetryServer, wait_for

pytestmark = pytest.mark.e2e


def ts(seconds_ago: float = 0.0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.realserver)])
def server(request, tmp_path):
    env = {}
    if request.param == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("postgresql").new_database(f"e2e_query_{id(request)}")
    with TelemetryServer(tmp_path, env=env) as srv:
        yield srv


def test_routes_and_feed_through_gunicorn(server):
    async def scenario():
        async with websockets.connect(server.ws + "/") as a, websockets.connect(server.ws + "/audit") as b, \
                websockets.connect(server.ws + "/feed") as feed:
            await a.send(json.dumps({"msg": "system.connected", "ts": ts(5), "network_id": "QmE2eA", "name": "a"}))
            await b.send(json.dumps({"msg": "system.connected", "ts": ts(5), "network_id": "QmE2eB", "name": "b"}))
            await feed.send(json.dumps({"peer_id": "QmE2eA", "msg": "block.import", "interest": "subscribe",
                                        "start_time": "2000-01-01T00:00:00"}))
            for height in range(5):
                await a.send(json.dumps({"msg": "block.import", "ts": ts(4 - height), "height": height,
                                         "target": "sync"}))
            await b.send(json.dumps({"msg": "system.network_state", "ts": ts(1),
                                     "state": {"peerset": {"nodes": {"QmE2eA": {"reputation": 12, "connected": True}}}}}))
            pushed = []
            while len(pushed) < 5:
                push = json.loads(await asyncio.wait_for(feed.recv(), 15))
                pushed += [d["height"] for d in push["data"]]
            await feed.send(json.dumps({"peer_id": "QmE2eA", "msg": "block.import", "interest": "subscribe",
                                        "aggregate_type": "max"}))  # start_time: now; nothing newer yet
            await feed.send("not json")
            error = json.loads(await asyncio.wait_for(feed.recv(), 15))
            return pushed, error

    pushed, error = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert pushed == [0, 1, 2, 3, 4] and "error" in error
    for base in (server.url, server.ws.replace("ws://", "http://")):  # the WSGI app and the listener's PORT
        logs = wait_for(lambda: requests.get(base + "/nodes/logs", params={"peer_id": "QmE2eA", "msg": "block.import",
                                                                           "limit": 3}, timeout=10))
        assert [r["logs"]["height"] for r in logs.json()] == [4, 3, 2], base
        assert "cursor=" in logs.headers["Link"]
        nodes = requests.get(base + "/nodes/", timeout=10).json()
        assert {n["peer_id"]: n["audit"] for n in nodes} == {"QmE2eA": False, "QmE2eB": True}
        stats = requests.get(base + "/nodes/log_stats", params={"peer_id": "QmE2eA"}, timeout=10).json()
        assert stats == [{"qty": 5, "log_type": "block.import"}, {"qty": 1, "log_type": "system.connected"}]
        about = requests.get(base + "/reputation/QmE2eA", timeout=10).json()
        assert [(r["reporting_peer"], r["reputation"], r["connected"]) for r in about] == [("QmE2eB", 12, True)]
        bad = requests.get(base + "/nodes/logs", params={"peer_id": "QmE2eA", "start_time": "1 May"}, timeout=10)
        assert bad.status_code == 400 and bad.json()["field"] == "start_time"
        made = requests.post(base + "/benchmarks", json={"setup": {"substrate": {"peerId": "QmE2eA"}}}, timeout=10)
        assert requests.get(f"{base}/benchmarks/{made.json()['id']}/targets", timeout=10).json() == [{"target": "sync"}]
        assert requests.get(base + "/benchmarks/123456/events", timeout=10).status_code == 404
        event = requests.post(base + "/benchmarks/events/", json={"benchmark_id": made.json()["id"], "name": "run",
                                                                  "phase": "start", "created_at": "2026-01-01T00:00:00"},
                              timeout=10)
        assert event.status_code == 200
        assert [e["name"] for e in requests.get(f"{base}/benchmarks/{made.json()['id']}/events/", timeout=10).json()] == ["run"]
        assert made.json()["id"] in [b["id"] for b in requests.get(base + "/benchmarks", timeout=10).json()]
        reporters = requests.get(base + "/reputation", params={"max_age_s": 3600}, timeout=10).json()
        assert [(r["reporting_peer"], r["remote_peer"], r["reputation"]) for r in reporters] == [("QmE2eB", ["QmE2eA"], [12])]
        assert requests.get(base + "/reputation/logged/", params={"max_age_s": 3600}, timeout=10).json() == reporters
        assert "substrate_logs" in {r["relation"].rsplit(".", 1)[-1] for r in requests.get(base + "/stats/db", timeout=10).json()}
        assert requests.get(base + "/stats/version", timeout=10).text.startswith("statskit<br\\>")
    assert wait_for(lambda: server.metric("feeds_disconnected") == 1)
    assert server.metric("feeds_connected") == 1 and server.metric("current_feed_connections") == 0
