"""Through real gunicorn with 2 workers: a log folder written as Caddy and logrotate write it,
across a SIGTERM restart and a SIGKILL; every complete line is counted exactly once."""
from __future__ import annotations

import os
import re
import shutil
import time

import pytest
import requests

from gunicorn_server import StatskitServer

from kpi_support import caddy, ts, write_packages

pytestmark = pytest.mark.e2e

T0 = ts(2024, 5, 6, 10, 0)


def accepted(server) -> int:
    text = requests.get(server.url + "/metrics", timeout=10).text
    found = re.search(r'^statskit_kpi_log_lines_total\{result="accepted"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def wait_accepted(server, count, timeout=30.0) -> int:
    deadline = time.monotonic() + timeout
    seen = accepted(server)
    while seen < count and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = accepted(server)
    time.sleep(0.5)  # a second tailer, if there were one, would have double counted by now
    return accepted(server)


class Writer:
    """Caddy's side: numbered lines, each one home visit, some with multi-byte UTF-8."""

    def __init__(self, folder):
        self.folder = folder
        self.n = 0

    def lines(self, count) -> bytes:
        out = []
        for _ in range(count):
            out.append(caddy(T0 + 10 * self.n, headers={"X-Note": ["déjà vu ☃ 🦊"]} if self.n % 3 else {}))
            self.n += 1
        return b"".join(out)

    def append(self, name, data):
        with open(self.folder / name, "ab") as handle:
            handle.write(data)


def test_every_complete_line_counted_once_through_rotation_restart_and_kill(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"STATSKIT_KPI_ENABLED": "true", "REVERSE_PROXY_LOGS_LOCATION": str(logs),
           "PACKAGE_CONF_FILE": str(write_packages(tmp_path)), "STATSKIT_KPI_POLL_INTERVAL": "0.1",
           "STATSKIT_KPI_LOCK_RETRY": "0.3", "STATSKIT_KPI_INACTIVITY": "1d"}
    caddy_log = "caddy_access_logs.json"
    w = Writer(logs)
    server = StatskitServer(tmp_path / "data", workers=2, env=env)
    try:
        server.start()
        partial = w.lines(1)
        w.append(caddy_log, w.lines(100) + partial[:30])
        assert wait_accepted(server, 100) == 100  # the partial line waits

        w.append(caddy_log, partial[30:] + w.lines(49))
        os.rename(logs / caddy_log, logs / "caddy_access_logs-2024-05-06T10-30-00.000.json")  # Caddy's roll
        w.append(caddy_log, w.lines(50))
        assert wait_accepted(server, 200) == 200

        server.stop()  # SIGTERM: a graceful stop
        w.append(caddy_log, w.lines(40))
        server.start()
        assert wait_accepted(server, 240) == 240

        server.kill()  # SIGKILL, master and workers: a power cut for the processes
        shutil.copy(logs / caddy_log, logs / "caddy_access_logs.json.1")  # logrotate copytruncate
        with open(logs / caddy_log, "r+b") as handle:
            handle.truncate(0)
        w.append(caddy_log, w.lines(60))
        server.start()
        assert wait_accepted(server, 300) == 300

        (logs / "caddy_access_logs-2024-05-06T10-30-00.000.json").unlink()
        w.append(caddy_log, caddy(ts(2024, 5, 6, 13, 0)))  # closes the last hour of visits
        assert wait_accepted(server, 301) == 301
        got = requests.get(server.url + "/api/v1/kpis/2001/values",
                           params={"agg_kind": "D", "agg_value": "2024-05-06"}, timeout=10)
        assert got.status_code == 200
        assert got.json()["value"] == {"items": [{"package": "Wikipédia", "visits": 300}], "totalVisits": 300}
        assert requests.get(server.url + "/api/v1/aggregations/DX", timeout=10).status_code == 422
    finally:
        server.stop()
        server.kill()
