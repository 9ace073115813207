"""Session points in a real InfluxDB 1.6.7, and every query of the shipped Grafana dashboard on them."""
import json
import time
from pathlib import Path

import pytest
import requests

from grafana_payloads import encode, payload
from gunicorn_server import StatskitServer

pytestmark = [pytest.mark.e2e, pytest.mark.realserver]  # (its fixture starts InfluxDB itself)

DASHBOARD = Path(__file__).resolve().parents[2] / "statskit_server" / "dashboards" / "grafana-sessions.json"
DB = "grafana_usage"

# (uuid, user login, dashboard name, payloads): three users, two dashboards; "c" is still open.
SESSIONS = [
    ("a", "jdoe", "Kubernetes / Cluster Overview", [("start", 0), ("heartbeat", 60), ("heartbeat", 120), ("end", 150)]),
    ("b", "admin", "Node Exporter", [("start", 0), ("heartbeat", 60), ("end", 70)]),
    ("c", "alice", "Kubernetes / Cluster Overview", [("start", 0), ("heartbeat", 60), ("heartbeat", 100)]),
    ("d", "jdoe", "Node Exporter", [("start", 0), ("end", 30)]),
]

USER_IDS = {"jdoe": 7, "admin": 1, "alice": 12}


def grafana_substitute(query, dashboard=".*", user=".*"):
    """What Grafana puts in place of the dashboard's macros and variables ("All" selected by
    default; a selected value comes regex-escaped, "/" included, inside the /^...$/)."""
    return (query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "10s")
            .replace("$dashboard", dashboard).replace("$user", user))


def dashboard_queries():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]]
    queries += [(f"panel {p['title']!r}", t["query"]) for p in dashboard["panels"] for t in p["targets"]]
    return queries


def rows(influx, query, **variables):
    result = influx.query(grafana_substitute(query, **variables), db=DB)["results"][0]
    assert "error" not in result, result.get("error")
    return [dict(zip(s["columns"], v), **s.get("tags", {})) for s in result.get("series", []) for v in s["values"]]


@pytest.fixture(scope="module")
def influx_with_sessions(tmp_path_factory):
    """One InfluxDB for the module: sessions posted through statskit (2 workers, InfluxDB sink,
    v1 API), then a graceful stop so that every point is written."""
    from conftest import start_real_server
    from servers_influx import InfluxDB1

    tmp = tmp_path_factory.mktemp("grafana-influx")
    influx = start_real_server(lambda: InfluxDB1(tmp / "influxdb1"))
    try:
        env = {"INFLUXDB_URL": influx.url, "INFLUXDB_API": "v1", "INFLUXDB_DB": DB}
        # --threads 1: see tests/grafana/test_grafana_e2e.py (POST /write applied after its answer).
        server = StatskitServer(tmp / "statskit", workers=2, args=["--sinks", "influxdb", "--threads", "1"], env=env)
        with server:
            # Step by step across the sessions, a pause between steps, as browsers send them (a
            # heartbeat interval apart): each worker applies its payloads up to 50 ms after the
            # answer, so a session's start and end posted back to back to two workers could be
            # applied end first, and the end's point would not carry the session's duration.
            for step in range(max(len(events) for *_, events in SESSIONS)):
                for uuid, login, name, events in SESSIONS:
                    if step >= len(events):
                        continue
                    kind, t = events[step]
                    body = encode(payload(uuid, kind, 1_700_000_000 + t, **{"user.login": login, "user.name": login,
                                                                           "user.id": USER_IDS[login],
                                                                           "dashboard.name": name}))
                    resp = requests.post(server.url + "/write", data=body, timeout=10)
                    assert resp.status_code == 201
                time.sleep(0.25)
            requests.post(server.url + "/write", data=encode(payload("e", "start", 1, **{"dashboard.uid": "new"})),
                          timeout=10)  # an unsaved dashboard: no point
        yield influx
    finally:
        influx.close()


def test_each_payload_is_one_point_with_its_session_so_far(influx_with_sessions):
    points = influx_with_sessions.points(DB, "grafana_sessions")
    assert len(points) == sum(len(events) for *_, events in SESSIONS)
    ends = {p["session"]: p for p in points if p["type"] == "end"}
    assert {k: (v["duration_seconds"], v["ended"], v["user_login"]) for k, v in ends.items()} == {
        "a": (150.0, True, "jdoe"), "b": (70.0, True, "admin"), "d": (30.0, True, "jdoe")}
    c = sorted((p for p in points if p["session"] == "c"), key=lambda p: p["time"])
    assert [(p["type"], p["duration_seconds"], p["ended"]) for p in c] == [
        ("start", 0.0, False), ("heartbeat", 60.0, False), ("heartbeat", 100.0, False)]
    assert c[-1]["dashboard_uid"] == "k8s-cluster-ov" and c[-1]["var_cluster"] == "prod-eu-1"
    assert sum(p["delta_seconds"] for p in points) == 150.0 + 70.0 + 100.0 + 30.0


@pytest.mark.parametrize("title, query", dashboard_queries(), ids=[t for t, _ in dashboard_queries()])
def test_every_dashboard_query_returns_data(influx_with_sessions, title, query):
    assert rows(influx_with_sessions, query), f"{title}: no data for {query}"


def test_dashboard_answers_who_uses_which_dashboard(influx_with_sessions):
    [table] = [t["query"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]
               if p["title"] == "Who uses which dashboard"]
    got = {(r["user_login"], r["dashboard_name"]): (r["time"], r["sessions"]) for r in rows(influx_with_sessions, table)}
    assert got == {("jdoe", "Kubernetes / Cluster Overview"): (150.0, 1), ("admin", "Node Exporter"): (70.0, 1),
                   ("alice", "Kubernetes / Cluster Overview"): (100.0, 1), ("jdoe", "Node Exporter"): (30.0, 1)}
    [viewing] = [t["query"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]
                 if p["title"] == "Viewing now"]
    assert rows(influx_with_sessions, viewing)[0]["count"] == 1  # alice's session is still open


def test_selecting_a_user_or_a_dashboard_narrows_every_stat(influx_with_sessions):
    stats = {p["title"]: p["targets"][0]["query"] for p in json.loads(DASHBOARD.read_text())["panels"]
             if p["type"] == "stat"}

    def stat(title, **variables):
        [row] = rows(influx_with_sessions, stats[title], **variables)
        return [v for k, v in row.items() if k != "time"][0]

    assert stat("Sessions", user="jdoe") == 2 and stat("Time on dashboards", user="jdoe") == 180.0
    k8s = r"Kubernetes \/ Cluster Overview"
    assert stat("Sessions", dashboard=k8s) == 2 and stat("Users", dashboard=k8s) == 2
    assert stat("Time on dashboards", dashboard=k8s, user="alice") == 100.0
