"""The SQLite telemetry store, the batched writer and the purge, in process."""
from __future__ import annotations

import threading
import time

import pytest

from statskit.state.memory import MemoryState
from statskit.telemetry import Ingestor, Row, TelemetryWriter
from statskit.telemetry.metrics import BUFFER_DROPS, STORED, TelemetryMetrics
from statskit.telemetry.parsing import parse_frame
from statskit.telemetry.purge import purge_once
from statskit.telemetry.store_sqlite import SQLiteTelemetryStore
from statskit.metrics import Scrape, render
from statskit.state import sum_by

OLD = '{"msg":"system.interval","ts":"2020-01-01T00:00:00Z","peers":%d}'
NEW = '{"msg":"system.interval","ts":"2999-01-01T00:00:00Z","peers":%d}'


@pytest.fixture
def store(tmp_path):
    s = SQLiteTelemetryStore.in_data_dir(str(tmp_path))
    yield s
    s.close()


def ingestor(store, state, **kw):
    writer = TelemetryWriter(store, state, **kw)
    return Ingestor(store, writer, state), writer


def test_connection_row_gets_the_peer_of_system_connected(store):
    state = MemoryState()
    ingest, writer = ingestor(store, state)
    conn = ingest.open("10.1.2.3:40000", audit=True)
    assert conn.frame(b'{"msg":"system.interval","ts":"2021-01-01T00:00:00Z"}')
    assert conn.frame(b'{"msg":"system.connected","ts":"2021-01-01T00:00:01Z","network_id":"QmN","name":"n1",'
                      b'"chain":"dev","version":"1.0","authority":false,"startup_time":"42","implementation":"x"}')
    assert conn.peer_id == "QmN"
    # later messages do not change the peer id (the original looked only while it was unknown)
    assert conn.frame(b'{"msg":"system.network_state","ts":"2021-01-01T00:00:02Z","state":{"peerId":"QmOther"}}')
    assert writer.flush(5.0)
    row = store.connections()[0]
    assert (row["ip_addr"], row["peer_id"], row["audit"], row["name"], row["chain"], row["version"],
            row["authority"], row["startup_time"], row["implementation"]) == \
        ("10.1.2.3:40000", "QmN", 1, "n1", "dev", "1.0", 0, 42, "x")
    assert row["closed_at"] is None
    conn.close()
    assert store.connections()[0]["closed_at"] is not None
    assert [m["msg"] for m in store.messages()] == ["system.interval", "system.connected", "system.network_state"]
    assert {m["peer_id"] for m in store.messages()} == {"QmN"}


def test_bad_frames_are_counted_and_stored_frames_are_not_lost(store):
    state = MemoryState()
    ingest, writer = ingestor(store, state)
    conn = ingest.open("1.1.1.1:1", audit=False)
    assert not conn.frame(b"{oops")
    assert not conn.frame(b'{"msg":"no ts"}')
    assert conn.frame(OLD % 1)
    writer.close(5.0)
    conn.count()  # what every 64 frames and every heartbeat do
    rejected = {dict(labels)["reason"]: v for name, labels, v in state.counters() if name.endswith("rejected")}
    assert rejected == {"invalid_json": 1.0, "no_ts": 1.0}
    assert store.count_messages() == 1 and sum_by(state.counters(), STORED) == 1
    body, _ = render([TelemetryMetrics(state)], Scrape(""))
    assert b"substrate_message_count 2.0" in body  # valid JSON, as the original counted
    assert b"tetcore_message_count 2.0" in body
    assert b"current_substrate_connections 1.0" in body


def test_batch_size_flushes_before_the_latency(store):
    state = MemoryState()
    ingest, writer = ingestor(store, state, batch_size=10, max_latency=3600)
    conn = ingest.open("1.1.1.1:1", audit=False)
    for i in range(10):
        conn.frame(OLD % i)
    deadline = time.monotonic() + 10
    while store.count_messages() < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.count_messages() == 10  # a full batch went without waiting an hour
    writer.close(1.0)


class Flaky:
    """A store whose first writes fail (as a locked or unreachable database would)."""

    def __init__(self, store, failures):
        self.store, self.failures, self.calls = store, failures, 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def insert_messages(self, rows):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("database is down")
        self.store.insert_messages(rows)


def test_a_failed_write_is_retried_not_dropped(store):
    state = MemoryState()
    flaky = Flaky(store, failures=3)
    writer = TelemetryWriter(flaky, state, batch_size=100, max_latency=0.01)
    writer.worker.backoff = 0.01
    writer.submit(Row(store.open_connection("x", False), False, parse_frame(OLD % 1)))
    assert writer.close(10.0)
    assert flaky.calls == 4 and store.count_messages() == 1
    assert sum_by(state.counters(), BUFFER_DROPS) == 0


