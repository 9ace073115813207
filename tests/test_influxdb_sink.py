"""The InfluxDB sink against real servers: InfluxDB 1.6.7 (v1 /write) and VictoriaMetrics (v2 API)."""
import logging

import pytest
from falcon import testing
from influxdb_client import Point

from statskit.config import load_settings
from statskit.events import Event, parse_items
from statskit.sinks.influxdb import InfluxDBSink, V1Writer, V2Writer
from statskit.sinks.lineprotocol import to_line
from statskit.state import sum_by
from statskit.state.memory import MemoryState
from statskit.tokens import TokenSigner
from statskit_server import create_app

pytestmark = pytest.mark.realserver

T0 = 1795341600  # 2026-11-22T10:00:00Z


def v1_sink(server, state=None, **kwargs):
    return InfluxDBSink(V1Writer(server.url, "stats"), state or MemoryState(), flush_interval=0.05, **kwargs)


def test_line_protocol_escapes_like_influxdb_client():
    # Built directly: the sink also writes session points whose tag values hold spaces and commas.
    ev = Event("e1", T0 * 10**9, "page views,x", {"host name": "a,b=c", "empty": ""},
               {"say": 'he said "hi" \\o/', "n": 3, "f": 0.5, "ok": False})
    ours = to_line(ev)
    theirs = (Point("page views,x").tag("host name", "a,b=c").field("say", 'he said "hi" \\o/').field("n", 3)
              .field("f", 0.5).field("ok", False).field("event_id", "e1").time(T0 * 10**9).to_line_protocol())
    assert ours == theirs


def test_v1_events_and_points_arrive_with_tags_fields_types_and_time(influxdb1):
    state = MemoryState()
    sink = v1_sink(influxdb1, state)
    events = parse_items([
        {"uid": "u1", "event": "signup", "plan": "pro", "seats": 3, "score": 1.5, "trial": True, "time": T0,
         "tags": {"region": "eu"}},
        {"measurement": "cpu", "tags": {"host": "a"}, "fields": {"load": 0.25}, "time": T0 + 1},
    ], table_name="analytics")
    sink.emit(events)
    sink.flush(10)
    assert "stats" in influxdb1.databases()  # created on the first write
    [row] = influxdb1.points("stats", "analytics")
    assert row["time"] == T0 * 10**9
    assert (row["uid"], row["event"], row["region"]) == ("u1", "signup", "eu")
    assert (row["plan"], row["seats"], row["score"], row["trial"]) == ("pro", 3, 1.5, True)
    assert row["event_id"] == events[0].id
    tags = influxdb1.query('SHOW TAG KEYS FROM "analytics"', db="stats")["results"][0]["series"][0]["values"]
    assert sorted(t[0] for t in tags) == ["event", "region", "uid"]  # event_id is a field, not a series
    [cpu] = influxdb1.points("stats", "cpu")
    assert (cpu["host"], cpu["load"], cpu["time"]) == ("a", 0.25, (T0 + 1) * 10**9)
    assert sum_by(state.counters(), "statskit_sink_written") == 2
    got = sink.get(events[0].id)
    assert got.to_dict() == events[0].to_dict()
    sink.close(5)


def test_v1_outage_loses_nothing_once_the_database_is_back(influxdb1):
    state = MemoryState()
    sink = v1_sink(influxdb1, state)
    sink.emit(parse_items([{"uid": f"u{i}", "event": "before", "time": T0 + i} for i in range(10)]))
    sink.flush(10)
    influxdb1.stop()
    during = parse_items([{"uid": f"u{i}", "event": "during", "time": T0 + 100 + i} for i in range(250)])
    for i in range(0, 250, 25):
        sink.emit(during[i:i + 25])  # returns at once: nothing waits for the database
    assert not sink.worker.flush(0.5)  # cannot be written while it is down
    influxdb1.start()
    assert sink.worker.flush(30)
    rows = influxdb1.points("stats", "analytics")
    assert len(rows) == 260
    assert sorted(r["uid"] for r in rows if r["event"] == "during") == sorted(f"u{i}" for i in range(250))
    assert sum_by(state.counters(), "statskit_sink_errors") >= 1
    assert sum_by(state.counters(), "statskit_sink_dropped") == 0
    sink.close(5)


