"""The InfluxDB sink against real servers: InfluxDB 1.6.7 (v1 /write, InfluxQL) and VictoriaMetrics (v2 API).

No mocks: every write goes over HTTP to a real server started by the fixtures in conftest.py,
and is read back from it. Nothing here asserts on timing; waits are bounded by flush timeouts.
"""
from __future__ import annotations

import logging
import math

import orjson
import pytest
from falcon import testing
from influxdb_client import Point

from statskit.config import load_settings
from statskit.events import Event, parse_items
from statskit.sinks.influxdb import InfluxDBSink, V1Writer, V2Writer
from statskit.sinks.lineprotocol import field_value, stored_line, to_line, to_lines
from statskit.state import sum_by
from statskit.state.memory import MemoryState
from statskit.tokens import TokenSigner
from statskit_server import create_app

from conftest import start_real_server
from servers_influx import InfluxDB1

T0 = 1795341600  # 2026-11-22T10:00:00Z
DB = "stats"


def v1_sink(server, state=None, **kwargs) -> InfluxDBSink:
    return InfluxDBSink(V1Writer(server.url, DB), state or MemoryState(), flush_interval=0.05, **kwargs)


def counted(state, name, **labels) -> float:
    """A counter summed over the label sets that contain ``labels``."""
    return sum(v for n, lk, v in state.counters(name) if n == name and set(labels.items()) <= set(lk))


# --------------------------------------------------------------------------- line protocol

TRICKY = [
    # (measurement, tags, fields): every character line protocol cares about, in every position
    ("page views,x=1", {"host name": "a,b=c d", "quote": 'say "hi"', "mid\\slash": "a\\b", "comma,key": "v"},
     {"say": 'he said "hi" \\o/', "n": 3, "f": 0.5, "ok": False, "multi\nline": "l1\nl2", "eq=key": -7}),
    ("m", {"bs_comma": "a\\,b", "bs_space": "a\\ b", "trailing": "ends\\", "empty": ""},
     {"s": "\\", "t": '\\"', "big": 2**63 - 1, "neg": -1.25e-7, "sci": 1.5e+20}),
    ("tab\tm", {"t": "x\ty"}, {"u": "ünïcödé ✓", "yes": True}),
]


@pytest.mark.parametrize("measurement,tags,fields", TRICKY)
def test_line_protocol_escapes_like_influxdb_client(measurement, tags, fields):
    ours = to_line(Event("e1", T0 * 10**9, measurement, tags, fields))
    point = Point(measurement).time(T0 * 10**9)
    for key, value in tags.items():
        point.tag(key, value)
    for key, value in {**fields, "event_id": "e1"}.items():
        point.field(key, value)
    assert ours == point.to_line_protocol()


@pytest.mark.parametrize("measurement,tags,fields", TRICKY)
def test_the_line_from_a_stored_row_is_the_line_of_the_event(measurement, tags, fields):
    """The relay formats the log's rows without decoding them into Events: the same line."""
    point = Event("e1", T0 * 10**9 + 7, measurement, tags, fields)
    event = Event("e2", T0 * 10**9 + 8, "analytics", {**tags, "uid": "u 1", "event": "sign,up"}, fields,
                  uid="u 1", event="sign,up")
    for original in (point, event):
        stored = orjson.loads(original.to_json())
        assert stored_line(stored, original.time_ns) == to_line(Event.from_dict(stored, original.time_ns))
    assert stored_line(orjson.loads(point.to_json()), point.time_ns) == to_line(point)


def test_values_influxdb_cannot_store_are_left_out():
    assert field_value(None) is None and field_value(math.nan) is None and field_value(math.inf) is None
    fields = {"a_gone": None, "nan": math.nan, "kept": 1, "z": "last"}
    line = to_line(Event("e1", 1, "m", {"t": ""}, fields))
    assert line == 'm event_id="e1",kept=1i,z="last" 1'
    point = Point("m").tag("t", "").time(1)
    for key, value in {**fields, "event_id": "e1"}.items():
        point.field(key, value)
    assert line == point.to_line_protocol()


