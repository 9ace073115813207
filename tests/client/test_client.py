"""statskit_client against a real statskit server.

Most tests run the Falcon app under ``wsgiref`` in a thread (one per module, events told apart
by their names); the short-script test runs the real ``statskit-server`` under gunicorn. Faults
the real server cannot produce on demand (503/429 with ``Retry-After``, then recovery) come from
a small scripted HTTP server. No assertion depends on timing.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

import statskit_client
from statskit.config import load_settings
from statskit.events import format_time
from statskit.tokens import TokenSigner
from statskit.worker import BatchWorker, RetryableError
from statskit_client import Analytics, ClientWarning, DroppedError, SendError
from statskit_client import client as client_module
from statskit_client.transport import DEFAULT_URL, RetryableSendError, join_url, parse_retry_after
from statskit_server import create_app

from gunicorn_server import StatskitServer

ROOT = Path(__file__).resolve().parents[2]
from support import SECRET, until  # noqa: E402  (the one test secret)
ID = re.compile(r"entry_[0-9a-f]{32}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the real server, in-process ---------------------------------------------------------

class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the fork test's parent and child post at the same time


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class Server:
    def __init__(self, tmp_path: Path) -> None:
        self.app = create_app(load_settings(env={}, overrides={
            "server.data_dir": str(tmp_path), "auth.secret_key": [SECRET], "sinks.enabled": ["sqlite"]}))
        self.httpd = make_server("127.0.0.1", 0, self.app, server_class=_ThreadingWSGIServer,
                                 handler_class=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.token = TokenSigner([SECRET]).mint("svc", ["write", "read"])
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def client(self, **config: Any) -> Analytics:
        return Analytics({"url": self.url, "access_token": self.token, **config})

    def events(self, event: str) -> List[Dict[str, Any]]:
        resp = requests.get(self.url + "/log/events", params={"event": event, "limit": 1000},
                            headers={"Authorization": f"Token {self.token}"}, timeout=5)
        resp.raise_for_status()
        return resp.json()["events"]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.app.statskit.close(1.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("client-server"))
    yield srv
    srv.stop()


@pytest.fixture
def clients():
    """Clients made in a test, shut down after it so no thread outlives the test."""
    made: List[Analytics] = []
    yield made
    for client in made:
        client.shutdown(1.0)


# --- a scripted server, for faults ---------------------------------------------------------

class FakeServer:
    """Answers POSTs from a script of ``(status, headers)``, then 200; records every request."""

    def __init__(self, script: List[Tuple[int, Dict[str, str]]]) -> None:
        self.script = list(script)
        self.requests: List[Tuple[str, Dict[str, str], bytes]] = []
        self.times: List[float] = []  # time.monotonic() of each request
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append((self.path, dict(self.headers), body))
                fake.times.append(time.monotonic())
                status, headers = fake.script.pop(0) if fake.script else (200, {})
                out = json.dumps({"count": 0, "ids": []} if status == 200 else {"error": "x", "message": "scripted"})
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def bodies(self) -> List[List[Dict[str, Any]]]:
        return [json.loads(body) for _, _, body in self.requests]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    servers: List[FakeServer] = []

    def make(script: List[Tuple[int, Dict[str, str]]]) -> FakeServer:
        servers.append(FakeServer(script))
        return servers[-1]

    yield make
    for srv in servers:
        srv.stop()


class OriginalStatsService:
    """The original stats-service's routes as its clients saw them: ``POST /log/event/`` takes a
    v1 event dict (uid and event asserted: else 500) or a v2 list of points (``"OK"``; a dict
    that is not an event, or a point missing a key, 500), and there is no ``/log/events``:
    Pyramid answers 404 (or ``missing_status``)."""

    def __init__(self, missing_status: int = 404) -> None:
        self.requests: List[Tuple[str, str]] = []
        self.stored: List[Dict[str, Any]] = []
        stats = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stats.requests.append(("POST", self.path))
                status, answer = 500, None
                if self.path in ("/log/event", "/log/event/"):
                    doc = json.loads(body)
                    if isinstance(doc, dict) and "uid" in doc and "event" in doc:
                        stats.stored.append(doc)
                        status, answer = 200, doc.get("event_id") or "entry_x"
                    elif isinstance(doc, list) and all({"measurement", "tags", "fields"} <= set(p) for p in doc):
                        stats.stored.extend(doc)
                        status, answer = 200, "OK"
                else:
                    status, answer = missing_status, {"success": False, "data": None, "message": "not found"}
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("missing_status", [404, 405])
def test_deferred_events_reach_an_original_server_without_the_batch_route(clients, caplog, missing_status):
    """A team that upgrades its clients before its server loses nothing: on a 404/405 from
    /log/events the client posts each event to /log/event/ (points as a one-point list, the v2
    API), remembers that per server and says so once."""
    original = OriginalStatsService(missing_status)
    try:
        caplog.set_level("INFO", logger="statskit_client")
        for round_ in range(2):  # a second client of the same server does not probe again
            client = Analytics({"url": original.url, "access_token": "t", "max_latency": 0.01})
            clients.append(client)
            for i in range(3):
                client.log({"uid": f"u{i}", "event": f"fallback-{round_}"})
            client.log([{"measurement": "cpu", "tags": {"host": "h"}, "fields": {"v": 1.5}}])
            assert client.flush(10)
            assert client.sent == 4 and client.dropped == 0
        assert sorted(e.get("event", e.get("measurement")) for e in original.stored) == \
            ["cpu", "cpu"] + ["fallback-0"] * 3 + ["fallback-1"] * 3
        assert original.requests.count(("POST", "/log/events")) == 1
        assert original.requests.count(("POST", "/log/event/")) == 8
        notes = [r for r in caplog.records if "/log/events" in r.getMessage()]
        assert len(notes) == 1 and original.url in notes[0].getMessage()
    finally:
        original.stop()


# --- configuration and the stats-client API --------------------------------------------------

def test_access_token_is_required_unless_disabled():
    with pytest.raises(ValueError, match="access_token is not set"):
        Analytics({"url": "http://127.0.0.1:9"})
    with pytest.warns(ClientWarning, match="disabled"):
        assert Analytics({"disabled": True}).log({"uid": "u", "event": "e"}) is None


def test_disabled_warns_once_not_on_every_call(recwarn):
    client = Analytics({"disabled": True})
    for _ in range(3):
        assert client.log({"uid": "u", "event": "e"}) is None
    assert len([w for w in recwarn if issubclass(w.category, ClientWarning)]) == 1


def test_stats_before_init_is_a_runtime_error(monkeypatch):
    monkeypatch.setattr(client_module, "_current", None)
    with pytest.raises(RuntimeError, match="Analytics.init"):
        Analytics.stats()
    with pytest.raises(RuntimeError):
        statskit_client.log({"uid": "u", "event": "e"})
    assert statskit_client.flush(0.1) is True and statskit_client.shutdown(0.1) is True


def test_init_keeps_every_key_and_none_means_default(monkeypatch):
    monkeypatch.setattr(client_module, "_current", None)
    client = Analytics.init({"url": None, "access_token": "t", "defer": False, "tags": {"env": "ci", "n": 1}})
    assert Analytics.stats() is client and statskit_client.stats() is client
    assert client.url == DEFAULT_URL == "http://localhost:20080"
    assert client.tags == {"env": "ci", "n": "1"}  # the original's init lost them


@pytest.mark.parametrize("base, path, expected", [
    ("http://h:1", "ping/", "http://h:1/ping/"),
    ("http://h:1/", "ping/", "http://h:1/ping/"),
    ("http://h:1/stats", "ping/", "http://h:1/stats/ping/"),      # urljoin gave http://h:1/ping/
    ("http://h:1/stats/", "/log/event/", "http://h:1/stats/log/event/"),  # urljoin gave http://h:1/log/event/
])
def test_urls_keep_the_base_path(base, path, expected):
    assert join_url(base, path) == expected


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("defer", [True, False])
def test_bad_input_raises_in_the_caller(defer, clients):
    client = Analytics({"url": "http://127.0.0.1:9", "access_token": "t", "defer": defer})
    clients.append(client)
    with pytest.raises(ValueError, match="'uid' and 'event'"):
        client.log({"uid": "u"})
    with pytest.raises(ValueError):
        client.log({"event": "e", "uid": None})
    with pytest.raises(ValueError):
        client.log([{"measurement": "m"}])
    with pytest.raises(TypeError):
        client.log("signup")
    assert client.queued == 0


def test_flatten_helper():
    assert statskit_client.flatten({"a": {"b": {"c": 1}}, "d": 2}) == {"a_b_c": 1, "d": 2}
    assert statskit_client.flatten({"a": {"b": 1}}, sep=".") == {"a.b": 1}


# --- defer=False, ping, get, system_startup (5) --------------------------------------------

def test_defer_false_returns_the_id_or_ok_and_reads_back(server, clients):
    client = server.client(defer=False, tags={"service": "billing"})
    clients.append(client)
    assert client.ping()["status"] == "ok"
    event_id = client.log({"uid": "u1", "event": "sync_signup", "plan": "pro", "extra": {"seats": 3}})
    assert ID.fullmatch(event_id)
    stored = client.get(event_id)
    assert stored["uid"] == "u1" and stored["plan"] == "pro" and stored["extra_seats"] == 3
    assert stored["tags"] == {"service": "billing"}
    assert client.get("entry_" + "0" * 32) is None
    assert client.log([{"measurement": "sync_points", "tags": {"host": "a"}, "fields": {"load": 0.5}}]) == "OK"
    assert client.sent == 2


def test_system_startup_posts_the_original_point(server, clients):
    client = server.client(defer=False, tags={"service": "billing", "release": 7})
    clients.append(client)
    assert client.system_startup() == "OK"
    points = _points(server, "server_startup")
    hostname = socket.gethostname()
    assert len(points) == 1
    assert points[0]["fields"] == {"value": 1}
    tags = points[0]["tags"]
    assert tags["uid"] == f"system-{hostname}" and tags["hostname"] == hostname
    assert tags["service"] == "billing" and tags["release"] == "7"


def _points(server: Server, measurement: str) -> List[Dict[str, Any]]:
    resp = requests.get(server.url + "/log/events", params={"limit": 1000},
                        headers={"Authorization": f"Token {server.token}"}, timeout=5)
    return [e for e in resp.json()["events"] if e["measurement"] == measurement]


def test_defer_false_failures_answer_empty_string_and_call_on_error(server, clients):
    errors: List[Tuple[BaseException, list]] = []
    down = Analytics({"url": f"http://127.0.0.1:{free_port()}", "access_token": "t", "defer": False,
                      "on_error": lambda exc, events: errors.append((exc, events))})
    bad_token = Analytics({"url": server.url, "access_token": "not-a-token", "defer": False,
                           "on_error": lambda exc, events: errors.append((exc, events))})
    clients.extend([down, bad_token])
    assert down.log({"uid": "u", "event": "unreachable"}) == ""
    assert bad_token.log({"uid": "u", "event": "unauthorised"}) == ""
    assert isinstance(errors[0][0], RetryableSendError) and errors[0][1][0]["event"] == "unreachable"
    assert isinstance(errors[1][0], SendError) and errors[1][0].status == 401
    assert down.dropped == bad_token.dropped == 1


# --- deferred events ----------------------------------------------------------------------

def test_deferred_events_arrive_with_their_own_time_and_distinct_ids(server, clients):
    logged: Dict[str, Dict[str, Any]] = {}

    def remember(event: Dict[str, Any]) -> Dict[str, Any]:
        logged[event["uid"]] = event
        return event

    client = server.client(batch_size=40, before_send=remember)
    clients.append(client)
    template = {"uid": "", "event": "deferred_time", "n": 0}
    for i in range(250):
        template["uid"], template["n"] = f"u{i}", i  # the caller reuses its dict: log() copies it
        assert client.log(template) is None
    assert client.flush(10)
    stored = server.events("deferred_time")
    assert len(stored) == 250 and len({e["event_id"] for e in stored}) == 250
    for event in stored:
        sent = logged[event["uid"]]
        assert event["n"] == int(event["uid"][1:])
        assert event["time"] == format_time(sent["time"])  # the log() time, not the delivery time
        assert event["event_id"] == sent["event_id"]       # stamped by the worker on the same dict
    assert client.sent == 250 and client.dropped == 0


def test_sync_mode_sends_in_the_caller(server, clients):
    client = server.client(sync_mode=True, gzip=True)
    clients.append(client)
    assert client.log({"uid": "u1", "event": "sync_mode"}) is None
    assert client.log([{"uid": "u2", "event": "sync_mode"}, {"measurement": "sync_mode_point", "fields": {"v": 1}}]) is None
    assert len(server.events("sync_mode")) == 2 and client.sent == 3 and client.queued == 0


def test_gzip_batches(server, clients):
    client = server.client(gzip=True)
    clients.append(client)
    for i in range(120):
        client.log({"uid": f"u{i}", "event": "gzipped", "text": "x" * 200})
    assert client.flush(10)
    assert len(server.events("gzipped")) == 120


def test_one_invalid_event_does_not_sink_its_batch(server, clients):
    errors: List[Tuple[BaseException, list]] = []
    client = server.client(on_error=lambda exc, events: errors.append((exc, events)))
    clients.append(client)
    with pytest.warns(ClientWarning, match="dropping events"):
        for i in range(30):
            event = {"uid": f"u{i}", "event": "mixed_batch"}
            if i == 17:
                event["bad key!"] = 1       # the server names its index: dropped alone
            if i == 23:
                event["loop"] = event       # not JSON: dropped before sending
            client.log(event)
        assert client.flush(10)
    assert len(server.events("mixed_batch")) == 28
    assert client.drops == {"rejected": 1, "unencodable": 1}
    reasons = {type(exc).__name__: events[0]["uid"] for exc, events in errors}
    assert reasons == {"SendError": "u17", "ValueError": "u23"}
    assert [exc.status for exc, _ in errors if isinstance(exc, SendError)] == [400]


def test_before_send_edits_filters_and_fails_closed(server, clients):
    errors: List[Tuple[BaseException, list]] = []

    def hook(event: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if event["uid"] == "drop-me":
            return None
        if event["uid"] == "broken":
            raise RuntimeError("hook bug")
        if event["uid"] == "not-a-dict":
            return "oops"
        event["email"] = "<scrubbed>"
        return event

    client = server.client(before_send=hook, on_error=lambda exc, events: errors.append((exc, events)))
    clients.append(client)
    with pytest.warns(ClientWarning, match="before_send"):
        for uid in ("a", "drop-me", "broken", "not-a-dict", "b"):
            client.log({"uid": uid, "event": "hooked", "email": "a@example.com"})
    assert client.flush(10)
    stored = server.events("hooked")
    assert sorted(e["uid"] for e in stored) == ["a", "b"] and {e["email"] for e in stored} == {"<scrubbed>"}
    assert client.drops == {"before_send": 2} and str(errors[0][0]) == "hook bug"
    assert isinstance(errors[1][0], TypeError)


# --- full queue (2) -----------------------------------------------------------------------

def test_full_queue_drops_the_newest_and_says_so(clients):
    errors: List[Tuple[BaseException, list]] = []
    dropped: List[Tuple[str, str]] = []
    client = Analytics({
        "url": f"http://127.0.0.1:{free_port()}", "access_token": "t",   # nothing listens there
        "max_queue": 5, "batch_size": 100, "flush_interval": 3600, "max_retries": None,
        "on_error": lambda exc, events: errors.append((exc, events)),
        "on_dropped": lambda events, reason: dropped.extend((e["uid"], reason) for e in events)})
    clients.append(client)
    with pytest.warns(ClientWarning, match="queue_full"):
        for i in range(50):
            assert client.log({"uid": f"u{i}", "event": "overflow"}) is None
    assert client.dropped == 45 and client.drops == {"queue_full": 45} and client.queued == 5
    assert [uid for uid, _ in dropped] == [f"u{i}" for i in range(5, 50)]  # the newest, not the oldest
    assert all(isinstance(exc, DroppedError) and exc.reason == "queue_full" for exc, _ in errors)

    assert client.shutdown(0.3) is False  # bounded, although nothing can be delivered
    until(lambda: client.dropped == 50, "the five queued events given up")
    assert sorted(uid for uid, reason in dropped if reason == "shutdown") == sorted(f"u{i}" for i in range(5))
    client.log({"uid": "late", "event": "overflow"})
    assert client.drops == {"queue_full": 45, "shutdown": 6} and dropped[-1] == ("late", "shutdown")


def test_flush_is_bounded_when_the_server_is_down(clients):
    client = Analytics({"url": f"http://127.0.0.1:{free_port()}", "access_token": "t", "max_retries": None})
    clients.append(client)
    client.log({"uid": "u", "event": "never"})
    assert client.flush(0.3) is False and client.queued == 1
    with pytest.warns(ClientWarning, match="shutdown") as warned:
        assert client.shutdown(0.1) is False
        # (the worker thread counts the drop, then warns: wait for both)
        until(lambda: client.dropped == 1 and len(warned) > 0, "the retried event given up at shutdown", timeout=30)
    assert client.drops == {"shutdown": 1}


# --- retries (3) --------------------------------------------------------------------------

def test_retries_honour_retry_after_and_reuse_ids(fake, clients):
    srv = fake([(500, {}), (503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})])
    errors: list = []
    client = Analytics({"url": srv.url, "access_token": "t", "on_error": lambda *a: errors.append(a)})
    clients.append(client)
    for i in range(3):
        client.log({"uid": f"u{i}", "event": "retried"})
    assert client.flush(10)
    bodies = srv.bodies()
    assert len(bodies) == 4 and all(path == "/log/events" for path, _, _ in srv.requests)
    assert bodies[0] == bodies[1] == bodies[2] == bodies[3]  # same event_id and time every time
    assert all(ID.fullmatch(e["event_id"]) and isinstance(e["time"], int) for e in bodies[0])
    assert srv.requests[0][1]["Authorization"] == "Token t"
    assert client.sent == 3 and errors == []


def test_retry_after_is_waited_out_even_while_new_events_arrive(fake, clients):
    # A server that says "come back in 1 s" gets nothing sooner, however busy the caller is
    # (new events used to wake the retry early). A lower bound on a wait the client chose to
    # make, not a speed measurement.
    srv = fake([(429, {"Retry-After": "1"})])
    client = Analytics({"url": srv.url, "access_token": "t", "max_latency": 0.01})
    clients.append(client)
    client.log({"uid": "u", "event": "first"})
    until(lambda: len(srv.requests) == 1, "the first attempt")
    for i in range(20):
        client.log({"uid": "u", "event": f"meanwhile-{i}"})
        time.sleep(0.02)
    assert client.flush(10)
    assert srv.times[1] - srv.times[0] >= 0.95
    assert sum(len(json.loads(body)) for _, _, body in srv.requests[1:]) == 21  # nothing lost


def test_a_short_flush_does_not_cancel_a_longer_one():
    # A send that fails once with a long backoff: a shutdown flush(10) must still get its
    # early retry when a short flush(0.05) (a scrape's) starts and times out meanwhile.
    attempts = []

    def send(batch):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RetryableError("down for now")

    worker = BatchWorker(send, max_latency=0.01, backoff=20.0, max_backoff=20.0)
    worker._backoff = lambda attempt: 20.0  # no jitter: the wait is surely longer than the test
    worker.submit("x")
    until(lambda: len(attempts) == 1, "the first attempt")
    done = []
    long_flush = threading.Thread(target=lambda: done.append(worker.flush(10.0)))
    long_flush.start()
    worker.flush(0.05)  # times out (or not): either way the long flush must keep its retry
    long_flush.join(15)
    assert done == [True] and len(attempts) == 2
    worker.kill()


def test_retries_run_out(fake, clients):
    srv = fake([(503, {"Retry-After": "0"})] * 3)
    errors: List[Tuple[BaseException, list]] = []
    client = Analytics({"url": srv.url, "access_token": "t", "max_retries": 2,
                        "on_error": lambda exc, events: errors.append((exc, events))})
    clients.append(client)
    with pytest.warns(ClientWarning, match="retries_exhausted"):
        client.log({"uid": "u", "event": "given_up"})
        assert client.flush(10)
    assert len(srv.requests) == 3 and client.drops == {"retries_exhausted": 1}
    exc, events = errors[0]
    assert isinstance(exc, RetryableSendError) and exc.status == 503 and events[0]["uid"] == "u"


def test_other_client_errors_are_not_retried(fake, clients):
    srv = fake([(401, {})])
    errors: List[Tuple[BaseException, list]] = []
    client = Analytics({"url": srv.url, "access_token": "expired",
                        "on_error": lambda exc, events: errors.append((exc, events))})
    clients.append(client)
    with pytest.warns(ClientWarning, match="rejected"):
        client.log({"uid": "u1", "event": "refused"})
        client.log({"uid": "u2", "event": "refused"})
        assert client.flush(10)
    assert len(srv.requests) == 1 and client.drops == {"rejected": 2}
    assert errors[0][0].status == 401 and [e["uid"] for e in errors[0][1]] == ["u1", "u2"]


# --- fork (4) -----------------------------------------------------------------------------

def _wait_child(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child did not finish")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_parent_and_child_each_deliver_their_own(server, clients):
    # A long flush_interval keeps the parent's first events queued across the fork: the child
    # must not send them too (they would get other ids there and be stored twice).
    client = server.client(flush_interval=3600, batch_size=1000)
    clients.append(client)
    client.log({"uid": "parent-first", "event": "forked"})
    assert client.flush(10) and client.sent == 1  # the child starts its counters at 0
    for i in range(5):
        client.log({"uid": f"parent-before-{i}", "event": "forked"})
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for i in range(5):
                client.log({"uid": f"child-{i}", "event": "forked"})
            code = 0 if client.flush(10) and client.sent == 5 and client.dropped == 0 else 2
        finally:
            os._exit(code)
    for i in range(5):
        client.log({"uid": f"parent-after-{i}", "event": "forked"})
    assert _wait_child(pid) == 0
    assert client.flush(10) and client.sent == 11
    uids = sorted(e["uid"] for e in server.events("forked"))
    assert uids == sorted(["parent-first"] + [f"parent-before-{i}" for i in range(5)] + [f"child-{i}" for i in range(5)]
                          + [f"parent-after-{i}" for i in range(5)])


def _mp_child(url: str, token: str) -> None:
    # No flush: multiprocessing ends its children with os._exit(), after its finalizers.
    statskit_client.stats().log({"uid": "mp-child", "event": "mp_forked"})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multiprocessing_fork_child_is_drained_without_flush(server, monkeypatch):
    monkeypatch.setattr(client_module, "_current", None)
    client = Analytics.init({"url": server.url, "access_token": server.token})
    try:
        client.log({"uid": "mp-parent", "event": "mp_forked"})
        proc = multiprocessing.get_context("fork").Process(target=_mp_child, args=(server.url, server.token))
        proc.start()
        proc.join(20)
        assert proc.exitcode == 0
        assert client.flush(10)
        assert sorted(e["uid"] for e in server.events("mp_forked")) == ["mp-child", "mp-parent"]
    finally:
        client.shutdown(1.0)


# --- process exit (1) ---------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import sys
    import statskit_client
    statskit_client.init({"url": sys.argv[1], "access_token": sys.argv[2], "exit_timeout": float(sys.argv[3])})
    for i in range(1000):
        statskit_client.log({"uid": "script-%d" % i, "event": "short_script", "i": i})
    # no flush(), no shutdown(): the atexit drain must deliver everything
""")


