"""statskit's gunicorn worker: gthread, where a slow client cannot hold a thread.

gunicorn 27's gthread worker waits up to 5 s for a new connection's first byte in a pool
thread, then reads the request head with blocking reads and has no bound on how long the head
or the body may take: one byte a second keeps a thread forever, so ``threads`` slow
connections stop a worker (and a sync worker is stopped by one). Here a request's head is
read without blocking and collected in the main loop (a connection waiting for bytes holds no
thread), it must be complete within ``[server] header_timeout`` seconds of its first byte
(else 408 and close), and its body within ``[server] body_timeout`` seconds of the head (a
recv past that fails the body read: 408). Plain HTTP/1.x only; TLS and HTTP/2 go unchanged.
"""
from __future__ import annotations

import socket
import time
from typing import Any, Optional

from gunicorn.workers import gthread

from . import balance

#: A head larger than this is handed to gunicorn's parser as it is (its limits answer it).
MAX_HEAD = 64 * 1024
_TIMEOUT_BODY = b'{"error": "request_timeout", "message": "the request head was not sent in time"}'
_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


class BodyTimeout(TimeoutError):
    """The body did not arrive within ``body_timeout`` (the app answers 408)."""


class _DeadlineSocket:
    """The parser's view of the socket: every recv bounded by one deadline for the body."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def recv(self, size: int) -> bytes:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise BodyTimeout("request body not received in time")
        previous = self._sock.gettimeout()
        self._sock.settimeout(left)
        try:
            return self._sock.recv(size)
        except socket.timeout:
            raise BodyTimeout("request body not received in time") from None
        finally:
            self._sock.settimeout(previous)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


#: (header_timeout, body_timeout), set by :func:`configure` in the master before it forks.
TIMEOUTS = (10.0, 30.0)


def configure(header_timeout: float, body_timeout: float) -> None:
    global TIMEOUTS
    TIMEOUTS = (float(header_timeout), float(body_timeout))


class StatskitWorker(gthread.ThreadWorker):
    """gthread with the request head collected in the main loop, deadlines for head and body,
    and connections spread over the workers (:mod:`statskit_server.balance`)."""

    sk_slot: Optional[int] = None  # this worker's row in the balance table (the master's pre_fork)

    # gunicorn's loop accepts while ``nr_conns < worker_connections``, asked on every turn: the
    # limit it reads is the configured one, lowered to this worker's fair share.
    @property
    def worker_connections(self) -> int:
        table = balance.TABLE
        if table is None or self.sk_slot is None:
            return self._sk_cap
        return table.limit(self.sk_slot, self.nr_conns, self._sk_cap)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._sk_cap = value

    def handle(self, conn: Any) -> Any:
        if self.cfg.is_ssl or conn.is_http2:
            return super().handle(conn)
        header_timeout, body_timeout = TIMEOUTS
        head: bytearray = getattr(conn, "sk_head", None) or bytearray()
        if conn.parser is not None:  # a kept-alive connection: bytes read ahead come first
            head[:0] = conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        closed = False
        try:
            while len(head) < MAX_HEAD:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                head += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        complete = b"\r\n\r\n" in head or b"\n\n" in head or len(head) >= MAX_HEAD
        if not complete:
            if closed:
                return False
            deadline: Optional[float] = getattr(conn, "sk_deadline", None)
            if head and deadline is None:
                deadline = time.monotonic() + header_timeout
            if deadline is not None and time.monotonic() > deadline:
                try:
                    conn.sock.setblocking(True)
                    conn.sock.settimeout(1.0)
                    conn.sock.sendall(_REQUEST_TIMEOUT)
                except OSError:
                    pass
                return False
            conn.sk_head, conn.sk_deadline = head, deadline
            conn.data_ready = False
            if conn.parser is not None and head:
                conn.parser.unreader.unread(bytes(head))  # kept on the parser between visits
                conn.sk_head = bytearray()
            return getattr(gthread, "_DEFER")  # back to the poller: wait for more without a thread
        conn.sk_head, conn.sk_deadline = bytearray(), None
        conn.sock.setblocking(True)
        conn.init()
        conn.data_ready = True
        conn.parser.unreader.unread(bytes(head))
        conn.parser.unreader.sock = _DeadlineSocket(conn.sock, time.monotonic() + body_timeout)
        return super().handle(conn)
