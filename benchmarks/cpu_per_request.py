"""Where the CPU of a request goes: gunicorn workers and redis-server, SQLite state vs Redis state.

    python benchmarks/cpu_per_request.py                 # POST /event, 2 rounds
    python benchmarks/cpu_per_request.py --route /log/event --rounds 3

The same wrk load as ``harness.py`` (8 connections, default workers) at ``statskit-server`` with
the default SQLite state and with ``--state redis`` (a real redis-server on loopback), reading
each process's CPU time from ``/proc`` before and after. Printed per request: the workers' CPU,
redis-server's, and how many cores were busy. On a machine where Redis shares the cores with the
workers (as here), its CPU per request comes out of the workers' rate: the profile behind
``bench_redis.py``'s redis/sqlite ratio of ``POST /event``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests"), str(HERE)]

from gunicorn_server import StatskitServer  # noqa: E402
from harness import SCENARIOS, WORKERS, wrk  # noqa: E402
from servers import Redis  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(server: StatskitServer, redis: Redis, scenario, workdir: Path, duration: float) -> Dict[str, float]:
    headers = {"Authorization": f"Token {server.token()}"} if scenario.auth else {}
    wrk(server.url, scenario, headers, 1.0, 8, workdir)  # warm-up, not measured
    workers = server.worker_pids()
    before = {pid: cpu_seconds(pid) for pid in workers}
    redis_before, started = cpu_seconds(redis.pid), time.monotonic()
    rate = wrk(server.url, scenario, headers, duration, 8, workdir)
    elapsed = time.monotonic() - started
    requests = rate * duration
    worker_cpu = sum(cpu_seconds(pid) - before[pid] for pid in workers)
    redis_cpu = cpu_seconds(redis.pid) - redis_before
    return {"rate": rate, "workers_us": worker_cpu / requests * 1e6, "redis_us": redis_cpu / requests * 1e6,
            "busy": (worker_cpu + redis_cpu) / elapsed}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", default="/event", help="a single-event scenario of harness.py by path prefix")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args(argv)
    scenario = next(s for s in SCENARIOS if s.path.startswith(args.route) and s.events_per_request == 1)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis = Redis(workdir / "redis")
        redis.start()
        try:
            for r in range(args.rounds):
                for name, extra in (("sqlite", []), ("redis", ["--state", "redis", "--redis-url", redis.url])):
                    with StatskitServer(workdir / f"{name}-{r}", workers=WORKERS,
                                        args=scenario.server_args + extra) as server:
                        m = measure(server, redis, scenario, workdir, args.duration)
                    print(f"{scenario.name} [{name}]: {m['rate']:,.0f} req/s; CPU per request: workers "
                          f"{m['workers_us']:.0f} us, redis-server {m['redis_us']:.0f} us; "
                          f"{m['busy']:.2f} cores busy", flush=True)
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
