"""One-shot events: time to render a scrape that hands out 10,000 pending events.

    python benchmarks/bench_oneshot.py            # library (memory, SQLite) and through the app
    python benchmarks/bench_oneshot.py --rounds 9 --pending 10000

Each round posts ``pending`` events for one registered scraper, then times the scrape that
collects them: at the library level (``OneShot`` + ``render``, memory and SQLite queues) and through
the Falcon app (``GET /metrics`` with falcon.testing, SQLite state, as a gunicorn worker runs it).
Distinct label sets are the heavy case (every event becomes a sample in that one scrape); with
all events on one series only the first goes out per scrape (one sample per series per scrape),
so that case measures reading the backlog. Medians of ``rounds`` are printed.

The HTTP rate of ``POST /event`` against bare Falcon is in ``benchmarks/harness.py``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from falcon import testing  # noqa: E402

from statskit.config import load_settings  # noqa: E402
from statskit.metrics import Scrape, render  # noqa: E402
from statskit.oneshot import OneShot, QueueLimits, open_queue  # noqa: E402
from statskit.state.memory import MemoryState  # noqa: E402
from statskit.state.sqlite import SQLiteState  # noqa: E402
from statskit_server import create_app  # noqa: E402
from report import record  # noqa: E402


def _labels(i: int, distinct: bool) -> list:
    if distinct:
        return [("type", "deploy"), ("service", f"svc-{i % 50}"), ("build", str(i))]
    return [("type", "deploy"), ("service", "api")]


def bench_library(backend: str, pending: int, rounds: int, distinct: bool) -> List[float]:
    times = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            state = MemoryState() if backend == "memory" else SQLiteState(str(Path(tmp) / "statskit.db"))
            oneshot = OneShot(open_queue(state, QueueLimits(max_pending=pending)), state)
            render([oneshot], Scrape("prom-a"))
            for i in range(pending):
                oneshot.post(_labels(i, distinct))
            oneshot.queue.flush(10.0)  # posted well before the scrape, as in real life (50 ms is enough)
            started = time.perf_counter()
            body, _ = render([oneshot], Scrape("prom-a"))
            times.append(time.perf_counter() - started)
            expected = pending if distinct else 1
            assert body.count(b"\nevents_to_metrics{") == expected, "scrape did not hand out the backlog"
            state.close()
    return times


def bench_app(pending: int, rounds: int, distinct: bool) -> List[float]:
    times = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(env={}, overrides={"server.data_dir": tmp, "auth.secret_key": ["bench"],
                                                        "sinks.enabled": [], "oneshot.max_pending": pending})
            app = create_app(settings)
            client = testing.TestClient(app)
            client.simulate_get("/metrics", params={"scraper": "prom-a"})
            oneshot = next(s for s in app.statskit.metric_sources if isinstance(s, OneShot))
            for i in range(pending):  # library posts: the HTTP path is the harness's job
                oneshot.post(_labels(i, distinct))
            oneshot.queue.flush(10.0)
            started = time.perf_counter()
            resp = client.simulate_get("/metrics", params={"scraper": "prom-a"})
            times.append(time.perf_counter() - started)
            assert resp.status_code == 200 and resp.text.count("\nevents_to_metrics{") == (pending if distinct else 1)
            app.statskit.close(1.0)
    return times


def bench_floor(pending: int, rounds: int) -> List[float]:
    """prometheus_client's render of the same 10,000 samples from a plain registry: the floor."""
    from prometheus_client.core import Metric
    from prometheus_client.exposition import generate_latest

    family = Metric("events_to_metrics", "Events registered generically to the conversion service", "gauge")
    for i in range(pending):
        family.add_sample("events_to_metrics", dict(sorted(_labels(i, True))), 1.0)

    class Plain:
        def collect(self) -> list:
            return [family]

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        generate_latest(Plain())  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return times


def _report(name: str, times: List[float]) -> None:
    print(f"{name}: median {statistics.median(times) * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    runs: List[tuple] = []
    for distinct in (True, False):
        kind = f"{args.pending:,} pending, " + ("distinct series" if distinct else "one series")
        runs.append((f"library, memory queue, {kind}", lambda d=distinct: bench_library("memory", args.pending,
                                                                                           args.rounds, d)))
        runs.append((f"library, SQLite queue, {kind}", lambda d=distinct: bench_library("sqlite", args.pending,
                                                                                           args.rounds, d)))
        runs.append((f"GET /metrics (app, SQLite), {kind}", lambda d=distinct: bench_app(args.pending, args.rounds, d)))
    results = {}
    for name, run in runs:
        results[name] = run()
        _report(name, results[name])
    floor = bench_floor(args.pending, args.rounds)
    _report(f"prometheus_client alone, the same {args.pending:,} samples (the floor)", floor)
    for name in results:
        distinct = "distinct" in name
        record(name, statistics.median(results[name]) * 1000, baseline=statistics.median(floor) * 1000 if distinct
               else None, unit="ms", goal=0.4 if distinct else None, goal_kind="max")
    for name in [n for n in results if "distinct" in n]:
        print(f"  {name}: {statistics.median(results[name]) / statistics.median(floor):.2f} of the floor "
              "(goal <= 0.4; the scrape also reads and commits the queue)", flush=True)


if __name__ == "__main__":
    main()
