"""Durable acknowledgement (issue 15): group commit that returns after its commit, and a store
that cannot write refusing with 507 (nothing acknowledged that is not stored)."""
from __future__ import annotations

import sqlite3
import time

import pytest
from falcon import testing

from statskit.config import load_settings
from statskit.state.sqlite import SQLiteDB
from statskit.state.sqlite_writer import CommitBeforeReturn
from statskit.tokens import TokenSigner
from statskit_server import create_app
from support import run_threads

SECRET = "durable-commit-secret"
HEADERS = {"Authorization": "Token " + TokenSigner([SECRET]).mint("t", ["write", "read"])}


def test_concurrent_callers_share_transactions_and_each_returns_after_its_rows_are_committed(tmp_path):
    path = str(tmp_path / "g.db")
    db = SQLiteDB(path)
    db.ensure_schema("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
    def write(conn, rows):
        conn.executemany("INSERT INTO t VALUES (?)", rows)
        time.sleep(0.005)  # a slow disk: callers that come meanwhile must share the next commit

    group = CommitBeforeReturn(db, write, wait=0.002)
    missing = []

    def caller(base: int) -> None:
        own = sqlite3.connect(path)  # another connection: sees only what is committed
        for i in range(50):
            group.commit([(base + i,)])
            if own.execute("SELECT count(*) FROM t WHERE x = ?", (base + i,)).fetchone()[0] != 1:
                missing.append(base + i)
        own.close()

    run_threads(caller, [(n * 1000,) for n in range(8)])
    assert missing == []
    assert db.connection().execute("SELECT count(*) FROM t").fetchone()[0] == 400
    assert group.rows == 400 and group.groups < 400  # some requests shared a commit


def test_a_failed_group_commit_fails_every_caller_in_it(tmp_path):
    db = SQLiteDB(str(tmp_path / "g.db"))
    db.ensure_schema("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
    group = CommitBeforeReturn(db, lambda conn, rows: conn.executemany("INSERT INTO t VALUES (?)", rows))
    group.commit([(1,)])
    with pytest.raises(sqlite3.IntegrityError):
        group.commit([(2,), (1,)])  # the duplicate fails the whole transaction
    assert [r[0] for r in db.connection().execute("SELECT x FROM t")] == [1]
    group.commit([(2,)])  # and the next group works
    assert db.connection().execute("SELECT count(*) FROM t").fetchone()[0] == 2


def test_a_full_store_refuses_writes_with_507_keeps_reads_and_recovers(tmp_path, caplog):
    settings = load_settings(env={}, overrides={
        "server.data_dir": str(tmp_path), "auth.secret_key": [SECRET], "sinks.enabled": ["sqlite", "prometheus"]})
    app = create_app(settings)
    client = testing.TestClient(app, headers=HEADERS)
    try:
        kept = client.simulate_post("/log/event", json={"uid": "u", "event": "before"}).json
        # falcon.testing runs requests in this thread, so this is the connection they write with.
        conn = app.statskit.pipeline.durable[0].db.connection()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
        refused = 0
        for i in range(200):
            resp = client.simulate_post("/log/event", json={"uid": "u", "event": "full", "pad": "x" * 2000})
            if resp.status_code == 507:
                refused += 1
                assert resp.headers["Retry-After"] == "5"
                assert resp.json["error"] == "insufficient_storage"
            else:
                assert resp.status_code == 200
                assert client.simulate_get(f"/log/event/{resp.json}").status_code == 200  # 2xx = stored
        assert refused > 0
        assert any("cannot write" in r.getMessage() for r in caplog.records)
        # Reads keep working while full.
        assert client.simulate_get(f"/log/event/{kept}").json["event"] == "before"
        assert client.simulate_get("/log/events", params={"event": "before"}).json["count"] == 1
        metrics = client.simulate_get("/metrics")
        assert metrics.status_code == 200
        conn.execute("PRAGMA max_page_count = 1073741823")  # space returns
        again = client.simulate_post("/log/event", json={"uid": "u", "event": "after"})
        assert again.status_code == 200
        assert client.simulate_get(f"/log/event/{again.json}").status_code == 200
        text = client.simulate_get("/metrics").text
        assert f'statskit_writes_refused_total{{reason="storage_full",sink="sqlite"}} {float(refused)}' in text
    finally:
        app.statskit.close(2.0)