def test_each_float_keeps_its_own_text_when_the_last_one_is_remembered():
    values = [1796296606.5874798, 1796296606.5874798, 0.0, -0.0, -0.0, 0.0, 1e20, 1.0, 1.0]
    lines = [to_line(Event("e1", 1, "m", {}, {"f": value})) for value in values]
    assert [line.split("f=")[1].split(" ")[0] for line in lines] == [repr(value) for value in values]


def test_events_sharing_a_series_and_a_time_get_distinct_times():
    events = parse_items([{"uid": "u1", "event": "click", "n": i, "time": T0} for i in range(3)]
                         + [{"uid": "u2", "event": "click", "time": T0}])
    times = [int(line.rsplit(" ", 1)[1]) for line in to_lines(events)]
    assert times == [T0 * 10**9, T0 * 10**9 + 1, T0 * 10**9 + 2, T0 * 10**9]  # u2 is another series
    retry = Event(events[0].id, events[0].time_ns, "analytics", dict(events[0].tags), dict(events[0].fields))
    assert [line.rsplit(" ", 1)[1] for line in to_lines([events[0], retry])] == [str(T0 * 10**9)] * 2


def test_construction_does_not_connect_and_a_bad_url_fails_at_start():
    settings = load_settings(env={}, overrides={"influxdb.api": "v1", "influxdb.url": "http://127.0.0.1:9"})
    state = MemoryState()
    sink = InfluxDBSink.from_settings(settings, state)
    assert sink.close(1) and state.counters() == []  # nothing queued, nothing tried
    for bad in ("127.0.0.1:8086", "localhost", "ftp://x"):
        with pytest.raises(ValueError, match="url"):
            V1Writer(bad, DB)
    with pytest.raises(ValueError, match="api"):
        InfluxDBSink.from_settings(load_settings(env={}, overrides={"influxdb.api": "v3"}), state)


# --------------------------------------------------------------------------- InfluxDB 1.6.7 (v1)

def test_v1_events_and_points_arrive_with_tags_fields_types_and_time(influxdb1):
    state = MemoryState()
    sink = v1_sink(influxdb1, state)
    events = parse_items([
        {"uid": "u1", "event": "signup", "plan": "pro", "seats": 3, "score": 2.0, "trial": True, "time": T0,
         "tags": {"region": "eu"}},
        {"measurement": "cpu", "tags": {"host": "a"}, "fields": {"load": 0.25}, "time": T0 + 1},
    ], table_name="analytics")
    sink.emit(events)
    assert sink.flush(10)
    assert DB in influxdb1.databases()  # created on the first write
    [row] = influxdb1.points(DB, "analytics")
    assert row["time"] == T0 * 10**9
    assert (row["uid"], row["event"], row["region"]) == ("u1", "signup", "eu")
    assert (row["plan"], row["seats"], row["score"], row["trial"]) == ("pro", 3, 2, True)
    assert row["event_id"] == events[0].id
    keys = influxdb1.query('SHOW TAG KEYS FROM "analytics"; SHOW FIELD KEYS FROM "analytics"', db=DB)["results"]
    assert sorted(t[0] for t in keys[0]["series"][0]["values"]) == ["event", "region", "uid"]  # event_id: a field
    assert dict(keys[1]["series"][0]["values"]) == {"event_id": "string", "plan": "string", "score": "float",
                                                    "seats": "integer", "trial": "boolean"}
    [cpu] = influxdb1.points(DB, "cpu")
    assert (cpu["host"], cpu["load"], cpu["time"]) == ("a", 0.25, (T0 + 1) * 10**9)
    assert sum_by(state.counters(), "statskit_sink_written") == 2
    got = sink.get(events[0].id)
    assert got.to_dict() == events[0].to_dict()
    assert type(got.fields["score"]) is float and type(got.fields["seats"]) is int  # 2.0 stays a float
    assert sink.get("entry_nope") is None
    assert sink.close(5)


