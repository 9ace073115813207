"""The real ``statskit-server`` with its telemetry listener on, for the end-to-end tests."""
from __future__ import annotations

import os
import signal
import socket
import time
from typing import Dict, List, Optional

import requests

from gunicorn_server import StatskitServer, _children, free_port
from statskit.telemetry.store_sqlite import SQLiteTelemetryStore

FAST = {"HEARTBEAT_INTERVAL": "0.3", "CLIENT_TIMEOUT_S": "1.5", "WS_MAX_PAYLOAD": "4096",
        "DB_SAVE_LATENCY_MS": "20", "PURGE_INTERVAL_S": "0.5", "LOG_EXPIRY_H": "1"}


class TelemetryServer(StatskitServer):
    def __init__(self, data_dir, env: Optional[Dict[str, str]] = None, args: Optional[List[str]] = None,
                 **kw) -> None:
        self.ws_port = free_port()
        super().__init__(data_dir, args=["--telemetry", "--telemetry-bind", f"127.0.0.1:{self.ws_port}", *(args or [])],
                         env={**FAST, **(env or {})}, **kw)

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def start(self, timeout: float = 30.0) -> "TelemetryServer":
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ws_port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"telemetry listener not listening:\n{self.tail()}")

    def listener_workers(self) -> List[int]:
        """PIDs of the listener's gunicorn workers: the children of statskit-server's child that
        has children of its own (the listener's master; the WSGI workers have none)."""
        for child in _children(self.pid):
            workers = _children(child)
            if workers:
                return workers
        return []

    def kill_listener_worker(self, pid: int, timeout: float = 20.0) -> None:
        """``kill -9`` one listener worker and wait until its master booted the replacement."""
        before = set(self.listener_workers())
        os.kill(pid, signal.SIGKILL)
        count = len(before)
        if not wait_for(lambda: len(set(self.listener_workers()) - before) == 1
                        and len(self.listener_workers()) == count, timeout):
            raise RuntimeError(f"no new listener worker after kill -9 {pid}:\n{self.tail()}")

    def store(self) -> SQLiteTelemetryStore:
        return SQLiteTelemetryStore.in_data_dir(str(self.data_dir))

    def metric(self, name: str) -> float:
        for line in requests.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
