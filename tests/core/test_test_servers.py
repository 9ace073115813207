"""The real-server launchers (tests/servers.py) start real servers that really store and answer."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List

import pytest
import requests

import conftest
from servers import HOST, RealServer, Redis, ServerStartError, ServerUnavailable, free_port


def test_free_port_is_bindable_on_loopback():
    port = free_port()
    with socket.socket() as sock:
        sock.bind((HOST, port))


def test_missing_binary_raises_server_unavailable(tmp_path):
    class Missing(RealServer):
        binary = "statskit-no-such-server"

    with pytest.raises(ServerUnavailable, match="install-servers"):
        Missing(tmp_path)


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_fixture_skips_locally_but_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)

    def make():
        raise ServerUnavailable("influxd is not installed")

    with pytest.raises(outcome):
        conftest.make_real_server(make)


@pytest.mark.realserver
def test_start_failure_reports_the_server_output(tmp_path):
    server = conftest.make_real_server(lambda: Redis(tmp_path, extra_args=["--no-such-directive", "1"]))
    with pytest.raises(ServerStartError, match="(?i)bad directive|no-such-directive"):
        server.start()
    assert server.pid is None


# -- InfluxDB 1.6 ------------------------------------------------------------------------

def test_influxdb1_write_then_read_back(influxdb1):
    # The v1 /write path statskit uses: without CREATE DATABASE the write is refused.
    missing = requests.post(influxdb1.url + "/write", params={"db": "stats"}, data=b"m v=1")
    assert missing.status_code == 404 and "database not found" in missing.text

    influxdb1.create_database("stats")
    assert "stats" in influxdb1.databases()
    resp = requests.post(influxdb1.url + "/write", params={"db": "stats"},
                         data=b'events,uid=u1 event="open",value=1.5,count=3i 1700000000000000000')
    assert resp.status_code == 204

    assert influxdb1.points("stats", "events") == [
        {"time": 1700000000000000000, "uid": "u1", "event": "open", "value": 1.5, "count": 3}]
    assert influxdb1.points("stats", "nothing") == []
    assert influxdb1.points("no_such_db", "events") == []


def test_influxdb1_keeps_data_across_stop_and_start(influxdb1):
    influxdb1.create_database("stats")
    influxdb1.write("stats", ["events,uid=u1 value=1 1", "events,uid=u2 value=2 2"])
    port, first_pid = influxdb1.port, influxdb1.pid

    influxdb1.stop()
    assert influxdb1.pid is None
    with pytest.raises(requests.ConnectionError):
        requests.get(influxdb1.url + "/ping", timeout=2)

    influxdb1.start()
    assert influxdb1.port == port and influxdb1.pid not in (None, first_pid)
    assert [(p["uid"], p["value"]) for p in influxdb1.points("stats", "events")] == [("u1", 1.0), ("u2", 2.0)]


# -- VictoriaMetrics -----------------------------------------------------------------------

def test_victoria_metrics_v2_write_then_export(victoria_metrics):
    resp = requests.post(victoria_metrics.url + "/api/v2/write", params={"org": "o", "bucket": "stats"},
                         data=b"grafana,dashboard=d1 duration=12.5,count=2i")
    assert resp.status_code == 204

    # Read back at once: export() flushes, so no 10 s index delay and no latency offset.
    series = victoria_metrics.export('{__name__=~"grafana_.*"}')
    assert [(s["metric"], s["values"]) for s in series] == [
        ({"__name__": "grafana_count", "dashboard": "d1"}, [2]),
        ({"__name__": "grafana_duration", "dashboard": "d1"}, [12.5]),
    ]
    assert abs(series[0]["timestamps"][0] / 1000 - time.time()) < 60  # receive time, in ms


def test_victoria_metrics_keeps_data_across_stop_and_start(victoria_metrics):
    victoria_metrics.write("m,k=v f=1 1700000000000000000")
    victoria_metrics.restart()
    assert [(s["metric"], s["timestamps"]) for s in victoria_metrics.export()] == [
        ({"__name__": "m_f", "k": "v"}, [1700000000000])]


# -- Prometheus ----------------------------------------------------------------------------

class _StaticMetrics(BaseHTTPRequestHandler):
    body = b'# TYPE statskit_probe gauge\nstatskit_probe{kind="static"} 42\n'

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass  # keep pytest output clean


@pytest.fixture
def static_target() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((HOST, 0), _StaticMetrics)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_prometheus_scrapes_two_jobs_with_their_params(prometheus_factory, static_target):
    target = f"{HOST}:{static_target.server_address[1]}"
    prom = prometheus_factory([target], params={"scraper": ["prom-a"]},
                              jobs=[{"job_name": "second", "targets": [target], "params": {"scraper": ["prom-b"]}}])

    result = prom.wait_for("statskit_probe", lambda r: len(r) == 2, timeout=20)
    assert sorted((r["metric"]["job"], r["metric"]["kind"], r["value"][1]) for r in result) == [
        ("second", "static", "42"), ("statskit", "static", "42")]
    paths: List[str] = static_target.paths  # type: ignore[attr-defined]
    assert "/metrics?scraper=prom-a" in paths and "/metrics?scraper=prom-b" in paths
    assert prom.query("sum(statskit_probe)")[0]["value"][1] == "84"


# -- Redis ---------------------------------------------------------------------------------

def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(4096), b""))


def test_redis_ping_set_get_over_a_raw_socket(redis_server):
    reply = _raw(redis_server.port, b"PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
                                    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nQUIT\r\n")
    assert reply == b"+PONG\r\n+OK\r\n$5\r\nhello\r\n+OK\r\n"
    assert redis_server.execute("INCRBY", "n", 5) == 5
    assert redis_server.execute("CONFIG", "GET", "bind") == ["bind", HOST]


@pytest.mark.realserver
def test_redis_appendonly_survives_restart(tmp_path):
    with conftest.make_real_server(lambda: Redis(tmp_path, appendonly=True)) as redis:
        redis.execute("SET", "k", "kept")
        redis.restart()
        assert redis.execute("GET", "k") == "kept"
    assert redis.pid is None
