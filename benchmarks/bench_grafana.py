"""Grafana panel sessions: /metrics render time and memory per cached session, with 100,000 sessions.

    python benchmarks/bench_grafana.py                 # 100,000 sessions, 5 rounds
    python benchmarks/bench_grafana.py --sessions 20000 --rounds 3

For each cache backend (memory; SQLite, what gunicorn workers share) the script applies one
start and three heartbeats for each of ``sessions`` sessions through the library (``SessionTracker``
in batches, as the server's background thread does), then measures:

* **render**: ``GET /metrics`` for the grafana_analytics_* families (``GrafanaMetrics`` +
  ``render``), median of ``rounds``. Series come from the counters, not from the cache, so what
  matters is the number of distinct label sets: "realistic" spreads the sessions over 400 users x
  25 dashboards (at most 10,000 series), "worst case" gives every session its own user (100,000
  series per family).
* **memory per cached session**: the bytes the memory cache holds (its dict, keys and packed
  records, by ``sys.getsizeof``; label sets counted apart, since the counters hold the same
  tuples), and the resident set growth (``/proc/self/statm``) while the cache and the counters
  fill, divided by the number of sessions. The target is under 300 bytes of resident memory per
  session for the in-process cache; the SQLite cache keeps sessions in the database file, so the
  server holds ~0 per session (SQLite's page cache is capped at 32 MiB per connection whatever
  the number of sessions).
* **apply**: payloads applied per second in batches of 500 (decode excluded).

The HTTP rate of ``POST /write`` against bare Falcon is the "/write heartbeat" scenario of
``benchmarks/harness.py``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import _panel_heartbeat  # noqa: E402
from report import record  # noqa: E402
from statskit.grafana.metrics import GrafanaMetrics  # noqa: E402
from statskit.metrics import Scrape, render  # noqa: E402
from statskit.grafana import decode_payload  # noqa: E402
from statskit.grafana import SessionTracker  # noqa: E402
from statskit.state.memory import MemoryState  # noqa: E402
from statskit.grafana.stores import MemorySessionCache, SQLiteSessionCache  # noqa: E402
from statskit.state.sqlite import SQLiteState, database_path  # noqa: E402

HEARTBEAT = json.loads(_panel_heartbeat())  # the same heartbeat as the /write HTTP scenario


def payloads(n: int, worst_case: bool) -> List[List[Any]]:
    """For each session: a start and three heartbeats (decoded once, reused for every backend)."""
    sessions = []
    for i in range(n):
        user = f"user-{i}" if worst_case else f"user-{i % 400}"
        dashboard = (i // 400) % 25  # with i % 400 users: 10,000 (user, dashboard) pairs
        body = json.loads(json.dumps(HEARTBEAT))
        body["uuid"] = f"{i:08x}-7d4a-4e55-9a0b-2c6d8e1f4a77"
        body["dashboard"] = {"name": f"Dashboard {dashboard}", "uid": f"dash-{dashboard}"}
        body["user"].update(login=user, name=user.title(), email=f"{user}@example.com")
        steps = []
        for kind, t in (("start", 0), ("heartbeat", 60), ("heartbeat", 120), ("heartbeat", 180)):
            body.update(type=kind, time=1_700_000_000 + t)
            steps.append(decode_payload(json.dumps(body).encode()))
        sessions.append(steps)
    return sessions


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill(tracker: SessionTracker, sessions: List[List[Any]], batch: int = 500,
         halfway: Callable[[], None] = lambda: None) -> float:
    """Apply every payload, ``batch`` sessions at a time, each step across the batch (sessions
    interleave in reality); ``halfway`` is called when half the sessions exist."""
    started = time.perf_counter()
    for i in range(0, len(sessions), batch):
        if i == len(sessions) // 2:
            paused = time.perf_counter()
            halfway()
            started += time.perf_counter() - paused
        chunk = sessions[i:i + batch]
        for step in range(4):
            tracker.process_many([(s[step], 1_700_000_000.0 + step) for s in chunk])
    return 4 * len(sessions) / (time.perf_counter() - started)


def time_render(state: Any, rounds: int) -> Tuple[float, int]:
    source = GrafanaMetrics(state)
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        body, _ = render([source], Scrape("bench"))
        times.append(time.perf_counter() - started)
        size = len(body)
    return statistics.median(times), size


def time_floor(state: Any, rounds: int) -> float:
    """prometheus_client's own render of the same samples from plain families (the library floor:
    what rendering through ``Metric`` objects costs at best)."""
    from prometheus_client.core import Metric
    from prometheus_client.exposition import generate_latest

    from statskit.exposition import TextFamily

    families = []
    for family in GrafanaMetrics(state).collect(Scrape("bench", consume=False)):
        if isinstance(family, TextFamily):
            plain = Metric(family.name, family.documentation, family.type)
            for line in family.lines:
                head, value = line.rsplit(" ", 1)
                name, _, labels = head.partition("{")
                pairs = [p.split("=", 1) for p in labels.rstrip("}").split('",') if p]
                plain.add_sample(name, {k: v.strip('"') for k, v in pairs}, float(value))
            families.append(plain)
        else:
            families.append(family)

    class Plain:
        def collect(self) -> List[Any]:
            return families

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        generate_latest(Plain())  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def backends(tmp: str) -> Dict[str, Callable[[], Tuple[Any, Any]]]:
    def memory() -> Tuple[Any, Any]:
        state = MemoryState()
        return state, MemorySessionCache()

    def sqlite() -> Tuple[Any, Any]:
        path = database_path(tempfile.mkdtemp(dir=tmp))
        state = SQLiteState(path)
        return state, SQLiteSessionCache(state.db)

    return {"memory": memory, "sqlite": sqlite}


def measure(case: str, backend: str, n: int, rounds: int, tmp: str) -> str:
    """One case on one backend, in this (fresh) process: resident memory deltas are clean."""
    sessions = payloads(n, worst_case=case == "worst case")
    state, cache = backends(tmp)[backend]()
    tracker = SessionTracker(state, cache)
    gc.collect()
    rss0 = rss()
    half: List[int] = []
    rate = fill(tracker, sessions, halfway=lambda: (gc.collect(), half.append(rss())))
    gc.collect()
    rss1 = rss()  # the payloads are still alive (built before rss0): the growth is cache + counters
    del sessions
    cached = len(cache)
    if backend == "memory":
        records, labels = _cache_bytes(cache)
        memory = (f"cache {records / cached:.0f} B/session + label sets {labels / cached:.0f} B/session "
                  f"(the counters' own tuples), RSS +{(rss1 - rss0) / cached:.0f} B/session")
    else:
        memory = (f"RSS +{(half[0] - rss0) / 2**20:.0f} MiB at {cached // 2:,} sessions, +{(rss1 - rss0) / 2**20:.0f} "
                  f"MiB at {cached:,} (SQLite's page cache, capped at 32 MiB, and the decoded label sets; "
                  f"the sessions are on disk, {_db_size(state) / cached:.0f} B/session in the file)")
    seconds, size = time_render(state, rounds)
    floor = time_floor(state, rounds)
    series = sum(1 for row in state.counters("grafana_analytics_sessions") if row[0] == "grafana_analytics_sessions")
    state.close()
    what = f"/metrics render, {cached:,} sessions, {series:,} series/family, {case}, {backend} cache"
    record(f"{what}, vs prometheus_client", seconds, baseline=floor, unit="s", goal=0.7, goal_kind="max")
    record(what, seconds, unit="s", goal=1.0, goal_kind="max")
    if backend == "memory":
        record(f"resident memory per cached session, {case}, memory cache", (rss1 - rss0) / cached, unit="B",
               goal=300, goal_kind="max")
    return (f"{case:10} {backend:6}: {cached:,} cached sessions, {series:,} series/family; "
            f"/metrics render {seconds * 1000:.0f} ms ({size / 1e6:.1f} MB) = {seconds / floor:.2f} of prometheus_client's "
            f"render of the same samples ({floor * 1000:.0f} ms; goal <= 0.7); {memory}; apply {rate:,.0f} payloads/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.one:
            print(measure(args.one[0], args.one[1], args.sessions, args.rounds, tmp), flush=True)
            return 0
        print(f"{args.sessions:,} sessions x 4 payloads (start, 3 heartbeats), each case in a fresh process",
              flush=True)
        for case in ("realistic", "worst case"):
            for backend in ("memory", "sqlite"):
                subprocess.run([sys.executable, __file__, "--sessions", str(args.sessions), "--rounds",
                                str(args.rounds), "--one", case, backend], check=True, timeout=1800)
    print("target: under 300 B resident per session in the server (memory cache); SQLite/Redis: ~0 in the server")
    return 0


def _cache_bytes(cache: MemorySessionCache) -> Tuple[int, int]:
    """Bytes the memory cache holds: (its dict with keys and packed records, the interned label
    sets with their index)."""
    records = sys.getsizeof(cache._sessions)
    records += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in cache._sessions.items())
    labels = sys.getsizeof(cache._label_ids) + sys.getsizeof(cache._labels)
    for label_set in cache._labels:
        labels += sys.getsizeof(label_set) + sum(sys.getsizeof(p) + sys.getsizeof(p[1]) for p in label_set)
    return records, labels


def _db_size(state: SQLiteState) -> int:
    state.db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(state.db.path)


if __name__ == "__main__":
    sys.exit(main())
