"""Nothing acknowledged is lost (issue 15): kill -9 of the whole process group, or a SIGTERM,
under load; every event answered 2xx is in SQLite after the restart."""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from typing import Any, List

import pytest
import requests

from gunicorn_server import StatskitServer
from statskit.state.sqlite import DATABASE_NAME


def _load(server: StatskitServer, stop: threading.Event, acked: List[str], n: int) -> None:
    session = requests.Session()
    headers = server.headers()
    for i in range(20_000):  # bounded in count; the test stops it after a few seconds
        if stop.is_set():
            return
        event_id = f"w{n}-{i}"
        try:
            if i % 5 == 0:  # batches too
                ids = [f"{event_id}-{k}" for k in range(10)]
                resp = session.post(server.url + "/log/events", headers=headers, timeout=5,
                                    json=[{"uid": "u", "event": "crash", "event_id": e} for e in ids])
                if resp.status_code == 200:
                    acked.extend(resp.json()["ids"])
            else:
                resp = session.post(server.url + "/log/event", headers=headers, timeout=5,
                                    json={"uid": "u", "event": "crash", "event_id": event_id})
                if resp.status_code == 200:
                    acked.append(resp.json())
        except requests.RequestException:
            session = requests.Session()  # the server is gone: what was answered 200 is what counts
            time.sleep(0.05)


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_no_acknowledged_event_is_missing_after_a_crash_or_stop_under_load(tmp_path, how):
    server = StatskitServer(tmp_path, workers=2, args=["--sinks", "sqlite,stdout,prometheus"], own_group=True)
    server.start()
    stop = threading.Event()
    acked: List[str] = []
    loaders = [threading.Thread(target=_load, args=(server, stop, acked, n), daemon=True) for n in range(6)]
    try:
        for thread in loaders:
            thread.start()
        time.sleep(3.0)
        if how == "kill -9":
            server.kill_group()
        else:
            server.stop()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in loaders:
            thread.join(10)
    assert len(acked) > 500  # the load was real
    server.start()
    try:
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        with sqlite3.connect(str(tmp_path / DATABASE_NAME)) as conn:
            stored = {row[0] for row in conn.execute("SELECT id FROM events")}
        missing = [e for e in acked if e not in stored]
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged events missing"
        # Counted once each, from the log: a kill -9 used to lose up to a second of counts. The
        # worker answering may not be the one counting (it catches up within 50 ms): poll.
        deadline, seen = time.monotonic() + 20, []
        while time.monotonic() < deadline:
            metrics = requests.get(server.url + "/metrics", timeout=10).text
            found = re.search(r'statskit_events_accepted_total\{event="crash",measurement="analytics"\} (\S+)', metrics)
            seen.append(float(found.group(1)) if found else 0.0)
            if seen[-1] >= len(stored):
                break
            time.sleep(0.1)
        assert seen[-1] == len(stored) and max(seen) <= len(stored), (seen[-5:], len(stored))  # none lost, none twice
    finally:
        server.stop()
        server.kill()


def test_an_acknowledged_one_shot_event_survives_kill_9(tmp_path):
    """POST /event commits before its answer too (it used to wait up to 50 ms in a buffer)."""
    server = StatskitServer(tmp_path, workers=2, args=["--sinks", "stdout"], own_group=True)
    server.start()
    session = requests.Session()
    acked = 0
    for i in range(200):  # under [oneshot] maintain_every (256): no scraper, so a clean-up would drop them
        resp = session.post(f"{server.url}/event?type=deploy&n={i}", timeout=5)
        if resp.ok:
            acked += 1
    server.kill_group()  # at once after the last answer: nothing had time to flush
    assert acked == 200, resp.text
    with sqlite3.connect(str(tmp_path / DATABASE_NAME)) as conn:
        assert conn.execute("SELECT count(*) FROM oneshot_events").fetchone()[0] == 200


def _influx_ids(influx: Any) -> List[str]:
    return [p["event_id"] for p in influx.points("crash", "analytics")]


