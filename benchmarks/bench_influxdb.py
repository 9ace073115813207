"""Events into a real InfluxDB 1.6.7: through statskit vs the same points posted directly, one run.

    python benchmarks/bench_influxdb.py [--total 1000000] [--clients 4]

(a) direct: ``--total`` points as line protocol, ``POST /write`` in batches of 5000 from two
    connections, each point its own timestamp: the points statskit writes for the same events
    (the server adds a ``now`` field to each v1 event, as stats-service did; InfluxDB takes
    ~10% fewer points/s with it than without).
(b) statskit: the same number of events as JSON, ``POST /log/events`` in batches of 500 from
    ``--clients`` connections to ``statskit-server`` (gunicorn, 2 sync workers, ``--sinks influxdb``,
    api v1), timed until ``SELECT count(event_id)`` in InfluxDB sees every one of them: the rate
    includes the sink's batching, its flush interval and InfluxDB's own work.

Both counts are read from InfluxDB, so a point lost or overwritten shows as a shortfall, never
as speed. Target: (b) at least half of (a). Bounded in count and time (each phase gives up after
``--max-seconds``); loopback only; every server stopped by PID.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from gunicorn_server import StatskitServer  # noqa: E402
from servers_influx import InfluxDB1  # noqa: E402
from statskit.events import parse_items  # noqa: E402
from statskit.sinks.lineprotocol import to_lines  # noqa: E402
from report import record  # noqa: E402

DIRECT_BATCH = 5000
EVENT_BATCH = 500
T0_NS = 1_795_341_600 * 10**9


def event_dicts(n: int) -> List[dict]:
    """Page views as a browser tracker sends them: 97 users, 13 pages."""
    return [{"uid": f"user-{i % 97}", "event": "page_view", "path": f"/p/{i % 13}", "ms": i} for i in range(n)]


def count(influx: InfluxDB1, db: str) -> int:
    result = influx.query('SELECT count("event_id") FROM "analytics"', db=db)["results"][0]
    series = result.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def run_parallel(url: str, path: str, bodies: List[bytes], workers: int, headers: Dict[str, str],
                 ok: Callable[[int, bytes], bool]) -> None:
    """POST ``bodies`` to ``url + path`` from ``workers`` threads, one keep-alive connection each.

    http.client rather than requests: the load generator shares the machine's cores with the
    servers it measures, and requests cost ~4x the CPU per call. ``ok(status, body)`` checks
    every answer; the first failure stops all threads and is raised."""
    parts = urlsplit(url)
    lock = threading.Lock()
    pending = list(reversed(bodies))
    errors: List[BaseException] = []

    def work() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            while not errors:
                with lock:
                    if not pending:
                        return
                    body = pending.pop()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                    if not ok(resp.status, answer):
                        raise RuntimeError(f"POST {path} answered {resp.status}: {answer[:200]!r}")
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def wait_for_count(influx: InfluxDB1, db: str, total: int, deadline: float) -> int:
    seen = count(influx, db)
    while seen < total and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = count(influx, db)
    return seen


def cpu_seconds(pids: List[int]) -> float:
    """User + system CPU time of ``pids`` (Linux /proc; 0.0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(pid: int) -> List[int]:
    """Every process below ``pid`` (statskit-server runs gunicorn, whose workers are its children)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def direct(influx: InfluxDB1, total: int, max_seconds: float) -> float:
    """Points/s InfluxDB stores when given line protocol straight away."""
    influx.create_database("direct")
    # One batch of lines, then copies of it with later timestamps: every point its own time,
    # so nothing is overwritten and every point is counted (and 1M Events need not be built).
    events = parse_items(event_dicts(DIRECT_BATCH), stamp_now=True)
    for i, event in enumerate(events):
        event.time_ns = i
    heads = [line.rsplit(" ", 1)[0] for line in to_lines(events)]
    bodies = ["\n".join(f"{head} {T0_NS + start + i}" for i, head in enumerate(heads)).encode()
              for start in range(0, total, DIRECT_BATCH)]
    cpu = cpu_seconds([influx.pid])
    started = time.monotonic()
    run_parallel(influx.url, "/write?db=direct&precision=ns", bodies, 2, {"Content-Type": "text/plain"},
                 lambda status, _: status == 204)
    seen = wait_for_count(influx, "direct", total, started + max_seconds)
    elapsed = time.monotonic() - started
    print(f"  direct: {total:,} points in {elapsed:.1f} s; CPU seconds: influxd {cpu_seconds([influx.pid]) - cpu:.1f}")
    if seen != total:
        raise RuntimeError(f"direct: InfluxDB holds {seen} of {total} points after {elapsed:.0f} s")
    return total / elapsed


def through_statskit(influx: InfluxDB1, total: int, clients: int, max_seconds: float, workdir: Path) -> float:
    """Events/s from ``POST /log/events`` until InfluxDB holds every one."""
    env = {"INFLUXDB_API": "v1", "INFLUXDB_URL": influx.url, "INFLUXDB_DB": "statskit"}
    body = json.dumps(event_dicts(EVENT_BATCH)).encode()  # the server gives each event its id and time
    requests_needed = total // EVENT_BATCH
    with StatskitServer(workdir, workers=2, args=["--sinks", "influxdb"], env=env) as server:
        headers = {"Content-Type": "application/json", **server.headers(["write"])}
        taken = f'"count":{EVENT_BATCH},'.encode()
        deadline = time.monotonic() + 30
        while len(descendants(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # /ping answered from one worker; the other may still be starting
        pids = [server.pid, *descendants(server.pid)]
        cpu = cpu_seconds(pids), cpu_seconds([influx.pid])
        started = time.monotonic()
        run_parallel(server.url, "/log/events", [body] * requests_needed, clients, headers,
                     lambda status, answer: status == 200 and taken in answer)
        accepted = time.monotonic() - started
        seen = wait_for_count(influx, "statskit", requests_needed * EVENT_BATCH, started + max_seconds)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pids) - cpu[0], cpu_seconds([influx.pid]) - cpu[1]
        metrics = requests.get(server.url + "/metrics", timeout=10).text
    dropped = [line for line in metrics.splitlines() if line.startswith("statskit_sink_dropped_total")]
    print(f"  statskit accepted {requests_needed * EVENT_BATCH:,} events in {accepted:.1f} s; "
          f"InfluxDB held them all after {elapsed:.1f} s; drops: {dropped or 'none'}; "
          f"CPU seconds: statskit {cpu[0]:.1f} ({cpu[0] / seen * 1e6:.0f} us an event), influxd {cpu[1]:.1f}")
    if seen != requests_needed * EVENT_BATCH:
        raise RuntimeError(f"statskit: InfluxDB holds {seen} of {requests_needed * EVENT_BATCH} events "
                           f"after {elapsed:.0f} s")
    return seen / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=1_000_000, help="points (and events) per phase")
    parser.add_argument("--clients", type=int, default=4, help="connections posting to statskit")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="give up a phase after this long")
    args = parser.parse_args()
    total = max(DIRECT_BATCH, args.total - args.total % DIRECT_BATCH)
    with tempfile.TemporaryDirectory() as tmp, InfluxDB1(Path(tmp) / "influx") as influx:
        direct_rate = direct(influx, total, args.max_seconds)
        print(f"InfluxDB 1.6.7 direct line protocol ({DIRECT_BATCH} per /write): {direct_rate:,.0f} points/s")
        statskit_rate = through_statskit(influx, total, args.clients, args.max_seconds, Path(tmp) / "statskit")
    print(f"through statskit (POST /log/events x{EVENT_BATCH} -> influxdb sink, v1): {statskit_rate:,.0f} events/s")
    ratio = statskit_rate / direct_rate
    record(f"{total:,} events end to end into InfluxDB 1.6.7 vs raw line protocol", statskit_rate,
           baseline=direct_rate, unit="events/s", goal=0.5)
    print(f"ratio {ratio:.2f} (target >= 0.5){'' if ratio >= 0.5 else '  BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
