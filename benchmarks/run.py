"""Every benchmark in one run: ``python benchmarks/run.py [--quick]``.

Each script prints its own figures as ratios against a baseline measured in the same run
(the machines are shared and noisy; absolute times mean little). Every script is bounded in
time and stops the servers it starts by PID. ``--quick`` shortens the HTTP load runs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["harness.py", "bench_client.py", "bench_oneshot.py", "bench_grafana.py", "bench_influxdb.py", "bench_redis.py",
           "bench_kpi.py", "bench_durable.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter load runs")
    parser.add_argument("--only", nargs="*", help="script names to run (default: all present)")
    args = parser.parse_args()
    failed = []
    for name in args.only or SCRIPTS:
        path = HERE / name
        if not path.exists():
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        env_args = ["--quick"] if args.quick and name in ("harness.py", "bench_redis.py", "bench_durable.py") else []
        result = subprocess.run([sys.executable, str(path), *env_args], timeout=900)
        print(f"== {name}: exit {result.returncode} in {time.monotonic() - started:.0f} s\n", flush=True)
        if result.returncode:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
