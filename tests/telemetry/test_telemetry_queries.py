"""The query routes and benchmarks registry on the WSGI app (falcon.testing), over the SQLite
store and a real PostgreSQL (pg_server.py), with the original's shapes."""
from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest

from statskit.telemetry import Row, open_store, parse_frame
from statskit.telemetry.parsing import NodeInfo
from pg_server import postgresql  # noqa: F401  (fixture)
from support import auth_header, make_settings, mint

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings_of(request, tmp_path):
    """Settings factory on one store kind (PostgreSQL: a fresh database of the real server)."""
    extra = {}
    if request.param == "postgresql":
        server = request.getfixturevalue("postgresql")
        extra["telemetry__database_url"] = server.new_database(f"query_{next(_names)}")
    return lambda **kw: make_settings(tmp_path, telemetry__enabled=True, **extra, **kw)


def ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fill(settings):
    """Peer QmA on two connections (the newer one is what /nodes shows), QmB, and an unnamed one."""
    store = open_store(settings)
    old, new, b = (store.open_connection(ip, False) for ip in ("10.0.0.1:1", "10.0.0.1:2", "10.0.0.2:1"))
    store.open_connection("10.0.0.3:1", False)  # never says who it is
    store.update_connection(old, NodeInfo("QmA", name="old-a", authority=False))
    store.update_connection(new, NodeInfo("QmA", name="a", chain="dev", version="1.0", authority=True,
                                          startup_time=1600000000000, implementation="substrate"))
    store.update_connection(b, NodeInfo("QmB", name="b"))
    rows = []
    for i in range(6):  # 2020-01-01T00:00:00 .. :05, on both connections of QmA
        logs = {"msg": "block.import" if i % 2 else "tracing.profiling", "ts": f"2020-01-01T00:00:0{i}Z",
                "height": i, "target": "babe" if i < 4 else "grandpa"}
        rows.append(Row(old if i < 3 else new, False, parse_frame(json.dumps(logs))))
    rows.append(Row(b, False, parse_frame('{"msg":"block.import","ts":"2020-01-01T00:00:00.5Z"}')))
    now = datetime.now(timezone.utc)
    for conn, reporter_view, age in ((new, {"QmB": (-5, True), "QmStranger": (3, False)}, 300),
                                     (new, {"QmB": (7, True), "QmStranger": (1, False)}, 10),
                                     (b, {"QmA": (2, False)}, 5)):
        nodes = {peer: {"reputation": rep, "connected": c} for peer, (rep, c) in reporter_view.items()}
        rows.append(Row(conn, False, parse_frame(json.dumps({"msg": "system.network_state", "ts": ts(now - timedelta(seconds=age)),
                                                              "state": {"peerset": {"nodes": nodes}}}))))
    store.insert_messages(rows)
    store.close()
    return now


def test_nodes_and_log_stats(settings_of, app_client):
    settings = settings_of()
    fill(settings)
    client = app_client(settings)
    for path in ("/nodes", "/nodes/"):
        nodes = client.simulate_get(path).json
        assert [(n["peer_id"], n["name"], n["ip_addr"]) for n in nodes] == [("QmA", "a", "10.0.0.1:2"),
                                                                             ("QmB", "b", "10.0.0.2:1")]
    a = nodes[0]
    assert set(a) == {"id", "ip_addr", "peer_id", "created_at", "audit", "name", "chain", "version", "authority",
                      "startup_time", "implementation"}
    assert (a["audit"], a["authority"], a["startup_time"], a["implementation"]) == (False, True, 1600000000000, "substrate")
    datetime.strptime(a["created_at"][:19], "%Y-%m-%dT%H:%M:%S")  # naive, no zone
    stats = client.simulate_get("/nodes/log_stats", params={"peer_id": "QmA"}).json
    assert stats == [{"qty": 3, "log_type": "block.import"}, {"qty": 3, "log_type": "tracing.profiling"},
                     {"qty": 2, "log_type": "system.network_state"}]
    assert client.simulate_get("/nodes/log_stats/", params={"peer_id": "QmNobody"}).json == []
    missing = client.simulate_get("/nodes/log_stats")
    assert missing.status_code == 400 and missing.json["field"] == "peer_id"