def test_a_full_buffer_drops_and_counts(store):
    state = MemoryState()
    gate = threading.Event()

    class Slow(Flaky):
        def insert_messages(self, rows):
            gate.wait(10)
            self.store.insert_messages(rows)

    writer = TelemetryWriter(Slow(store, 0), state, batch_size=1, max_latency=0.0, max_buffer=2)
    cid = store.open_connection("x", False)
    results = [writer.submit(Row(cid, False, parse_frame(OLD % i))) for i in range(10)]
    gate.set()
    writer.close(10.0)
    assert results.count(False) >= 1
    assert store.count_messages() == results.count(True)
    assert sum_by(state.counters(), BUFFER_DROPS) == results.count(False)


def test_purge_removes_expired_rows_only_of_the_expiring_route(store):
    state = MemoryState()
    ingest, writer = ingestor(store, state)
    expiring, audit, fresh = (ingest.open("e:1", False), ingest.open("a:1", True), ingest.open("f:1", False))
    for i in range(7):
        expiring.frame(OLD % i)
        audit.frame(OLD % i)
    fresh.frame(NEW % 1)
    writer.flush(5.0)
    expiring.close()
    silent_open = ingest.open("s:1", False)  # open, no message yet: the original deleted this row
    assert store.purge("2100-01-01T00:00:00.000000", batch=3) == 7
    assert store.count_messages(audit=True) == 7 and store.count_messages(audit=False) == 1
    ids = {row["id"] for row in store.connections()}
    assert expiring.id not in ids  # closed and empty: gone
    assert {audit.id, fresh.id, silent_open.id} <= ids
    writer.close(1.0)


def test_a_connection_that_closed_after_the_cutoff_keeps_its_row_for_its_last_messages(store):
    # A node sends and hangs up; its last messages are still in the writer's buffer when a
    # purge runs. The row must still be there when they are committed, or they belong to no node.
    state = MemoryState()
    ingest, writer = ingestor(store, state)
    conn = ingest.open("10.0.0.9:1", False)
    conn.frame(b'{"msg":"system.connected","ts":"2999-01-01T00:00:00Z","network_id":"QmLate"}')
    conn.close()
    assert store.purge("2021-01-01T00:00:00.000000") == 0  # closed after the cutoff: kept
    assert [c["id"] for c in store.connections()] == [conn.id]
    assert writer.flush(5.0)
    assert [m["peer_id"] for m in store.messages()] == ["QmLate"]
    writer.close(1.0)


def test_one_purge_round_per_interval_whatever_the_callers(store, tmp_path):
    other = SQLiteTelemetryStore.in_data_dir(str(tmp_path))  # another worker on the same file
    try:
        cid = store.open_connection("e:1", False)
        store.insert_messages([Row(cid, False, parse_frame(OLD % 1))])
        results = [purge_once(s, expiry_hours=1, interval=600) for s in (store, other, store, other)]
        assert results == [1, None, None, None]
    finally:
        other.close()


def test_a_store_down_when_the_peer_is_learnt_is_retried_with_a_later_message(store):
    state = MemoryState()
    ingest, writer = ingestor(store, state)
    conn = ingest.open("x:1", audit=False)
    real = store.update_connection
    store.update_connection = lambda *a: (_ for _ in ()).throw(RuntimeError("down"))
    hello = b'{"msg":"system.connected","ts":"2021-01-01T00:00:00Z","network_id":"QmLate"}'
    assert conn.frame(hello)  # the message is kept even though the peer could not be recorded
    assert conn.peer_id is None
    store.update_connection = real
    assert conn.frame(hello)
    writer.close(5.0)
    assert conn.peer_id == "QmLate" and store.connections()[0]["peer_id"] == "QmLate"
    assert store.count_messages() == 2


def test_a_purge_gives_the_space_back(store):
    cid = store.open_connection("e:1", False)
    big = parse_frame('{"msg":"m","ts":"2020-01-01T00:00:00Z","pad":"%s"}' % ("x" * 500))
    for _ in range(10):
        store.insert_messages([Row(cid, False, big)] * 1000)
    conn = store.db.connection()
    before = conn.execute("PRAGMA page_count").fetchone()[0]
    assert store.purge("2021-01-01T00:00:00.000000") == 10000
    after = conn.execute("PRAGMA page_count").fetchone()[0]
    assert after < before / 5  # not just free pages inside the file
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_listener_presence_closes_rows_of_dead_listeners_only(store):
    from presence_checks import check_presence

    check_presence(store)
