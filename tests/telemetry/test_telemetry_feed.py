"""The live feed (``/feed``) and the query routes on the listener, in process (falcon.testing's
ASGI conductor): nodes stream on ``/``, subscribers get pushes of their pair."""
from __future__ import annotations

import asyncio
import contextlib
import json

import falcon
import pytest
from falcon import testing

from statskit.config import load_settings
from statskit.state.memory import MemoryState
from statskit.telemetry.store_sqlite import SQLiteTelemetryStore
from statskit_server.telemetry_asgi import create_telemetry_app

HELLO = '{"msg":"system.connected","ts":"2021-01-01T00:00:00Z","network_id":"QmF"}'


def make(tmp_path, **env):
    settings = load_settings(env={"STATSKIT_DATA_DIR": str(tmp_path), "DB_SAVE_LATENCY_MS": "1", **env})
    state, store = MemoryState(), SQLiteTelemetryStore.in_data_dir(str(tmp_path))
    return create_telemetry_app(settings, state=state, store=store), state, store


def profiling(second: int, time: int, name: str = "n") -> str:
    return json.dumps({"msg": "tracing.profiling", "ts": f"2021-01-01T00:00:{second:02d}Z", "time": time,
                       "name": name, "target": "babe", "level": "INFO", "line": 7})


def subscribe(**extra) -> str:
    return json.dumps({"peer_id": "QmF", "msg": "tracing.profiling", "interest": "subscribe", **extra})


async def receive(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.receive_text(), 10))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_pushes_ascending_only_newer_rows_and_unsubscribe(tmp_path):
    app, state, _ = make(tmp_path)

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            async with conductor.simulate_ws("/") as node, conductor.simulate_ws("/feed") as feed:
                await node.send_text(HELLO)
                for second in (1, 2, 3):
                    await node.send_text(profiling(second, second * 10))
                await feed.send_text(subscribe(start_time="2021-01-01T00:00:01"))  # strictly after :01
                first = await receive(feed)
                assert first["peer_message"] == {"peer_id": "QmF", "msg": "tracing.profiling"}
                assert first["data"] == [{"time": 20, "name": "n", "target": "babe", "created_at": "2021-01-01T00:00:02"},
                                         {"time": 30, "name": "n", "target": "babe", "created_at": "2021-01-01T00:00:03"}]
                await node.send_text(profiling(4, 40))
                assert [d["time"] for d in (await receive(feed))["data"]] == [40]  # only the newer row
                await feed.send_text(json.dumps({"peer_id": "QmF", "msg": "tracing.profiling", "interest": "unsubscribe"}))
                await node.send_text(profiling(5, 50))
                await feed.send_text(json.dumps({"peer_id": "QmF", "msg": "other", "interest": "subscribe",
                                                 "start_time": "2000-01-01T00:00:00"}))
                await node.send_text(json.dumps({"msg": "other", "ts": "2021-01-01T00:00:06Z", "v": 1}))
                other = await receive(feed)  # the next push is of the other pair: :05 was not sent
                assert other["peer_message"]["msg"] == "other" and other["data"][0]["v"] == 1
            assert app.listener is not None and app.listener.feed.pairs == {}  # closed: nothing polled

    run(scenario())
    counters = {n: v for n, _, v in state.counters()}
    assert counters["telemetry:feeds_connected"] == counters["telemetry:feeds_disconnected"] == 1


def test_aggregates_and_errors(tmp_path):
    app, _, _ = make(tmp_path)

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            async with conductor.simulate_ws("/") as node, conductor.simulate_ws("/feed/") as feed:
                await node.send_text(HELLO)
                for second, time in ((1, 10), (2, 30), (3, 20), (6, 99)):
                    await node.send_text(profiling(second, time))
                await node.send_text(profiling(2, 1000, name="other"))
                for kind, expected in (("mean", 20), ("median", 20), ("min", 10), ("max", 30), ("percentile90", 30)):
                    await feed.send_text(subscribe(start_time="2021-01-01T00:00:00", aggregate_type=kind,
                                                   aggregate_interval=5))
                    data = (await receive(feed))["data"]
                    buckets = {(d["created_at"], d["name"]): d["time"] for d in data}
                    assert buckets == {("2021-01-01T00:00:00", "n"): expected, ("2021-01-01T00:00:00", "other"): 1000,
                                       ("2021-01-01T00:00:05", "n"): 99}, kind
                    assert all(d["values"] == "" and d["target"] == "babe" for d in data)
                for bad, says in (("{", "malformed JSON"), ('["x"]', "JSON object"),
                                  (json.dumps({"msg": "m", "interest": "subscribe"}), "peer_id"),
                                  (subscribe(interest="maybe"), "interest"),
                                  (subscribe(start_time="yesterday"), "start_time"),
                                  (subscribe(aggregate_type="p99"), "aggregate_type"),
                                  (subscribe(aggregate_type="mean", aggregate_interval=0), "aggregate_interval")):
                    await feed.send_text(bad)
                    error = await receive(feed)
                    assert list(error) == ["error"] and says in error["error"], (bad, error)

    run(scenario())