@pytest.mark.parametrize("how, outage", [("kill -9", False), ("kill -9", True), ("SIGTERM", True)])
def test_influxdb_and_stdout_get_every_acknowledged_event_after_a_crash_or_stop(influxdb1, tmp_path, how, outage):
    """They are fed from the durable log with a cursor: after the restart they resume where
    they had confirmed, during an InfluxDB outage too; a point sent twice is stored once."""
    env = {"INFLUXDB_URL": influxdb1.url, "INFLUXDB_API": "v1", "INFLUXDB_DB": "crash"}
    server = StatskitServer(tmp_path, workers=2, env=env, own_group=True,
                            args=["--sinks", "sqlite,stdout,prometheus,influxdb"])
    server.start()
    if outage:
        influxdb1.stop()
    stop = threading.Event()
    acked: List[str] = []
    loaders = [threading.Thread(target=_load, args=(server, stop, acked, n), daemon=True) for n in range(4)]
    try:
        for thread in loaders:
            thread.start()
        time.sleep(2.5)
        server.kill_group() if how == "kill -9" else server.stop()
    finally:
        stop.set()
        for thread in loaders:
            thread.join(10)
    assert len(acked) > 300
    if outage:
        influxdb1.start()
    server.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # each sink's relay catches up at its own pace
            stored = set(_influx_ids(influxdb1))
            lines = {json.loads(line)["event_id"] for line in server.stdout().splitlines()
                     if line.startswith('{"msg":"event"')}
            if stored >= set(acked) and lines >= set(acked):
                break
            time.sleep(0.5)
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged events missing from InfluxDB"
        ids = _influx_ids(influxdb1)
        assert len(ids) == len(set(ids))  # re-sent points overwrote themselves
        assert set(acked) <= lines, f"{len(set(acked) - lines)} acknowledged events have no stdout line"
    finally:
        server.stop()
        server.kill()


def test_acknowledged_panel_payloads_survive_kill_9(tmp_path):
    """POST /write answers once its payload is in the journal; a killed process's payloads are
    adopted and applied by the next one: each has its session log line after the restart."""
    from grafana_payloads import encode, payload

    server = StatskitServer(tmp_path, workers=2, args=["--sinks", "prometheus"], own_group=True)
    server.start()
    session = requests.Session()
    acked = set()
    for i in range(150):
        resp = session.post(server.url + "/write", data=encode(payload(f"s{i}", "start", 1_700_000_000 + i)),
                            headers={"Content-Type": "application/json"}, timeout=5)
        if resp.status_code == 201:
            acked.add(f"s{i}")
    server.kill_group()  # at once after the last answer: the appliers had no time to catch up
    assert len(acked) == 150
    server.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logged = set(re.findall(r'msg="Received session data" uuid=(s\d+) ', server.stdout()))
            if logged >= acked:
                break
            time.sleep(0.5)
        assert acked - logged == set()
        with sqlite3.connect(str(tmp_path / DATABASE_NAME)) as conn:
            assert conn.execute("SELECT count(*) FROM grafana_journal").fetchone()[0] == 0  # applied, then deleted
        # Counted too: an applied payload's counts are stored before the journal forgets it.
        deadline, total = time.monotonic() + 20, 0.0
        while time.monotonic() < deadline:
            metrics = requests.get(server.url + "/metrics", timeout=10).text
            total = sum(float(v) for v in re.findall(r'^grafana_analytics_sessions_total\{[^}]*\} (\S+)$', metrics, re.M))
            if total >= 150:
                break
            time.sleep(0.2)
        assert total == 150
    finally:
        server.stop()
        server.kill()


def test_session_points_reach_influxdb_after_a_kill_9_during_an_outage(influxdb1, tmp_path):
    """A payload's point waits in a log on the host's disk, not in the InfluxDB sink's memory:
    applied while InfluxDB is down, killed, restarted, InfluxDB back: every point is there, once."""
    from grafana_payloads import encode, payload

    env = {"INFLUXDB_URL": influxdb1.url, "INFLUXDB_API": "v1", "INFLUXDB_DB": "crash"}
    server = StatskitServer(tmp_path, workers=2, env=env, own_group=True, args=["--sinks", "influxdb"])
    server.start()
    influxdb1.stop()
    uuids = {f"p{i}" for i in range(40)}
    session = requests.Session()
    for uuid in sorted(uuids):
        resp = session.post(server.url + "/write", data=encode(payload(uuid, "start", 1_700_000_000)), timeout=5)
        assert resp.status_code == 201
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # applied: its session log line is out, its point right after
        if set(re.findall(r'msg="Received session data" uuid=(p\d+) ', server.stdout())) >= uuids:
            break
        time.sleep(0.2)
    time.sleep(0.5)
    server.kill_group()
    influxdb1.start()
    server.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sessions = [p["session"] for p in influxdb1.points("crash", "grafana_sessions")]
            if set(sessions) >= uuids:
                break
            time.sleep(0.5)
        assert uuids - set(sessions) == set(), f"{len(uuids - set(sessions))} of 40 session points lost"
        assert len(sessions) == 40  # a point sent again overwrote itself
    finally:
        server.stop()
        server.kill()