def test_logs_filters_bounds_and_cursor(settings_of, app_client):
    settings = settings_of()
    fill(settings)
    client = app_client(settings)
    get = lambda **p: client.simulate_get("/nodes/logs", params={"peer_id": "QmA", **p})  # noqa: E731
    rows = get(msg="block.import").json
    assert [r["logs"]["height"] for r in rows] == [5, 3, 1]  # newest first, across both connections
    assert set(rows[0]) == {"ip_addr", "peer_id", "msg", "created_at", "logs"}
    assert rows[0]["created_at"] == "2020-01-01T00:00:05" and rows[0]["ip_addr"] == "10.0.0.1:2"
    assert [r["logs"]["height"] for r in get(msg="block.import", target="babe").json] == [3, 1]
    # strict bounds, the original's naive time format (a fraction allowed)
    window = get(start_time="2020-01-01T00:00:01", end_time="2020-01-01T00:00:04.000").json
    assert [r["logs"]["height"] for r in window] == [3, 2]
    # pages: a cursor in the Link header until the last page; every row once
    seen, resp = [], get(end_time="2020-01-02T00:00:00", limit="4")
    while True:
        seen += [r["logs"]["height"] for r in resp.json]
        if "X-Next-Cursor" not in resp.headers:
            break
        assert resp.headers["Link"].startswith("</nodes/logs?") and 'rel="next"' in resp.headers["Link"]
        resp = get(end_time="2020-01-02T00:00:00", limit="4", cursor=resp.headers["X-Next-Cursor"])
    assert seen == [5, 4, 3, 2, 1, 0]
    for params, field in (({"start_time": "2020-01-01"}, "start_time"), ({"end_time": "yesterday"}, "end_time"),
                          ({"limit": "10001"}, "limit"), ({"limit": "x"}, "limit"), ({"cursor": "nope"}, "cursor")):
        bad = get(**params)
        assert bad.status_code == 400 and bad.json["field"] == field, (params, bad.text)
    assert client.simulate_get("/nodes/logs").json["field"] == "peer_id"


def test_reputation_routes(settings_of, app_client):
    settings = settings_of()
    fill(settings)
    client = app_client(settings)
    rows = {r["reporting_peer"]: r for r in client.simulate_get("/reputation").json}
    assert set(rows) == {"QmA", "QmB"}
    a = rows["QmA"]  # the latest within max_age_s (60 s by default): the one of 10 s ago
    assert sorted(zip(a["remote_peer"], a["reputation"], a["connected"])) == [("QmB", 7, True), ("QmStranger", 1, False)]
    assert [r["reporting_peer"] for r in client.simulate_get("/reputation/", params={"max_age_s": "7"}).json] == ["QmB"]
    logged = {r["reporting_peer"]: r for r in client.simulate_get("/reputation/logged").json}
    assert logged["QmA"]["remote_peer"] == ["QmB"] and logged["QmA"]["reputation"] == [7]
    about_b = client.simulate_get("/reputation/QmB").json  # pinned to QmB (the original was not)
    assert [(r["reporting_peer"], r["reputation"], r["connected"]) for r in about_b] == [("QmA", 7, True), ("QmA", -5, True)]
    assert len(client.simulate_get("/reputation/QmB", params={"limit": "1"}).json) == 1
    assert client.simulate_get("/reputation/QmNobody").json == []
    assert client.simulate_get("/reputation", params={"max_age_s": "-1"}).json["field"] == "max_age_s"


