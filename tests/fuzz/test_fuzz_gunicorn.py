"""The fuzz cases through the real server: a few hundred hostile requests to every route of
statskit-server under gunicorn (2 workers, every feature on), with no 5xx and no worker
restarted (the master's children keep their PIDs; a worker killed by a crash or a timeout
would be replaced by a new one)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_app import METHODS, PACKAGES_YML, build_app, routes
from fuzz_strategies import Case, requests_for
from gunicorn_server import StatskitServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")]

CASES = int(os.environ.get("STATSKIT_FUZZ_E2E_CASES") or 300)
BUDGET = 60.0  # seconds for all the cases; later ones are skipped (and counted) past it


def config(folder: Path) -> Path:
    """The ini of fuzz_app.settings_for, for the real server."""
    (folder / "proxy-logs").mkdir(parents=True, exist_ok=True)
    (folder / "packages.yml").write_text(PACKAGES_YML, encoding="utf-8")
    ini = folder / "fuzz.ini"
    ini.write_text(f"""\
[sinks]
enabled = sqlite, prometheus
[limits]
max_body_bytes = 20000
max_event_bytes = 4000
max_batch_events = 50
[grafana]
require_token = true
cors_origins = https://grafana.test
[oneshot]
require_token = true
require_scrape_token = true
[kpi]
enabled = true
processing_disabled = true
logs_dir = {folder / "proxy-logs"}
packages_file = {folder / "packages.yml"}
dashboard_at_root = true
allowed_origins = *
[telemetry]
enabled = true
require_token = true
bind = 127.0.0.1:{free_port()}
""", encoding="utf-8")
    return ini


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[StatskitServer]:
    folder = tmp_path_factory.mktemp("fuzz-e2e")
    with StatskitServer(folder / "data", workers=2, args=["--config", str(config(folder))]) as running:
        yield running


def all_routes(folder: Path) -> List[Tuple[Tuple[str, ...], Tuple[str, ...], Tuple[str, ...]]]:
    app = build_app(folder)
    try:
        return [(r.templates, r.methods, r.fields) for r in routes(app)]
    finally:
        app.statskit.close(1.0)


def send(port: int, case: Case) -> int:
    """The case as raw bytes on a new connection (a client library would refuse or fix the
    odd headers); the answer's status."""
    target = case.path + ("?" + case.query if case.query else "")
    # Our own Content-Length (a longer one than the body would make the server wait for it).
    head = "".join(f"{k}: {v.strip()}\r\n" for k, v in case.headers.items() if k != "Content-Length")
    request = (f"{case.method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{head}"
               f"Content-Length: {len(case.body)}\r\n\r\n").encode("latin-1") + case.body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_fuzz_cases_through_gunicorn_restart_no_worker(server, tmp_path):
    table = all_routes(tmp_path / "routes")
    before = server.worker_pids()
    assert len(before) >= 2, before
    deadline = time.monotonic() + BUDGET
    seen: List[Tuple[str, str, int]] = []
    failures: List[str] = []
    cases = st.sampled_from(table).flatmap(lambda r: requests_for(r[0], r[1], METHODS, r[2]))

    @settings(max_examples=CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(cases)
    def fuzz(case: Case) -> None:
        if time.monotonic() > deadline:
            return
        status = send(server.port, case)
        seen.append((case.method, case.path, status))
        if status >= 500:
            failures.append(f"{status} {case!r}")

    fuzz()
    assert failures == []
    assert len(seen) >= min(CASES, 100), f"only {len(seen)} cases sent within {BUDGET} s"
    assert server.worker_pids() == before, f"workers restarted:\n{server.tail()}"
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    assert "WORKER TIMEOUT" not in server.tail(200) and "Traceback" not in server.tail(200), server.tail(60)
