"""KPIs over statskit's own event stream: events posted to /log/event(s) become D/W/M/Y KPIs."""
from __future__ import annotations

import time
from datetime import datetime

from statskit.config import load_settings
from statskit.tokens import TokenSigner

SECRET = "kpi-events-secret"


def wait_for_value(client, kpi_id, kind, value, expected, timeout=20.0):
    """The KPI value once it is ``expected`` (hours close one after the other), else the last seen."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline and seen != expected:
        got = client.simulate_get(f"/api/v1/kpis/{kpi_id}/values", params={"agg_kind": kind, "agg_value": value})
        seen = got.json["value"] if got.status_code == 200 else None
        time.sleep(0.05)
    return seen


def test_posted_events_roll_into_event_counts_and_distinct_uids(tmp_path, app_client):
    client = app_client(load_settings(env={}, overrides={
        "state.backend": "memory", "sinks.enabled": [], "server.data_dir": str(tmp_path),
        "auth.secret_key": [SECRET], "kpi.enabled": True, "kpi.events": True, "kpi.packages_file": "",
        "kpi.logs_dir": str(tmp_path / "no-logs"), "kpi.poll_interval": 0.05}))
    headers = {"Authorization": "Token " + TokenSigner([SECRET]).mint("app", ["write"])}

    def at(hour, minute):
        return datetime(2024, 5, 6, hour, minute).astimezone().isoformat()

    batch = [{"uid": f"u{i % 3}", "event": "signup" if i % 4 else "login", "time": at(10, i)} for i in range(12)]
    assert client.simulate_post("/log/events", json=batch, headers=headers).status_code < 300
    assert client.simulate_post("/log/event", json={"uid": "u9", "event": "login", "time": at(11, 30)},
                                headers=headers).status_code < 300
    assert client.simulate_post("/log/event", json={"uid": "u1", "event": "close", "time": at(12, 5)},
                                headers=headers).status_code < 300  # closes 11:00

    expected = {"items": [{"event": "signup", "count": 9}, {"event": "login", "count": 4}], "totalEvents": 13}
    assert wait_for_value(client, 2101, "D", "2024-05-06", expected) == expected
    assert wait_for_value(client, 2102, "D", "2024-05-06", {"distinctUids": 4}) == {"distinctUids": 4}  # u0-u2, u9
    aggregations = client.simulate_get("/api/v1/aggregations/D").json
    assert [k["kpiId"] for k in aggregations["kpis"]] == [2001, 2003, 2004, 2005, 2101, 2102]
    metrics = client.simulate_get("/metrics").text
    assert "statskit_kpi_events_consumed_total 14.0" in metrics