def test_v1_tricky_names_and_values_read_back_as_sent(influxdb1):
    sink = v1_sink(influxdb1)
    tags = {"host name": "a,b=c d", "quote": 'say "hi"', "slash": "a\\b", "bs_comma": "a\\,b", "uid": "u1",
            "event": "e"}
    fields = {"say": 'he said "hi" \\o/', "multi": "l1\nl2", "lone": "\\"}
    sink.emit([Event("e1", T0 * 10**9, "page views,x=1", tags, fields, uid="u1", event="e")])
    assert sink.flush(10)
    [row] = influxdb1.points(DB, "page views,x=1")
    assert {k: row[k] for k in tags} == tags and {k: row[k] for k in fields} == fields
    sink.close(5)


def test_a_batch_sharing_one_receive_time_keeps_every_event(influxdb1):
    # 500 page views from 97 users in one request: without distinct times InfluxDB keeps 97.
    state = MemoryState()
    sink = v1_sink(influxdb1, state)
    events = parse_items([{"uid": f"user-{i % 97}", "event": "page_view", "ms": i} for i in range(500)])
    sink.emit(events)
    assert sink.flush(10)
    rows = influxdb1.points(DB, "analytics")
    assert sorted(r["ms"] for r in rows) == list(range(500))
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in events)
    assert sum_by(state.counters(), "statskit_sink_written") == 500
    sink.close(5)


def test_v1_outage_loses_nothing_once_the_database_is_back(influxdb1, caplog):
    state = MemoryState()
    sink = v1_sink(influxdb1, state)
    sink.emit(parse_items([{"uid": f"u{i}", "event": "before", "time": T0 + i} for i in range(10)]))
    assert sink.flush(10)
    influxdb1.stop()
    during = parse_items([{"uid": f"u{i}", "event": "during", "time": T0 + 100 + i} for i in range(250)])
    with caplog.at_level(logging.WARNING, logger="statskit.sinks.influxdb"):
        for i in range(0, 250, 25):
            sink.emit(during[i:i + 25])  # returns at once: nothing waits for the database
        assert not sink.flush(0.5)  # cannot be written while it is down
        influxdb1.start()
        assert sink.flush(30)
    rows = influxdb1.points(DB, "analytics")
    assert len(rows) == 260
    assert sorted(r["event_id"] for r in rows if r["event"] == "during") == sorted(e.id for e in during)
    assert sum_by(state.counters(), "statskit_sink_written") == 260  # each point written once
    assert sum_by(state.counters(), "statskit_sink_errors") >= 1
    assert sum_by(state.counters(), "statskit_sink_dropped") == 0
    assert "failed writes (retrying)" in caplog.text and "InfluxDB unreachable" in caplog.text
    assert "writes work again" in caplog.text
    sink.close(5)


def test_a_full_buffer_drops_the_newest_and_says_so(influxdb1, caplog):
    state = MemoryState()
    influxdb1.stop()
    sink = v1_sink(influxdb1, state, max_buffer=50, batch_size=10)
    with caplog.at_level(logging.ERROR, logger="statskit.sinks.influxdb"):
        sink.emit(parse_items([{"uid": f"u{i}", "event": "flood", "time": T0 + i} for i in range(200)]))
    assert state.counters("statskit_sink_dropped") == [
        ("statskit_sink_dropped", (("reason", "buffer_full"), ("sink", "influxdb")), 150.0)]
    assert "150 points dropped (buffer_full)" in caplog.text
    influxdb1.start()
    assert sink.flush(30)
    assert sorted(r["uid"] for r in influxdb1.points(DB, "analytics")) == sorted(f"u{i}" for i in range(50))
    sink.close(5)


def test_what_is_left_at_close_is_counted_and_logged(influxdb1, caplog):
    state = MemoryState()
    influxdb1.stop()
    sink = v1_sink(influxdb1, state)
    sink.emit(parse_items([{"uid": "u", "event": "late", "n": i} for i in range(7)]))
    with caplog.at_level(logging.ERROR, logger="statskit.sinks.influxdb"):
        assert not sink.close(0.2)
    assert counted(state, "statskit_sink_dropped", reason="shutdown") == 7
    assert "7 points dropped (shutdown)" in caplog.text


