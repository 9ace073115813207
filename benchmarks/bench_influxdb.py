"""Events into a real InfluxDB 1.6.7: through statskit vs the same points posted directly, one run.

    python benchmarks/bench_influxdb.py [--duration 5]

Baseline: wrk posts batches of 500 points as line protocol to InfluxDB's ``/write``.
statskit: wrk posts the same 500 events as JSON to ``POST /log/events`` of ``statskit-server``
(2 sync workers, ``--sinks influxdb``, api v1); the rate counts the time until InfluxDB has
taken every accepted event (``statskit_sink_written_total`` equals the events accepted).
Target: statskit at least half the direct rate. Loopback only; everything stopped by PID.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from harness import Scenario, wrk, _event_batch  # noqa: E402
from gunicorn_server import StatskitServer  # noqa: E402
from servers import InfluxDB1  # noqa: E402
from statskit.events import parse_items  # noqa: E402
from statskit.sinks.lineprotocol import to_line  # noqa: E402

BATCH = 500


def written(server: StatskitServer) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(r'statskit_sink_written_total\{sink="influxdb"\} (\S+)', text)
    return float(match.group(1)) if match else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    body = _event_batch(BATCH)
    lines = "\n".join(to_line(e).rsplit(" ", 1)[0] for e in parse_items(__import__("json").loads(body)))
    with tempfile.TemporaryDirectory() as tmp, InfluxDB1(Path(tmp) / "influx") as influx:
        influx.create_database("bench")
        direct = Scenario("direct", "POST", "/write?db=bench", body=lines.encode(), headers={"Content-Type": "text/plain"})
        direct_rate = wrk(influx.url, direct, {}, args.duration, 8, Path(tmp)) * BATCH

        env = {"INFLUXDB_API": "v1", "INFLUXDB_URL": influx.url, "INFLUXDB_DB": "bench_statskit"}
        with StatskitServer(Path(tmp) / "statskit", workers=2, args=["--sinks", "influxdb"], env=env) as server:
            scenario = Scenario("statskit", "POST", "/log/events", body=body, auth=True, events_per_request=BATCH)
            started = time.monotonic()
            rate = wrk(server.url, scenario, {"Authorization": f"Token {server.token()}"}, args.duration, 8, Path(tmp))
            accepted = round(rate * args.duration) * BATCH  # wrk's rate x its duration, rounded to requests
            deadline = time.monotonic() + 120
            done = written(server)
            while done < accepted * 0.999 and time.monotonic() < deadline:
                time.sleep(0.2)
                done = written(server)
            elapsed = time.monotonic() - started
        statskit_rate = done / elapsed
    print(f"InfluxDB 1.6.7 direct line protocol: {direct_rate:,.0f} points/s")
    print(f"through statskit (POST /log/events -> influxdb sink): {statskit_rate:,.0f} events/s "
          f"({done:,.0f} written in {elapsed:.1f} s)")
    print(f"ratio {statskit_rate / direct_rate:.2f} (target >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
