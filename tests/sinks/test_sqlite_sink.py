"""The embedded event store: an acknowledged event is committed, and readable from any worker.

Two apps on one data directory are two gunicorn workers of one host (one SQLite file); the
real two-worker case is in tests/server/test_e2e_server.py.
"""
from __future__ import annotations

import sqlite3

import pytest
from falcon import testing

from statskit.config import load_settings
from statskit.events import parse_items
from statskit.pipeline import Pipeline
from statskit.sinks.sqlite import SQLiteSink
from statskit.state.memory import MemoryState
from statskit.state.sqlite import SQLiteDB, database_path
from statskit.tokens import TokenSigner
from statskit_server import create_app

SECRET = "sqlite-sink-secret"
HEADERS = {"Authorization": "Token " + TokenSigner([SECRET]).mint("t", ["write", "read"])}


@pytest.fixture
def two_workers(tmp_path):
    settings = load_settings(env={}, overrides={
        "server.data_dir": str(tmp_path), "auth.secret_key": [SECRET], "sinks.enabled": ["sqlite"]})
    apps = [create_app(settings), create_app(settings)]
    yield [testing.TestClient(app, headers=HEADERS) for app in apps]
    for app in apps:
        app.statskit.close(2.0)


def test_an_acknowledged_event_is_readable_at_once_from_another_worker(two_workers, tmp_path):
    first, second = two_workers
    own_id = "order-7f3a"  # a client-supplied id: nothing in it says how fresh it is
    assert first.simulate_post("/log/event", json={"uid": "u1", "event": "pay", "event_id": own_id}).json == own_id
    got = second.simulate_get(f"/log/event/{own_id}")
    assert got.status_code == 200 and got.json["event"] == "pay"
    generated = first.simulate_post("/log/event", json={"uid": "u1", "event": "view"}).json
    assert second.simulate_get(f"/log/event/{generated}").status_code == 200
    ids = first.simulate_post("/log/events", json=[{"uid": "u2", "event": "batch"}] * 3).json["ids"]
    assert second.simulate_get("/log/events", params={"event": "batch"}).json["count"] == 3
    # Committed, not only queued: a connection of its own sees every acknowledged row.
    with sqlite3.connect(database_path(str(tmp_path))) as conn:
        rows = {r[0] for r in conn.execute("SELECT id FROM events")}
    assert rows == {own_id, generated, *ids}


class Collect:
    name = "collect"

    def __init__(self):
        self.events = []

    def emit(self, events):
        self.events.extend(events)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


def test_a_store_that_cannot_commit_fails_the_ingest_and_feeds_no_other_sink(tmp_path):
    path = database_path(str(tmp_path))
    sink = SQLiteSink(SQLiteDB(path, busy_timeout_ms=50))
    other = Collect()
    pipeline = Pipeline([sink, other], MemoryState())
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            pipeline.ingest(parse_items([{"uid": "u", "event": "lost?"}]))
        assert other.events == []  # the client is told to retry: nothing half-delivered
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    pipeline.ingest(parse_items([{"uid": "u", "event": "kept"}]))
    assert [e.event for e in other.events] == ["kept"] and sink.count() == 1
    pipeline.close(1.0)


def test_a_clock_far_behind_the_logs_last_receive_time_is_followed_again(tmp_path, caplog):
    """Receive times go on 1 ns past the host's last one while the clock repeats itself; after a
    big step back (a VM resumed, NTP) the log would otherwise stamp the future for days."""
    import time

    sink = SQLiteSink(SQLiteDB(database_path(str(tmp_path))))
    ahead = time.time_ns() + 3600 * 10**9
    with sink.db.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO log_clock (one, time_ns) VALUES (0, ?)", (ahead,))
    with caplog.at_level("WARNING"):
        [event] = parse_items([{"uid": "u", "event": "e"}])
        sink.emit([event])
    assert abs(event.time_ns - time.time_ns()) < 60 * 10**9
    assert any("clock" in r.getMessage() for r in caplog.records)
    [near] = parse_items([{"uid": "u", "event": "e"}])
    near.time_ns = event.time_ns  # the same nanosecond again: moved on, as before
    sink.emit([near])
    assert near.time_ns == event.time_ns + 1
