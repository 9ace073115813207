"""The PostgreSQL telemetry store against a real PostgreSQL, with the original's schema."""
from __future__ import annotations

import itertools

import psycopg
import pytest

from statskit.config import load_settings
from statskit.state.memory import MemoryState
from statskit.telemetry import Ingestor, Row, TelemetryWriter, open_store
from statskit.telemetry.parsing import parse_frame
from statskit.telemetry.purge import purge_once
from statskit.telemetry.store_postgres import PostgresTelemetryStore
from pg_server import postgresql  # noqa: F401  (fixture)

pytestmark = pytest.mark.realserver
_names = itertools.count()


@pytest.fixture
def url(postgresql):
    return postgresql.new_database(f"telemetry_{next(_names)}")


def test_original_schema_and_sql_of_existing_dashboards(url):
    store = PostgresTelemetryStore(url)
    state = MemoryState()
    writer = TelemetryWriter(store, state)
    ingest = Ingestor(store, writer, state)
    conn = ingest.open("10.0.0.7:30333", audit=False)
    conn.frame(b'{"msg":"system.connected","ts":"2021-03-01T10:00:00+01:00","network_id":"QmPg","name":"pg",'
               b'"chain":"dev","authority":true,"startup_time":"1614592800000"}')
    conn.frame(b'{"id":1,"ts":"2021-03-01T09:00:01Z","payload":{"msg":"block.import","height":42,"nul":"a\\u0000b"}}')
    assert writer.close(10.0)
    with psycopg.connect(url) as db:
        # the original's queries: logs->>'msg', jsonb fields, created_at as a naive UTC timestamp
        rows = db.execute("SELECT l.created_at, logs->>'msg', (logs->>'height')::int FROM substrate_logs l "
                          "JOIN peer_connections pc ON pc.id = l.peer_connection_id WHERE pc.peer_id = 'QmPg' "
                          "ORDER BY l.created_at").fetchall()
        assert [(r[0].isoformat(), r[1], r[2]) for r in rows] == [
            ("2021-03-01T09:00:00", "system.connected", None), ("2021-03-01T09:00:01", "block.import", 42)]
        pc = db.execute("SELECT ip_addr, audit, name, chain, authority, startup_time FROM peer_connections").fetchone()
        assert pc == ("10.0.0.7:30333", False, "pg", "dev", True, 1614592800000)
        kinds = dict(db.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'substrate_logs'").fetchall())
        assert kinds["logs"] == "jsonb" and kinds["created_at"] == "timestamp without time zone"
    conn.close()
    store.close()


def test_tetcore_table_and_two_hosts_on_one_database(url):
    settings = load_settings(env={}, overrides={"telemetry.database_url": url, "telemetry.logs_table": "tetcore_logs"})
    host_a, host_b = open_store(settings), open_store(settings)  # as two statskit hosts would
    try:
        for store, peer in ((host_a, "QmA"), (host_b, "QmB")):
            cid = store.open_connection(peer, audit=False)
            store.insert_messages([Row(cid, False, parse_frame('{"msg":"m","ts":"2020-01-01T00:00:00Z"}'))])
        assert host_a.count_messages() == host_b.count_messages() == 2
        assert host_a.messages() == host_b.messages()
        # one purge round for both hosts
        assert [purge_once(s, 1, 600) for s in (host_a, host_b)] == [2, None]
        assert host_b.count_messages() == 0
        with psycopg.connect(url) as db:
            assert db.execute("SELECT to_regclass('tetcore_logs') IS NOT NULL").fetchone()[0]
    finally:
        host_a.close()
        host_b.close()


def test_purge_keeps_audit_and_open_connections(url):
    store = PostgresTelemetryStore(url)
    old = parse_frame('{"msg":"m","ts":"2020-01-01T00:00:00Z"}')
    expiring, audit, open_silent = (store.open_connection("e", False), store.open_connection("a", True),
                                    store.open_connection("s", False))
    store.insert_messages([Row(expiring, False, old)] * 7 + [Row(audit, True, old)] * 3)
    store.close_connection(expiring)
    assert store.purge("2100-01-01T00:00:00", batch=2) == 7
    assert store.count_messages(audit=True) == 3 and store.count_messages() == 3
    assert {c["id"] for c in store.connections()} == {audit, open_silent}
    store.close()


def test_purge_keeps_the_row_of_a_connection_closed_after_the_cutoff(url):
    store = PostgresTelemetryStore(url)
    late = store.open_connection("l", False)
    store.close_connection(late)
    assert store.purge("2021-01-01T00:00:00") == 0
    store.insert_messages([Row(late, False, parse_frame('{"msg":"m","ts":"2999-01-01T00:00:00Z"}'))])
    assert [c["id"] for c in store.connections()] == [late]
    assert [m["ip_addr"] for m in store.messages()] == ["l"]
    store.close()


def test_a_row_postgresql_refuses_is_skipped_not_blocking(url):
    store = PostgresTelemetryStore(url)
    cid = store.open_connection("x", False)
    good = parse_frame('{"msg":"ok","ts":"2020-01-01T00:00:00Z"}')
    # The parser lets nothing through that PostgreSQL refuses (as far as we know): forge a row
    # it refuses, to show that such a row is skipped instead of blocking the writer for ever.
    bad = parse_frame('{"msg":"forged","ts":"2020-01-01T00:00:00Z"}')
    bad.created_at = "2020-02-30T00:00:00.000000"
    assert store.insert_messages([Row(cid, False, good), Row(cid, False, bad), Row(cid, False, good)]) == 1
    assert store.count_messages() == 2
    store.close()


def test_listener_presence_closes_rows_of_dead_listeners_only(url):
    from presence_checks import check_presence

    store = PostgresTelemetryStore(url)
    try:
        check_presence(store)
    finally:
        store.close()