def test_a_full_buffer_drops_the_newest_and_says_so(influxdb1, caplog):
    state = MemoryState()
    influxdb1.stop()
    sink = v1_sink(influxdb1, state, max_buffer=50, batch_size=10)
    with caplog.at_level(logging.ERROR, logger="statskit.sinks.influxdb"):
        sink.emit(parse_items([{"uid": f"u{i}", "event": "flood", "time": T0 + i} for i in range(200)]))
    dropped = state.counters("statskit_sink_dropped")
    assert dropped == [("statskit_sink_dropped", (("reason", "buffer_full"), ("sink", "influxdb")), 150.0)]
    assert "dropped points: 150 (buffer_full)" in caplog.text
    influxdb1.start()
    assert sink.worker.flush(30)
    assert sorted(r["uid"] for r in influxdb1.points("stats", "analytics")) == sorted(f"u{i}" for i in range(50))
    sink.close(5)


def test_v2_api_into_victoria_metrics(victoria_metrics):
    state = MemoryState()
    sink = InfluxDBSink(V2Writer(victoria_metrics.url, "token", "org", "bucket"), state, flush_interval=0.05)
    sink.emit(parse_items([{"measurement": "orders", "tags": {"shop": "eu"}, "fields": {"total": 12.5}, "time": T0},
                           {"uid": "u1", "event": "buy", "amount": 3, "time": T0 + 1}]))
    sink.flush(10)
    series = {(s["metric"]["__name__"], s["metric"].get("shop", s["metric"].get("event"))): s
              for s in victoria_metrics.export()}
    assert series[("orders_total", "eu")]["values"] == [12.5]
    assert series[("orders_total", "eu")]["timestamps"] == [T0 * 1000]
    assert series[("analytics_amount", "buy")]["values"] == [3]
    assert sum_by(state.counters(), "statskit_sink_written") == 2
    sink.close(5)


def test_v2_outage_is_retried(victoria_metrics):
    state = MemoryState()
    sink = InfluxDBSink(V2Writer(victoria_metrics.url, "t", "o", "b"), state, flush_interval=0.05)
    victoria_metrics.stop()
    sink.emit(parse_items([{"measurement": "m", "fields": {"v": i}, "time": T0 + i} for i in range(20)]))
    assert not sink.worker.flush(0.5)
    victoria_metrics.start()
    assert sink.worker.flush(30)
    [series] = victoria_metrics.export('{__name__="m_v"}')
    assert sorted(series["values"]) == list(range(20))
    sink.close(5)


def test_through_the_server_and_read_back_by_id(influxdb1, tmp_path):
    settings = load_settings(env={}, overrides={
        "sinks.enabled": ["influxdb"], "influxdb.api": "v1", "influxdb.url": influxdb1.url,
        "influxdb.database": "analytics_db", "influxdb.flush_interval": 0.05,
        "server.data_dir": str(tmp_path), "auth.secret_key": ["k"]})
    app = create_app(settings)
    client = testing.TestClient(app)
    headers = {"Authorization": "Token " + TokenSigner(["k"]).mint("t", ["write", "read"])}
    event_id = client.simulate_post("/log/event", json={"uid": "u7", "event": "login", "ms": 12}, headers=headers).json
    assert client.simulate_post("/log/event", json=[{"measurement": "cpu", "fields": {"v": 1.0}}],
                                headers=headers).json == "OK"
    app.statskit.pipeline.flush(10)
    got = client.simulate_get(f"/log/event/{event_id}", headers=headers)
    assert got.status_code == 200
    assert (got.json["uid"], got.json["event"], got.json["ms"]) == ("u7", "login", 12)
    assert len(influxdb1.points("analytics_db", "cpu")) == 1
    assert client.simulate_get("/log/event/entry_unknown", headers=headers).status_code == 404
    app.statskit.close(5)