def _run_script(url: str, token: str, exit_timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", SCRIPT, url, token, str(exit_timeout)], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_short_script_loses_nothing_at_exit(tmp_path):
    with StatskitServer(tmp_path, args=["--sinks", "sqlite"]) as srv:
        done = _run_script(srv.url, srv.token(), 10.0)
        assert done.returncode == 0, done.stderr
        listed = requests.get(srv.url + "/log/events", params={"event": "short_script", "limit": 1000},
                              headers=srv.headers(), timeout=5).json()
    assert listed["count"] == 1000
    assert {e["i"] for e in listed["events"]} == set(range(1000))


@pytest.mark.e2e
def test_full_queue_against_a_real_server_drops_the_newest_and_delivers_the_rest(tmp_path, clients):
    with StatskitServer(tmp_path, args=["--sinks", "sqlite"]) as srv:
        dropped: List[Tuple[str, str]] = []
        client = Analytics({"url": srv.url, "access_token": srv.token(), "max_queue": 5, "batch_size": 100,
                            "flush_interval": 3600, "on_dropped": lambda events, reason: dropped.extend(
                                (e["uid"], reason) for e in events)})
        clients.append(client)
        with pytest.warns(ClientWarning, match="queue_full"):
            for i in range(50):
                client.log({"uid": f"u{i}", "event": "burst"})
        assert client.drops == {"queue_full": 45} and [uid for uid, _ in dropped] == [f"u{i}" for i in range(5, 50)]
        assert client.flush(10) and client.sent == 5
        listed = requests.get(srv.url + "/log/events", params={"event": "burst"}, headers=srv.headers(), timeout=5).json()
    assert sorted(e["uid"] for e in listed["events"]) == sorted(f"u{i}" for i in range(5))


def test_exit_drain_is_bounded_and_reports_what_it_gave_up():
    done = _run_script(f"http://127.0.0.1:{free_port()}", "t", 0.3)
    assert done.returncode == 0
    assert "not delivered within" in done.stderr and "given up at shutdown" in done.stderr