def test_refused_points_cost_only_themselves(influxdb1, caplog):
    # One client sends "amount" as an integer, another as a float or a string: InfluxDB 1.x refuses
    # a whole batch that introduces a field with two types, and later ones partially.
    state = MemoryState()
    sink = v1_sink(influxdb1, state, batch_size=100)
    first = parse_items([{"uid": f"u{i}", "event": "buy", "amount": 3 if i != 17 else 3.5} for i in range(40)])
    with caplog.at_level(logging.ERROR, logger="statskit.sinks.influxdb"):
        sink.emit(first)
        assert sink.flush(10)
        second = parse_items([{"uid": f"v{i}", "event": "buy", "amount": "ten" if i == 3 else i} for i in range(10)])
        sink.emit(second)
        assert sink.flush(10)
    rows = influxdb1.points(DB, "analytics")
    stored = {r["event_id"] for r in rows}
    assert len(rows) == 48 and first[17].id not in stored and second[3].id not in stored
    assert sum_by(state.counters(), "statskit_sink_written") == 48
    assert counted(state, "statskit_sink_dropped", reason="rejected") == 2
    assert "points dropped (rejected)" in caplog.text and "field type conflict" in caplog.text


def test_the_database_is_created_when_missing(influxdb1):
    sink = v1_sink(influxdb1)
    assert DB not in influxdb1.databases()
    sink.emit(parse_items([{"uid": "u1", "event": "first"}]))
    assert sink.flush(10)
    assert DB in influxdb1.databases()
    influxdb1.query(f'DROP DATABASE "{DB}"')  # dropped by an operator while statskit runs
    sink.emit(parse_items([{"uid": "u2", "event": "second"}]))
    assert sink.flush(10)
    assert [r["event"] for r in influxdb1.points(DB, "analytics")] == ["second"]
    sink.close(5)


def test_v1_query_filters_newest_first(influxdb1):
    sink = v1_sink(influxdb1)
    sink.emit(parse_items([{"uid": f"u{i % 2}", "event": "a" if i < 4 else "b", "i": i, "time": T0 + i}
                           for i in range(6)]))
    assert [e.fields["i"] for e in sink.query(uid="u0")] == [4, 2, 0]
    assert [e.fields["i"] for e in sink.query(event="a", since_ns=(T0 + 1) * 10**9, until_ns=(T0 + 3) * 10**9)] == [2, 1]
    assert [e.fields["i"] for e in sink.query(limit=2)] == [5, 4]
    assert sink.query(uid="it's \\ nobody") == []
    off = InfluxDBSink(V1Writer(influxdb1.url, DB), MemoryState(), read_events=False)
    assert off.query() == [] and off.get(sink.query(limit=1)[0].id) is None
    sink.close(5)
    off.close(1)


# --------------------------------------------------------------------------- v2 API (VictoriaMetrics)

def test_v2_api_into_victoria_metrics(victoria_metrics):
    state = MemoryState()
    sink = InfluxDBSink(V2Writer(victoria_metrics.url, "token", "org", "bucket"), state, flush_interval=0.05)
    events = parse_items([{"measurement": "orders", "tags": {"shop": "eu"}, "fields": {"total": 12.5, "n": 2},
                           "time": T0},
                          {"uid": "u1", "event": "buy", "amount": 3, "ok": True, "time": T0 + 1}])
    sink.emit(events)
    assert sink.flush(10)
    series = {(s["metric"]["__name__"], s["metric"].get("shop", s["metric"].get("event"))): s
              for s in victoria_metrics.export()}
    assert series[("orders_total", "eu")]["values"] == [12.5]
    assert series[("orders_total", "eu")]["timestamps"] == [T0 * 1000]
    assert series[("orders_n", "eu")]["values"] == [2]
    assert series[("analytics_amount", "buy")]["values"] == [3]
    assert series[("analytics_amount", "buy")]["metric"]["uid"] == "u1"
    assert series[("analytics_ok", "buy")]["values"] == [1]
    assert sum_by(state.counters(), "statskit_sink_written") == 2
    assert sink.get(events[1].id) is None and sink.query() == []  # v2 servers are read with Flux
    sink.close(5)


