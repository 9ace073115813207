"""statskit-server under real gunicorn: workers share state, restarts keep counters."""
import re
import time

import pytest
import requests

from gunicorn_server import StatskitServer, hold_both_workers, raw_request

pytestmark = pytest.mark.e2e


def accepted(text: str, event: str) -> float:
    match = re.search(r'statskit_events_accepted_total\{event="%s",measurement="analytics"\} (\S+)' % event, text)
    return float(match.group(1)) if match else 0.0


def metrics_until_settled(server: StatskitServer, expected: float, event: str, tries: int = 60) -> str:
    """Counters of the other worker reach the store within [state] flush_interval (1 s)."""
    text = ""
    for _ in range(tries):
        text = requests.get(server.url + "/metrics", timeout=5).text
        if accepted(text, event) == expected:
            return text
        time.sleep(0.1)
    return text


def test_two_workers_answer_metrics_with_the_same_counts(tmp_path):
    with StatskitServer(tmp_path, workers=2, args=["--sinks", "sqlite,prometheus", "--threads", "1"]) as server:
        session = requests.Session()
        headers = server.headers()
        for i in range(40):
            assert session.post(server.url + "/log/event", json={"uid": f"u{i}", "event": "signup"},
                                headers=headers, timeout=5).status_code == 200
        resp = session.post(server.url + "/log/events", json=[{"uid": "b", "event": "signup"}] * 60,
                            headers=headers, timeout=5)
        assert resp.json()["count"] == 60
        metrics_until_settled(server, 100, "signup")
        # Ten answers, five from each worker (each holds one connection): every one must agree.
        counts = set()
        for _ in range(5):
            for sock in hold_both_workers(server):
                status, body = raw_request(sock, "GET", "/metrics")
                assert status == 200
                counts.add(accepted(body.decode(), "signup"))
        assert counts == {100.0}
        listed = requests.get(server.url + "/log/events", params={"limit": 1000}, headers=headers, timeout=5).json()
        assert listed["count"] == 100


def test_counters_and_events_survive_a_graceful_restart(tmp_path):
    server = StatskitServer(tmp_path, workers=2, args=["--sinks", "sqlite,prometheus"])
    with server:
        headers = server.headers()
        ids = [requests.post(server.url + "/log/event", json={"uid": "u", "event": "restart"}, headers=headers,
                             timeout=5).json() for _ in range(25)]
        # Stop right away: increments still buffered in a worker must be flushed by the SIGTERM path.
        server.restart()
        text = requests.get(server.url + "/metrics", timeout=5).text
        assert accepted(text, "restart") == 25
        got = requests.get(server.url + f"/log/event/{ids[0]}", headers=headers, timeout=5)
        assert got.status_code == 200 and got.json()["event"] == "restart"


def test_default_sinks_print_json_lines_on_stdout(tmp_path):
    with StatskitServer(tmp_path) as server:
        event_id = requests.post(server.url + "/log/event", json={"uid": "u9", "event": "logged", "n": 1},
                                 headers=server.headers(), timeout=5).json()
    lines = [line for line in server.stdout().splitlines() if event_id in line]
    assert len(lines) == 1
    import json

    record = json.loads(lines[0])
    assert record["msg"] == "event" and record["uid"] == "u9" and record["n"] == 1


def test_sigint_flushes_buffered_events_and_counters(tmp_path):
    import signal

    server = StatskitServer(tmp_path, workers=2, args=["--sinks", "sqlite,prometheus"])
    with server:
        headers = server.headers()
        session = requests.Session()
        for _ in range(30):
            assert session.post(server.url + "/log/event", json={"uid": "u", "event": "interrupted"},
                                headers=headers, timeout=5).status_code == 200
        server.proc.send_signal(signal.SIGINT)  # Ctrl-C: gunicorn's quick shutdown
        assert server.proc.wait(20) == 0
        server.start()
        listed = requests.get(server.url + "/log/events", params={"event": "interrupted", "limit": 100},
                              headers=headers, timeout=5).json()
        assert listed["count"] == 30
        assert accepted(requests.get(server.url + "/metrics", timeout=5).text, "interrupted") == 30


def test_an_acknowledged_event_is_readable_by_the_next_request_on_the_other_worker(tmp_path):
    """A client-supplied event_id (no time in it to wait for) posted to one worker is found by
    the other worker's very next request."""
    import json

    with StatskitServer(tmp_path, workers=2, args=["--sinks", "sqlite,prometheus", "--threads", "1"]) as server:
        headers = server.headers()
        for n in range(3):
            first, second = hold_both_workers(server)
            event_id = f"client-id-{n}"
            body = json.dumps({"uid": "u", "event": "ryow", "event_id": event_id}).encode()
            status, answer = raw_request(first, "POST", "/log/event", body, "application/json", headers)
            assert status == 200 and json.loads(answer) == event_id
            status, answer = raw_request(second, "GET", f"/log/event/{event_id}", headers=headers)
            assert status == 200 and json.loads(answer)["event"] == "ryow"


def test_each_server_has_its_own_control_socket_in_its_data_dir(tmp_path):
    # gunicorn's default is one path per user: a second server on the host took the first's.
    with StatskitServer(tmp_path / "one") as one, StatskitServer(tmp_path / "two") as two:
        for server in (one, two):
            sock = server.data_dir / "gunicorn.ctl"
            for _ in range(100):  # the master opens it once its workers run
                if sock.is_socket():
                    break
                time.sleep(0.05)
            assert sock.is_socket(), server.tail()