def test_stats_db_and_version(settings_of, app_client):
    settings = settings_of()
    fill(settings)
    client = app_client(settings)
    sizes = client.simulate_get("/stats/db").json
    names = [r["relation"].rsplit(".", 1)[-1] for r in sizes]
    assert "substrate_logs" in names and "peer_connections" in names and "benchmarks" in names
    assert all(r["size"].endswith(("bytes", "kB", "MB", "GB", "TB")) for r in sizes)
    version = client.simulate_get("/stats/version/")
    assert version.headers["Content-Type"].startswith("text/html") and version.text.startswith("statskit<br\\>")


def test_benchmarks_registry(settings_of, app_client):
    settings = settings_of()
    fill(settings)
    client = app_client(settings)
    first = client.simulate_post("/benchmarks", json={"setup": {"substrate": {"peerId": "QmA"}}}).json
    second = client.simulate_post("/benchmarks/", json={"setup": {"note": "no node"}}).json
    assert set(first) == {"id", "setup", "created_at"} and first["setup"] == {"substrate": {"peerId": "QmA"}}
    assert [b["id"] for b in client.simulate_get("/benchmarks").json] == [second["id"], first["id"]]
    for name in ("warmup", "import"):
        event = client.simulate_post("/benchmarks/events", json={"benchmark_id": first["id"], "name": name,
                                                                 "phase": "start", "created_at": "2020-01-01T00:00:01"})
        assert event.status_code == 200 and event.json["created_at"] == "2020-01-01T00:00:01"
    events = client.simulate_get(f"/benchmarks/{first['id']}/events").json
    assert [e["name"] for e in events] == ["import", "warmup"]
    assert set(events[0]) == {"id", "benchmark_id", "name", "phase", "created_at"}
    assert client.simulate_get(f"/benchmarks/{first['id']}/targets/").json == [{"target": "babe"}, {"target": "grandpa"}]
    assert client.simulate_get(f"/benchmarks/{second['id']}/targets").json == []
    assert client.simulate_get("/benchmarks/example").status_code == 200
    # bad input: told, nothing stored
    cases = [("/benchmarks", b'{"setup": ', 400), ("/benchmarks", b'{"nosetup": 1}', 400),
             ("/benchmarks", json.dumps({"setup": "x" * 5000}).encode(), 413),
             ("/benchmarks/events", json.dumps({"benchmark_id": first["id"], "name": "n", "phase": "p"}).encode(), 400),
             ("/benchmarks/events", json.dumps({"benchmark_id": 999, "name": "n", "phase": "p",
                                                "created_at": "2020-01-01T00:00:00"}).encode(), 404),
             ("/benchmarks/events", json.dumps({"benchmark_id": "1", "name": "n", "phase": "p",
                                                "created_at": "2020-01-01T00:00:00"}).encode(), 400)]
    for path, body, status in cases:
        resp = client.simulate_post(path, body=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == status, (path, body[:60], resp.text)
    assert len(client.simulate_get("/benchmarks").json) == 2
    assert len(client.simulate_get(f"/benchmarks/{first['id']}/events").json) == 2
    assert client.simulate_get("/benchmarks/999/events").status_code == 404
    assert client.simulate_get("/benchmarks/x/targets").status_code == 400


def test_tokens_when_required(tmp_path, app_client):
    settings = make_settings(tmp_path, telemetry__enabled=True, telemetry__require_token=True)
    client = app_client(settings)
    assert client.simulate_get("/nodes").status_code == 401
    assert client.simulate_get("/nodes", headers=auth_header(["read"])).status_code == 200
    read_only = {"Authorization": "Token " + mint(["read"])}
    assert client.simulate_post("/benchmarks", json={"setup": {}}, headers=read_only).status_code == 403
    assert client.simulate_post("/benchmarks", json={"setup": {}}, headers=auth_header(["write"])).status_code == 200
    doc = client.simulate_get("/telemetry/openapi.json").json  # public: says which scope each route needs
    assert doc["paths"]["/nodes/logs"]["get"]["security"] == [{"token": ["read"]}]
    assert doc["paths"]["/benchmarks"]["post"]["security"] == [{"token": ["write"]}]