def test_v2_outage_is_retried(victoria_metrics):
    state = MemoryState()
    sink = InfluxDBSink(V2Writer(victoria_metrics.url, "t", "o", "b"), state, flush_interval=0.05)
    victoria_metrics.stop()
    sink.emit(parse_items([{"measurement": "m", "fields": {"v": i}, "time": T0 + i} for i in range(20)]))
    assert not sink.flush(0.5)
    victoria_metrics.start()
    assert sink.flush(30)
    [series] = victoria_metrics.export('{__name__="m_v"}')
    assert sorted(series["values"]) == list(range(20))
    assert sum_by(state.counters(), "statskit_sink_written") == 20
    assert sum_by(state.counters(), "statskit_sink_errors") >= 1
    sink.close(5)


# --------------------------------------------------------------------------- through the server

def make_client(tmp_path, influx, sinks):
    settings = load_settings(env={}, overrides={
        "sinks.enabled": sinks, "influxdb.api": "v1", "influxdb.url": influx.url,
        "influxdb.database": "analytics_db", "influxdb.flush_interval": 0.05,
        "server.data_dir": str(tmp_path), "auth.secret_key": ["k"]})
    app = create_app(settings)
    headers = {"Authorization": "Token " + TokenSigner(["k"]).mint("t", ["write", "read"])}
    return app, testing.TestClient(app, headers=headers)


def test_through_the_server_with_sqlite_and_influxdb(influxdb1, tmp_path):
    app, client = make_client(tmp_path, influxdb1, ["sqlite", "influxdb"])
    event_id = client.simulate_post("/log/event", json={"uid": "u7", "event": "login", "ms": 12}).json
    points = [{"measurement": "cpu", "tags": {"host": "h1"}, "fields": {"v": 1.5}},
              {"measurement": "cpu", "tags": {"host": "h2"}, "fields": {"v": 2.5}}]
    assert client.simulate_post("/log/event", json=points).json == "OK"
    app.statskit.pipeline.flush(10)
    [row] = influxdb1.points("analytics_db", "analytics")
    assert (row["event_id"], row["uid"], row["event"], row["ms"]) == (event_id, "u7", "login", 12)
    assert sorted((r["host"], r["v"]) for r in influxdb1.points("analytics_db", "cpu")) == [("h1", 1.5), ("h2", 2.5)]
    got = client.simulate_get(f"/log/event/{event_id}")  # answered by SQLite, the first reader
    assert got.status_code == 200 and got.json["ms"] == 12
    app.statskit.close(5)


def test_through_the_server_reading_back_from_influxdb(influxdb1, tmp_path):
    app, client = make_client(tmp_path, influxdb1, ["influxdb"])
    event_id = client.simulate_post("/log/event", json={"uid": "u7", "event": "login", "ms": 12, "ratio": 1.0}).json
    batch = client.simulate_post("/log/events", json=[{"uid": "u8", "event": "view", "n": i} for i in range(3)])
    assert batch.status_code == 200
    app.statskit.pipeline.flush(10)
    got = client.simulate_get(f"/log/event/{event_id.upper()}/")
    assert got.status_code == 200
    assert {k: got.json[k] for k in ("event_id", "uid", "event", "ms", "ratio")} == {
        "event_id": event_id, "uid": "u7", "event": "login", "ms": 12, "ratio": 1.0}
    listed = client.simulate_get("/log/events", params={"uid": "u8"}).json
    assert listed["count"] == 3 and sorted(e["n"] for e in listed["events"]) == [0, 1, 2]
    assert client.simulate_get("/log/event/entry_unknown").status_code == 404
    app.statskit.close(5)