def test_one_poll_per_pair_whatever_the_subscribers(tmp_path):
    app, _, store = make(tmp_path)

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            async with conductor.simulate_ws("/") as node:
                await node.send_text(HELLO)
                await node.send_text(profiling(1, 1))
                for _ in range(400):  # stored first: what is measured is the pushes, not the writer
                    if store.pair_rows("QmF", "tracing.profiling", ("", 0), 10):
                        break
                    await asyncio.sleep(0.05)
                async with contextlib.AsyncExitStack() as stack:
                    feeds = [await stack.enter_async_context(conductor.simulate_ws("/feed")) for _ in range(40)]
                    for feed in feeds:
                        await feed.send_text(subscribe(start_time="2021-01-01T00:00:00"))
                    for feed in feeds:
                        assert [d["time"] for d in (await receive(feed))["data"]] == [1]
                    hub = app.listener.feed
                    assert len(hub.pairs) == 1
                    before = hub.polls
                    await node.send_text(profiling(2, 2))
                    for feed in feeds:
                        assert [d["time"] for d in (await receive(feed))["data"]] == [2]
                    # one store query per tick for the pair, not one per subscriber
                    assert hub.polls - before < 10

    run(scenario())


def test_query_routes_on_the_listener(tmp_path):
    app, _, _ = make(tmp_path)

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            async with conductor.simulate_ws("/") as node:
                await node.send_text(HELLO)
                await node.send_text(profiling(1, 1))
            for _ in range(200):  # the write buffer reaches the store within milliseconds
                logs = await conductor.simulate_get("/nodes/logs/", params={"peer_id": "QmF"})
                if len(logs.json) == 2:
                    break
                await asyncio.sleep(0.05)
            assert [r["msg"] for r in logs.json] == ["tracing.profiling", "system.connected"]
            assert [n["peer_id"] for n in (await conductor.simulate_get("/nodes")).json] == ["QmF"]
            bad = await conductor.simulate_get("/nodes/logs", params={"peer_id": "QmF", "end_time": "now"})
            assert bad.status_code == 400 and bad.json["field"] == "end_time"
            made = await conductor.simulate_post("/benchmarks", json={"setup": {"substrate": {"peerId": "QmF"}}})
            assert made.status_code == 200
            assert (await conductor.simulate_get(f"/benchmarks/{made.json['id']}/targets")).json == [{"target": "babe"}]
            assert (await conductor.simulate_get("/benchmarks/77/events")).status_code == 404
            big = await conductor.simulate_post("/benchmarks", body=b'{"setup":"' + b"x" * 5000 + b'"}')
            assert big.status_code == 413

    run(scenario())


def test_feed_and_routes_need_a_read_token_when_required(tmp_path):
    from support import SECRET, mint

    app, state, _ = make(tmp_path, TELEMETRY_REQUIRE_TOKEN="true", STATSKIT_SECRET_KEY=SECRET)

    async def scenario():
        async with testing.ASGIConductor(app) as conductor:
            with pytest.raises(falcon.WebSocketDisconnected):
                async with conductor.simulate_ws("/feed", query_string="token=" + mint(["write"])):
                    pass
            async with conductor.simulate_ws("/feed", query_string="token=" + mint(["read"])) as feed:
                await feed.send_text("{}")
                assert "error" in await receive(feed)
            assert (await conductor.simulate_get("/nodes")).status_code == 401
            ok = await conductor.simulate_get("/nodes", headers={"Authorization": "Token " + mint(["read"])})
            assert ok.status_code == 200

    run(scenario())
    refused = [(dict(labels), v) for n, labels, v in state.counters() if n == "statskit_telemetry_refused"]
    assert refused == [({"reason": "feed_token"}, 1.0)]
