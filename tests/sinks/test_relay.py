"""Sinks fed from the durable event log (statskit.sinks.relay): order, cursors, restarts,
outages, the backlog bound and outbox trimming, on a real SQLite log and a real InfluxDB."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any, List

import pytest

from statskit.errors import RetryableError
from statskit.events import Event, format_time, parse_items
from statskit.pipeline import Pipeline, build_pipeline
from statskit.sinks.influxdb import InfluxDBSink, V1Writer
from statskit.sinks.relay import BacklogMetrics, Relay
from statskit.sinks.sqlite import SQLiteSink
from statskit.sinks.stdout import StdoutSink
from statskit.state.memory import MemoryState
from statskit.state.sqlite import SQLiteDB
from support import make_settings

T0_NS = 1_795_341_600 * 10**9


class Collecting:
    """A follower that keeps what it was sent; ``down`` makes it fail like a backend outage."""

    name = "collect"
    relay_batch = 10
    relay_interval = 0.01

    def __init__(self) -> None:
        self.got: List[str] = []
        self.down = False

    def prepare(self, events: List[Event]) -> List[str]:
        return [e.id for e in events]

    def send(self, batch: List[str]) -> None:
        if self.down:
            raise RetryableError("down", retry_after=0.01)
        self.got.extend(batch)


def _log(tmp_path, **kwargs: Any) -> SQLiteSink:
    return SQLiteSink(SQLiteDB(str(tmp_path / "log.db")), **kwargs)


def _post(log: SQLiteSink, n: int, start: int = 0) -> List[str]:
    events = parse_items([{"uid": "u", "event": "e", "event_id": f"id{start + i}"} for i in range(n)])
    log.emit(events)
    return [e.id for e in events]


def test_a_follower_gets_every_event_in_log_order_and_its_cursor_moves(tmp_path):
    log, sink = _log(tmp_path), Collecting()
    relay = Relay(sink, log, MemoryState())
    ids = _post(log, 25)
    assert relay.drain(10) is True
    assert sink.got == ids
    assert log.cursor("collect") == log.last_seq() and relay.backlog() == 0


def test_a_new_follower_starts_at_the_end_of_the_log_not_at_its_history(tmp_path):
    log = _log(tmp_path)
    _post(log, 5)
    sink = Collecting()
    relay = Relay(sink, log, MemoryState())
    later = _post(log, 3, start=5)
    relay.drain(10)
    assert sink.got == later


def test_after_a_restart_a_follower_resumes_from_its_confirmed_cursor(tmp_path):
    log, first = _log(tmp_path), Collecting()
    relay = Relay(first, log, MemoryState())
    ids = _post(log, 30)
    relay.lock.take()
    relay._deliver_once(give_up_at=None)  # one batch confirmed, then the process "dies"
    confirmed = log.read_stored_after(0, 10)[-1][0]
    deadline = time.monotonic() + 10
    while log.cursor("collect") < confirmed and time.monotonic() < deadline:
        time.sleep(0.01)  # the cursor's commit runs on the relay's cursor thread, right after the send
    relay.lock.release()
    assert first.got == ids[:10]
    again = Collecting()  # a new process: same log file, same sink name
    Relay(again, _log(tmp_path), MemoryState()).drain(10)
    assert again.got == ids[10:]


def test_close_returns_after_the_relays_own_threads_are_done_with_the_database(tmp_path):
    # The server closes the database right after its relays: a cursor commit or a read ahead
    # still running on a relay thread then used a closed connection (a segfault in CI).
    import threading
    log, sink = _log(tmp_path), Collecting()
    relay = Relay(sink, log, MemoryState())
    relay.start()
    for round_ in range(5):
        _post(log, 25, start=round_ * 25)
        time.sleep(0.02)  # the relay thread sends, and commits cursors on its cursor thread
    assert relay.close(10) is True
    own = [t for t in threading.enumerate() if t.name.startswith("statskit-relay-collect")]
    assert own == []
    assert log.cursor("collect") == log.last_seq() and len(sink.got) == 125
    log.db.close()


def test_an_outage_holds_the_cursor_and_loses_nothing(tmp_path):
    log, sink, state = _log(tmp_path), Collecting(), MemoryState()
    relay = Relay(sink, log, state)
    sink.down = True
    ids = _post(log, 15)
    assert relay.drain(0.2) is False  # down: nothing confirmed in that time
    assert sink.got == [] and relay.backlog() == 15
    sink.down = False
    assert relay.drain(10) is True
    assert sink.got == ids


def test_a_sink_too_far_behind_skips_the_oldest_counted(tmp_path):
    log, sink, state = _log(tmp_path), Collecting(), MemoryState()
    relay = Relay(sink, log, state, max_backlog=8)
    ids = _post(log, 20)
    relay.drain(10)
    assert sink.got == ids[-8:]
    assert state.counters("statskit_sink_dropped") == [
        ("statskit_sink_dropped", (("reason", "backlog_full"), ("sink", "collect")), 12.0)]


def test_a_batch_a_sink_cannot_take_for_a_bug_is_given_up_counted_not_retried_forever(tmp_path):
    class Broken(Collecting):
        def send(self, batch: List[str]) -> None:
            raise ValueError("bug")

    log, state = _log(tmp_path), MemoryState()
    relay = Relay(Broken(), log, state)
    _post(log, 3)
    assert relay.drain(5) is True
    assert relay.backlog() == 0
    assert state.counters("statskit_sink_dropped")[0][2] == 3.0


def test_one_process_runs_a_relay_and_another_takes_over_when_it_stops(tmp_path):
    log = _log(tmp_path)
    a, b = Collecting(), Collecting()
    relay_a, relay_b = Relay(a, log, MemoryState()), Relay(b, _log(tmp_path), MemoryState())
    assert relay_a.lock.take() and not relay_b.lock.take()
    ids = _post(log, 4)
    assert relay_b.drain(1) is False and b.got == []
    relay_a.close(5)  # delivers what is there, then lets go
    assert a.got == ids
    more = _post(log, 2, start=4)
    assert relay_b.drain(5) is True and b.got == more


def test_outbox_keeps_only_what_a_follower_has_not_confirmed_and_never_reuses_numbers(tmp_path):
    log, sink = _log(tmp_path, outbox=True), Collecting()
    relay = Relay(sink, log, MemoryState())
    _post(log, 12)
    relay.drain(10)
    rows = log.db.connection().execute("SELECT count(*), max(seq) FROM events").fetchone()
    assert rows == (1, 12)  # the newest row stays: seq is max + 1, an empty table would start again at 1
    later = _post(log, 2, start=12)
    relay.drain(10)
    assert sink.got[-2:] == later and log.last_seq() == 14


def test_retention_never_deletes_events_a_follower_has_not_confirmed(tmp_path):
    log, sink = _log(tmp_path, retention_days=1), Collecting()
    relay = Relay(sink, log, MemoryState())
    sink.down = True
    old = parse_items([{"uid": "u", "event": "e", "time": 1_600_000_000 + i} for i in range(5)])
    log.emit(old)
    log._next_purge = 0
    _post(log, 1, start=100)  # its commit purges what is older than a day, except the unconfirmed
    assert log.count() == 6
    sink.down = False
    relay.drain(10)
    log._next_purge = 0
    _post(log, 1, start=101)
    assert log.count() == 2


def test_backlog_gauge_in_metrics(tmp_path):
    log, sink = _log(tmp_path), Collecting()
    relay = Relay(sink, log, MemoryState())
    _post(log, 7)
    family = next(BacklogMetrics([relay]).collect(None))
    assert [(s.labels, s.value) for s in family.samples] == [({"sink": "collect"}, 7)]


def test_the_pipeline_feeds_followers_from_the_log_and_not_from_the_request(tmp_path):
    r, w = os.pipe()
    state = MemoryState()
    log, stdout = _log(tmp_path), StdoutSink(fd=w, flush_interval=0.01)
    pipeline = Pipeline([log, stdout], state)
    assert [relay.sink for relay in pipeline.relays] == [stdout] and pipeline.others == []
    events = parse_items([{"uid": "u1", "event": "a"}, {"uid": "u1", "event": "a"}])
    pipeline.ingest(events)
    assert len(stdout.writer) == 0  # not queued in the request
    pipeline.flush(10)
    os.close(w)
    lines = [json.loads(line) for line in os.read(r, 1 << 16).decode().splitlines()]
    os.close(r)
    assert [line["event_id"] for line in lines] == [e.id for e in events]
    assert events[1].time_ns == events[0].time_ns + 1  # one series, one time: 1 ns apart before any sink
    pipeline.close(5)


def test_without_the_sqlite_sink_an_outbox_is_the_log(tmp_path):
    settings = make_settings(tmp_path, sinks__enabled=["stdout"])
    pipeline = build_pipeline(settings, MemoryState())
    assert isinstance(pipeline.durable[0], SQLiteSink) and pipeline.durable[0].outbox
    assert pipeline.readers == []  # GET /log/events does not read an outbox
    pipeline.close(5)


def test_influxdb_fed_from_the_log_stores_each_event_once_even_when_a_batch_is_sent_again(influxdb1, tmp_path):
    log, state = _log(tmp_path), MemoryState()
    sink = InfluxDBSink(V1Writer(influxdb1.url, "relay"), state, flush_interval=0.05)
    relay = Relay(sink, log, state)
    events = parse_items([{"uid": f"u{i % 3}", "event": "view", "n": i} for i in range(50)])
    Pipeline([log], state).ingest(events)  # the ingest makes times distinct per series
    assert relay.drain(20) is True
    with sqlite3.connect(str(tmp_path / "log.db")) as conn:
        conn.execute("UPDATE sink_cursors SET seq = 0 WHERE sink = 'influxdb'")  # as if unconfirmed at a crash
    assert relay.drain(20) is True  # the same 50 points again
    points = influxdb1.points("relay", "analytics")
    assert len(points) == 50 and sorted(p["n"] for p in points) == list(range(50))
    sink.close(1)


def test_influxdb_fed_from_the_log_reads_tricky_names_and_values_back_as_sent(influxdb1, tmp_path):
    """The relay formats the log's stored rows itself (no Event in between): escaping, types,
    extra tags and points come out as the events went in."""
    log, state = _log(tmp_path, outbox=True), MemoryState()
    sink = InfluxDBSink(V1Writer(influxdb1.url, "tricky"), state, flush_interval=0.05)
    relay = Relay(sink, log, state)
    tags = {"host name": "a,b=c d", "quote": 'say "hi"', "slash": "a\\b", "bs_comma": "a\\,b"}
    fields = {"say": 'he said "hi" \\o/', "multi": "l1\nl2", "lone": "\\", "n": 3, "f": 2.0, "ok": False}
    event = Event("e1", T0_NS, "page views,x=1", {**tags, "uid": "u 1", "event": "sign,up"}, fields,
                  uid="u 1", event="sign,up")
    point = Event("e2", T0_NS + 1, "cpu load", {"host": "a b"}, {"load": 0.25, "n": 2})
    log.emit([event, point])
    assert relay.drain(20) is True
    [row] = influxdb1.points("tricky", "page views,x=1")
    assert {k: row[k] for k in tags} == tags and {k: row[k] for k in fields} == fields
    assert (row["uid"], row["event"], row["event_id"], row["time"]) == ("u 1", "sign,up", "e1", T0_NS)
    types = influxdb1.query('SHOW FIELD KEYS FROM "page views,x=1"', db="tricky")["results"][0]["series"][0]["values"]
    assert {k: t for k, t in types if k in ("f", "n", "ok")} == {"f": "float", "n": "integer", "ok": "boolean"}
    [cpu] = influxdb1.points("tricky", "cpu load")
    assert (cpu["host"], cpu["load"], cpu["n"], cpu["event_id"], cpu["time"]) == ("a b", 0.25, 2, "e2", T0_NS + 1)
    sink.close(1)


def test_two_workers_stamping_the_same_nanosecond_store_two_points_in_influxdb(influxdb1, tmp_path):
    """Receive times are made unique on the host in the log's write transaction: two requests on
    two workers that read the same clock value for the same series stay two events (the crash
    test lost one such event in CI before). A time the client sent is kept as sent."""
    path = str(tmp_path / "log.db")
    workers = [SQLiteSink(SQLiteDB(path)), SQLiteSink(SQLiteDB(path))]
    state = MemoryState()
    sink = InfluxDBSink(V1Writer(influxdb1.url, "clock"), state, flush_interval=0.05)
    relay = Relay(sink, workers[0], state)
    same_ns = parse_items([{"uid": "u", "event": "view"}])[0].time_ns // 1000 * 1000 + 998  # moves cross a microsecond
    for n, worker in enumerate(workers * 2):
        events = parse_items([{"uid": "u", "event": "view", "n": n}])
        events[0].time_ns = same_ns  # what the real clock does now and then
        Pipeline([worker], state).ingest(events)
    sent = parse_items([{"uid": "u", "event": "view", "n": 9, "time": "2026-01-02T03:04:05.000000006Z"}])
    Pipeline([workers[1]], state).ingest(sent)
    assert relay.drain(20) is True
    points = influxdb1.points("clock", "analytics")
    assert sorted(p["n"] for p in points) == [0, 1, 2, 3, 9]
    assert len({p["time"] for p in points}) == 5
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT time_ns FROM events WHERE id = ?", (sent[0].id,)).fetchone()[0] == sent[0].time_ns
        stored = {json.loads(data)["n"]: (t, json.loads(data)["time"]) for t, data in conn.execute(
            "SELECT time_ns, data FROM events")}
    assert stored[0][0] == same_ns and stored[3][0] == same_ns + 3  # in arrival order
    assert all(stamp == format_time(t) for t, stamp in stored.values())  # GET /log/event says the same
    sink.close(1)


@pytest.mark.parametrize("ack", ["fast"])
def test_ack_fast_commits_in_the_background_and_flush_makes_it_visible(tmp_path, ack):
    log = _log(tmp_path, ack=ack)
    _post(log, 5)
    log.flush(5)
    assert log.count() == 5


def test_a_sink_that_stores_its_position_with_its_data_gets_each_event_exactly_once(tmp_path):
    from statskit.kpi.events import EventInbox

    log, state = _log(tmp_path), MemoryState()
    inbox = EventInbox(SQLiteDB(str(tmp_path / "kpi.db")))
    relay = Relay(inbox, log, state)
    _post(log, 12)
    relay.drain(10)
    with sqlite3.connect(str(tmp_path / "log.db")) as conn:  # a crash after the inbox's commit, before the log's
        conn.execute("UPDATE sink_cursors SET seq = 0 WHERE sink = 'kpi'")
    _post(log, 3, start=12)
    relay.drain(10)
    count = inbox.db.connection().execute("SELECT count(*) FROM event_inbox").fetchone()[0]
    assert count == 15 and inbox.position() == log.last_seq()