def test_through_the_server_an_outage_answers_posts_and_loses_nothing(influxdb1, tmp_path):
    app, client = make_client(tmp_path, influxdb1, ["influxdb"])
    first = client.simulate_post("/log/event", json={"uid": "u1", "event": "before"}).json
    app.statskit.pipeline.flush(10)
    influxdb1.stop()
    # Posts are answered as usual (the sink only queues); reads that need InfluxDB say 503.
    during = [client.simulate_post("/log/events", json=[{"uid": f"u{i}", "event": "during"}] * 5) for i in range(20)]
    assert all(resp.status_code == 200 for resp in during)
    for path in (f"/log/event/{first}", "/log/events"):
        resp = client.simulate_get(path)
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json["error"] == "unavailable" and "influxdb" in resp.json["message"]
    influxdb1.start()
    app.statskit.pipeline.flush(30)
    ids = {first, *(i for resp in during for i in resp.json["ids"])}
    assert {row["event_id"] for row in influxdb1.points("analytics_db", "analytics")} == ids
    assert client.simulate_get(f"/log/event/{first}").json["event"] == "before"
    app.statskit.close(5)


def test_through_the_server_into_victoria_metrics_v2(victoria_metrics, tmp_path):
    settings = load_settings(env={}, overrides={
        "sinks.enabled": ["sqlite", "influxdb"], "influxdb.api": "v2", "influxdb.url": victoria_metrics.url,
        "influxdb.token": "t", "influxdb.org": "o", "influxdb.bucket": "b", "influxdb.flush_interval": 0.05,
        "server.data_dir": str(tmp_path), "auth.secret_key": ["k"]})
    app = create_app(settings)
    client = testing.TestClient(app, headers={"Authorization": "Token " + TokenSigner(["k"]).mint("t", ["write"])})
    resp = client.simulate_post("/log/events", json=[{"uid": "u1", "event": "buy", "amount": i, "time": T0 + i}
                                                     for i in range(3)])
    assert resp.status_code == 200 and resp.json["count"] == 3
    app.statskit.pipeline.flush(10)
    [series] = victoria_metrics.export('{__name__="analytics_amount"}')
    assert series["metric"]["uid"] == "u1" and series["metric"]["event"] == "buy"
    assert sorted(series["values"]) == [0, 1, 2] and sorted(series["timestamps"]) == [(T0 + i) * 1000 for i in range(3)]
    app.statskit.close(5)


def test_reads_before_the_database_exists_are_not_found_not_500(influxdb1, tmp_path):
    """No event was written yet, so InfluxDB has no database: that is "not there" (404, an
    empty list), not "InfluxDB query failed: not executed" as a 500."""
    app, client = make_client(tmp_path, influxdb1, ["influxdb"])
    resp = client.simulate_get("/log/event/order-1")
    assert resp.status_code == 404 and resp.json["error"] == "not_found"
    assert client.simulate_get("/log/event/entry_0123456789abcdef0123456789abcdef").status_code == 404
    listed = client.simulate_get("/log/events", params={"uid": "u1"})
    assert listed.status_code == 200 and listed.json["count"] == 0
    assert "analytics_db" not in influxdb1.databases()  # reading created nothing
    app.statskit.close(5)


class AuthInfluxDB1(InfluxDB1):
    """InfluxDB 1.6.7 with authentication on and no user: it refuses every query."""

    def prepare(self) -> None:
        super().prepare()
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace("[http]\n  enabled = true\n", "[http]\n  enabled = true\n"
                                                 "  auth-enabled = true\n"))


def test_any_other_influxdb_read_error_is_a_503_never_a_500(tmp_path):
    influx = start_real_server(lambda: AuthInfluxDB1(tmp_path / "influx-auth"))
    try:
        app, client = make_client(tmp_path, influx, ["influxdb"])
        for path in ("/log/event/order-1", "/log/events"):
            resp = client.simulate_get(path)
            assert resp.status_code == 503 and resp.json["error"] == "unavailable"
            assert "influxdb" in resp.json["message"] and resp.headers["retry-after"] == "1"
        app.statskit.close(1)
    finally:
        influx.close()
