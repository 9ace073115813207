"""The shipped telemetry dashboard: every panel's SQL, with Grafana's PostgreSQL macros expanded
as Grafana expands them, run against a real PostgreSQL store filled by the ingestion path."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from statskit.state.memory import MemoryState
from statskit.telemetry import Ingestor, TelemetryWriter
from statskit.telemetry.store_postgres import PostgresTelemetryStore
from pg_server import postgresql  # noqa: F401  (fixture)

pytestmark = pytest.mark.realserver
DASHBOARD = Path(__file__).resolve().parents[2] / "statskit_server" / "dashboards" / "grafana-telemetry.json"


def expand(sql: str, start: datetime, end: datetime, nodes) -> str:
    """Grafana's PostgreSQL macros and a multi-value variable, as its data source expands them."""
    when = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN '{when(start)}' AND '{when(end)}'", sql)
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*'1m'\)",
                 lambda m: f'floor(extract(epoch from {m.group(1)})/60)*60 AS "time"', sql)
    return sql.replace("$node", ",".join(f"'{n}'" for n in nodes))


def test_every_panel_query_on_a_real_store(postgresql):
    url = postgresql.new_database("dashboard")
    store, state = PostgresTelemetryStore(url), MemoryState()
    writer = TelemetryWriter(store, state)
    ingest = Ingestor(store, writer, state)
    now = datetime.now(timezone.utc)
    stamp = lambda s: (now - timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    conns = []
    for peer, name in (("QmDashA", "alice"), ("QmDashB", "bob")):
        conn = ingest.open("10.0.0.1:1", audit=False)
        conn.frame(json.dumps({"msg": "system.connected", "ts": stamp(300), "network_id": peer, "name": name}))
        for h in range(3):
            conn.frame(json.dumps({"msg": "block.import", "ts": stamp(200 - h), "height": 10 + h}))
            conn.frame(json.dumps({"msg": "notify.finalized", "ts": stamp(200 - h), "height": str(8 + h)}))
        conns.append(conn)
    assert writer.flush(10.0)
    conns[1].close()  # bob went offline
    dashboard = json.loads(DASHBOARD.read_text())
    results = {}
    with psycopg.connect(url) as db:
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                sql = expand(target["rawSql"], now - timedelta(hours=1), now, ["QmDashA", "QmDashB"])
                results[panel["title"]] = db.execute(sql).fetchall()
        variable = dashboard["templating"]["list"][0]["query"]
        assert [r[0] for r in db.execute(variable).fetchall()] == ["QmDashA", "QmDashB"]
    assert results["Nodes online"] == [(1,)]
    per_type = {}
    for _, msg, count in results["Messages per type"]:
        per_type[msg] = per_type.get(msg, 0) + count
    assert per_type == {"system.connected": 2, "block.import": 6, "notify.finalized": 6}
    imports = results["Block import height"]
    assert sorted((name, value) for _, name, value in imports) == sorted(
        [(n, h) for n in ("alice", "bob") for h in (10, 11, 12)])
    assert all(isinstance(t, datetime) for t, _, _ in imports)
    assert sorted(v for _, n, v in results["Finalized height"] if n == "alice") == [8, 9, 10]
    conns[0].close()
    writer.close(5.0)
    store.close()
