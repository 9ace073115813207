"""The Redis state backend against the SQLite one, in the same run (a real redis-server on loopback).

    python benchmarks/bench_redis.py              # HTTP rates (2 workers) and 100,000 cached sessions
    python benchmarks/bench_redis.py --quick      # shorter load, 20,000 sessions

* **HTTP**: ``POST /log/event``, ``/write`` heartbeat and ``/event`` through real gunicorn with
  ``--state redis`` and with the default SQLite state, each beside bare Falcon measured in the same
  round (``harness.py``'s scenarios): printed as redis/sqlite and as each against bare Falcon.
  Goal: the Redis backend within 0.9x of the SQLite backend's request rate.
* **/metrics with cached sessions**: the sessions applied through the library to each backend's
  cache (the generic keyed-records cache on Redis, the tuned one on SQLite), then the
  ``grafana_analytics_*`` families rendered from that backend's counters. Goal: under 0.5 s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests"), str(HERE)]

from bench_grafana import fill, payloads, time_render  # noqa: E402
from harness import SCENARIOS, Scenario, run  # noqa: E402
from servers import Redis  # noqa: E402
from statskit.grafana import SessionTracker  # noqa: E402
from statskit.grafana.stores import open_session_cache  # noqa: E402
from statskit.state import open_backend  # noqa: E402
from report import record  # noqa: E402

SINGLE = [s for s in SCENARIOS if s.events_per_request == 1]


def http(redis_url: str, quick: bool) -> None:
    redis_args = ["--state", "redis", "--redis-url", redis_url]
    for scenario in SINGLE:
        both = [Scenario(f"{scenario.name} [{name}]", scenario.method, scenario.path, scenario.body, scenario.auth,
                         scenario.headers, server_args=scenario.server_args + extra)
                for name, extra in (("sqlite", []), ("redis", redis_args))]
        sqlite, redis = run(both, duration=2.0 if quick else 4.0, rounds=1 if quick else 3)
        record(f"{scenario.name}: redis vs sqlite backend", redis["statskit_req_s"], baseline=sqlite["statskit_req_s"],
               unit="req/s", goal=0.9)
        print(f"  -> redis / sqlite: {redis['statskit_req_s'] / sqlite['statskit_req_s']:.2f} (goal >= 0.9)",
              flush=True)


def sessions(redis_url: str, n: int, rounds: int) -> None:
    rendered = {}
    for name in ("sqlite", "redis"):
        with tempfile.TemporaryDirectory() as tmp:
            state: Any = open_backend(name, tmp, 1.0, SimpleNamespace(redis_url=redis_url, redis_prefix="bench"))
            tracker = SessionTracker(state, open_session_cache(state, 0, 0.0))
            rate = fill(tracker, payloads(n, worst_case=False))
            state.flush()
            seconds, size = time_render(state, rounds)
            rendered[name] = seconds
            against = " vs from sqlite" if name == "redis" else ""
            record(f"/metrics render, {n:,} cached sessions from {name}{against}", seconds,
                   baseline=rendered.get("sqlite") if against else None, unit="s", goal=0.5, goal_kind="max",
                   goal_on="value")
            print(f"{name:6}: {n:,} cached sessions; /metrics render {seconds * 1000:.0f} ms ({size / 1e6:.1f} MB; "
                  f"goal < 500 ms); apply {rate:,.0f} payloads/s", flush=True)
            state.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp) / "redis")
        redis.start()
        try:
            http(redis.url, args.quick)
            sessions(redis.url, 20_000 if args.quick else 100_000, 3)
        finally:
            redis.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
