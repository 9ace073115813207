"""Slow and idle clients do not take the default server down (issue 15)."""
from __future__ import annotations

import select
import subprocess
import socket
import threading
import time

import requests

from gunicorn_server import StatskitServer, connections_by_worker


def _slowloris(port: int, stop: threading.Event, body: bool) -> None:
    """One connection sending a request one byte a second (its head, or its body), until ``stop``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = b"POST /log/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    try:
        if body:
            sock.sendall(head)
        for byte in b"x" * 500 if body else head:
            if stop.wait(1.0):
                break
            sock.sendall(bytes([byte]))
    except OSError:
        pass  # closed by the server (408 past its timeout): what a slowloris gets
    finally:
        sock.close()


def test_eight_slow_connections_leave_health_and_ingest_answering(tmp_path):
    with StatskitServer(tmp_path, workers=2, args=["--sinks", "sqlite"]) as server:
        stop = threading.Event()
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]  # idle too
        slow = [threading.Thread(target=_slowloris, args=(server.port, stop, i % 2 == 1), daemon=True) for i in range(8)]
        try:
            for thread in slow:
                thread.start()
            time.sleep(2.0)  # every slow connection has started its request
            headers = server.headers()
            answered = 0
            for i in range(8):
                assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
                resp = requests.post(server.url + "/log/event", json={"uid": f"u{i}", "event": "slow"},
                                     headers=headers, timeout=5)
                assert resp.status_code == 200, resp.text
                answered += 1
                time.sleep(0.5)
            assert answered == 8
            assert all(thread.is_alive() for thread in slow)  # still dripping: the test measured what it claims
        finally:
            stop.set()
            for sock in idle:
                sock.close()
            for thread in slow:
                thread.join(5)
        assert "WORKER TIMEOUT" not in server.tail(200)


def test_a_head_not_sent_in_time_is_a_408_and_a_closed_connection(tmp_path):
    with StatskitServer(tmp_path, args=["--sinks", "sqlite"], env={"STATSKIT_SERVER_HEADER_TIMEOUT": "1"}) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            deadline = time.monotonic() + 8
            answer = b""
            while time.monotonic() < deadline:
                try:
                    sock.sendall(b"X")
                except OSError:
                    break
                time.sleep(0.3)
                sock.setblocking(False)
                try:
                    chunk = sock.recv(4096)
                    answer += chunk
                    if not chunk:
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_a_body_not_sent_in_time_is_a_408_and_stores_nothing(tmp_path):
    with StatskitServer(tmp_path, args=["--sinks", "sqlite"], env={"STATSKIT_SERVER_BODY_TIMEOUT": "1"}) as server:
        body = b'{"uid": "u", "event": "late", "event_id": "late-1"}'
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with sock:
            sock.sendall(f"POST /log/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Authorization: Token {server.token()}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                         + body[:10])
            answer = b""
            while b"request_timeout" not in answer:  # answered once the body is overdue (socket timeout: 10 s)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request_timeout" in answer
        got = requests.get(server.url + "/log/event/late-1", headers=server.headers(), timeout=5)
        assert got.status_code == 404


def test_connections_spread_over_the_workers(tmp_path):
    """Each gthread worker takes its share of the connections (statskit_server/balance.py):
    without it, one worker often took most of them and the other sat idle (6 and 2 of 8)."""
    server = StatskitServer(tmp_path, workers=2)
    with server:
        sockets: list = []

        def connect() -> None:  # kept alive after its answer
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sockets.append(sock)

        try:
            # /healthz answered by one worker says nothing of the other, which may still be
            # loading the app (meanwhile the first rightly takes everything): wait for both.
            deadline = time.monotonic() + 20
            while min(connections_by_worker(server).values(), default=0) == 0 and time.monotonic() < deadline:
                connect()
                time.sleep(0.05)
            for _ in range(3):  # each round: 8 connections at once, as a load generator or a pool opens them
                for sock in sockets:
                    sock.close()
                sockets.clear()
                time.sleep(1.5)  # every worker's loop turns at least once a second: their counts are back to 0
                burst = [socket.socket() for _ in range(8)]
                sockets.extend(burst)
                for sock in burst:
                    sock.setblocking(False)
                    sock.connect_ex(("127.0.0.1", server.port))
                for sock in burst:
                    select.select([], [sock], [], 10)
                    sock.setblocking(True)
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                for sock in burst:
                    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                held = connections_by_worker(server)
                assert sum(held.values()) == 8, (held, server.worker_pids(), subprocess.run(["ss", "-tnp"], capture_output=True, text=True).stdout[-3000:])
                # the worker that woke first took most (7 and 1, 8 and 0) before
                assert min(held.values()) >= 3, f"connections per worker: {held}"
        finally:
            for sock in sockets:
                sock.close()
