"""HTTP load: the same wrk load at a bare Falcon app and at statskit, under identical gunicorn settings.

The machines are shared and noisy, so absolute rates mean little: every scenario runs the
baseline and statskit alternately (``rounds`` times each) and reports the ratio of the medians.

A scenario is a method, a path, a body and headers::

    Scenario("single event", "POST", "/log/event", body=b'{"uid":"u","event":"e"}', auth=True)

Features add theirs to ``SCENARIOS`` (or pass their own list to :func:`run`). Everything binds
127.0.0.1, every load run is bounded by ``duration`` seconds, every server is stopped by PID.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from gunicorn_server import StatskitServer, free_port  # noqa: E402
from report import record  # noqa: E402
from statskit.config import load_settings  # noqa: E402

WORKERS = 2
# The baseline runs the worker configuration statskit runs by default (issue 16 compares the two
# under it): statskit's gthread worker and connection balance with as many threads
# (bare_conf.py), or gunicorn's sync worker for threads = 1.
DEFAULT_THREADS = load_settings(env={}).server.threads


@dataclass
class Scenario:
    name: str
    method: str
    path: str
    body: bytes = b""
    auth: bool = False
    headers: Dict[str, str] = field(default_factory=dict)
    events_per_request: int = 1
    server_args: List[str] = field(default_factory=list)
    target: Optional[float] = None  # minimum ratio to the baseline, printed beside the figure
    target_events_per_s: Optional[float] = None
    threads: int = DEFAULT_THREADS  # statskit's and the baseline's threads per worker (1 = sync workers)


def _event_batch(n: int) -> bytes:
    return json.dumps([{"uid": f"user-{i % 97}", "event": "page_view", "path": f"/p/{i % 13}", "ms": i}
                       for i in range(n)]).encode()


def _panel_heartbeat() -> bytes:
    """The analytics panel's heartbeat as it posts it (JSON.stringify: compact), with the fields of
    shared/spec/payloads/02_heartbeat.json: four dashboard variables, ~1.9 kB."""
    variables = [("datasource", "Data source", "datasource", False, ["Prometheus"]),
                 ("cluster", "Cluster", "query", False, ["prod-eu-1"]),
                 ("namespace", "", "query", True, ["kube-system", "monitoring"]),
                 ("interval", "Interval", "interval", False, [])]
    return json.dumps({
        "uuid": "3f2b9c1e-7d4a-4e55-9a0b-2c6d8e1f4a77", "type": "heartbeat", "hasFocus": True,
        "options": {"server": "http://analytics.example.internal:8080/write", "dashboard": "$__dashboard",
                    "showDetails": False, "postStart": True, "postHeartbeat": True, "heartbeatInterval": 60,
                    "heartbeatAlways": False, "postEnd": True, "flatten": False},
        "host": {"hostname": "grafana.example.com", "port": "", "protocol": "https:",
                 "buildInfo": {"version": "7.5.4", "commit": "615c153b3a", "env": "production", "edition": "Open Source"},
                 "licenseInfo": {"hasLicense": False, "expiry": 0, "stateInfo": ""}},
        "dashboard": {"name": "Kubernetes / Cluster Overview", "uid": "k8s-cluster-ov"},
        "user": {"isSignedIn": True, "id": 42, "login": "jdoe", "email": "jdoe@example.com", "name": "Jane Doe",
                 "lightTheme": False, "orgCount": 1, "orgId": 1, "orgName": "Main Org.", "orgRole": "Editor",
                 "isGrafanaAdmin": False, "timezone": "browser", "locale": "en-US", "hasEditPermissionInFolders": True},
        "variables": [{"name": n, "label": l, "type": t, "multi": m, "values": v} for n, l, t, m, v in variables],
        "timeRange": {"from": 1618782134, "to": 1618803734, "raw": {"from": "now-6h", "to": "now"}},
        "timeZone": "browser", "timeOrigin": 1618803700, "time": 1618803794,
    }, separators=(",", ":")).encode()


SCENARIOS: List[Scenario] = [
    Scenario("POST /log/event, one event, default sinks", "POST", "/log/event",
             body=b'{"uid": "user-1", "event": "signup", "plan": "pro"}', auth=True, target=0.8),
    # The other configuration: sync workers (only behind a buffering proxy: slow clients hold them).
    Scenario("POST /log/event, one event, sync workers (--threads 1)", "POST", "/log/event",
             body=b'{"uid": "user-1", "event": "signup", "plan": "pro"}', auth=True, threads=1,
             server_args=["--threads", "1"]),
    Scenario("POST /log/events, 500 events, default sinks", "POST", "/log/events",
             body=_event_batch(500), auth=True, events_per_request=500, target_events_per_s=100_000),
    # One-shot events (issue 4): labels in the query string, no body, as the original's curl example.
    Scenario("POST /event, one-shot event", "POST", "/event?type=deploy&service=api&value=2.5", target=0.8),
    # Grafana analytics panel (issue 3): a heartbeat as the panel posts it (no-cors: text/plain), applied to
    # its session, counted and logged on stdout (logfmt), default configuration (SQLite state).
    Scenario("POST /write, analytics panel heartbeat", "POST", "/write", body=_panel_heartbeat(),
             headers={"Content-Type": "text/plain;charset=UTF-8"}, target=0.8),
]


class BareServer:
    """gunicorn serving ``benchmarks/bare_app.py``: a Falcon app that answers 204 to anything."""

    def __init__(self, workers: int = WORKERS, threads: int = DEFAULT_THREADS) -> None:
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "BareServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(self.workers), "--threads", str(self.threads),
             *(["--worker-class", "statskit_server.worker.StatskitWorker", "--config", "bare_conf.py"]
               if self.threads > 1 else ["--worker-class", "sync"]),
             "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning", "bare_app:app"],
            cwd=str(ROOT / "benchmarks"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/ping", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("bare gunicorn did not start")

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(url: str, scenario: Scenario, headers: Dict[str, str], duration: float, connections: int,
        workdir: Path) -> float:
    """Requests per second that answered 2xx; fails loudly if any did not."""
    body_file = workdir / "body.bin"
    body_file.write_bytes(scenario.body)
    lines = [f'wrk.method = "{scenario.method}"']
    if scenario.body:
        lines.append(f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()')
    for name, value in {"Content-Type": "application/json", **scenario.headers, **headers}.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    script = workdir / "load.lua"
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s", "-s", str(script),
                          url + scenario.path], capture_output=True, text=True, timeout=duration + 30).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{scenario.name}: {bad.group(1)} non-2xx answers:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def run(scenarios: List[Scenario], duration: float = 4.0, rounds: int = 3, connections: int = 8,
        warmup: float = 1.0) -> List[dict]:
    """Medians of ``rounds`` alternating runs of bare Falcon and statskit, each on a fresh server
    given ``warmup`` seconds of the same load first (not measured): a server's first second
    (imports, caches, and where each worker's first connections land) swung single runs 3x."""
    if shutil.which("wrk") is None:
        raise SystemExit("benchmarks need wrk: apt-get install wrk")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for scenario in scenarios:
            bare_rates, kit_rates = [], []
            data_dir = workdir / re.sub(r"\W+", "_", scenario.name)
            server = StatskitServer(data_dir, workers=WORKERS, args=scenario.server_args)
            headers = {"Authorization": f"Token {server.token()}"} if scenario.auth else {}
            for _ in range(rounds):
                with BareServer(threads=scenario.threads) as bare:
                    if warmup > 0:
                        wrk(bare.url, scenario, headers, warmup, connections, workdir)
                    bare_rates.append(wrk(bare.url, scenario, headers, duration, connections, workdir))
                with server:
                    if warmup > 0:
                        wrk(server.url, scenario, headers, warmup, connections, workdir)
                    kit_rates.append(wrk(server.url, scenario, headers, duration, connections, workdir))
            bare_rate, kit_rate = statistics.median(bare_rates), statistics.median(kit_rates)
            result = {"scenario": scenario.name, "bare_req_s": round(bare_rate), "statskit_req_s": round(kit_rate),
                      "ratio": round(kit_rate / bare_rate, 3),
                      "statskit_events_s": round(kit_rate * scenario.events_per_request)}
            results.append(result)
            record(scenario.name, kit_rate, baseline=bare_rate, unit="req/s", goal=scenario.target)
            if scenario.target_events_per_s:
                record(f"{scenario.name}, events/s", kit_rate * scenario.events_per_request, unit="events/s",
                       goal=scenario.target_events_per_s)
            target = ""
            if scenario.target:
                target = f" (target >= {scenario.target})"
            if scenario.target_events_per_s:
                target = f" (target >= {scenario.target_events_per_s:,.0f} events/s)"
            print(f"{scenario.name}: bare {bare_rate:,.0f} req/s, statskit {kit_rate:,.0f} req/s, "
                  f"ratio {kit_rate / bare_rate:.2f}, {kit_rate * scenario.events_per_request:,.0f} events/s{target}",
                  flush=True)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="bare Falcon vs statskit under the same wrk load")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per scenario")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3, --quick 1)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only the scenarios whose name contains TEXT (repeatable)")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or any(text in s.name for text in args.only)]
    run(chosen, duration=2.0 if args.quick else 4.0, rounds=args.rounds or (1 if args.quick else 3))
