"""KPI feature: tailing throughput against a read-and-parse floor, and KPI API latency.

    python benchmarks/bench_kpi.py                   # 1,000,000 lines, a year of hourly data
    python benchmarks/bench_kpi.py --lines 200000    # quicker

Tailing: a Caddy access log of ``--lines`` lines (mixed packages, one line every 0.3 s, so
hours close and KPIs are recomputed as they would on a box) is processed by the real
``Processor`` (tailer + engine + one SQLite transaction per 1 MiB chunk) into a fresh kpi.db.
The floor is reading the same file in the same chunks and ``orjson``-parsing every line, in
the same run. Goal: at least 0.5 of the floor and 50,000 lines/s. The resident memory is
sampled at 25 %, 50 % and 100 % of the lines (it must stay flat).

API: a year of hourly records (8,760 hours, 8 packages) in kpi.db, then ``GET
/api/v1/aggregations`` and ``/api/v1/aggregations/{D,W,M,Y}`` through the Falcon app
(falcon.testing, as a gunicorn worker runs it) ``--requests`` times each: median and p99.
Goal: p99 under 20 ms.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "kpi")]

import orjson  # noqa: E402
from falcon import testing  # noqa: E402

from kpi_support import caddy, write_packages  # noqa: E402
from statskit.config import load_settings  # noqa: E402
from statskit.kpi.engine import Engine  # noqa: E402
from statskit.kpi.inputs import Generators, Input  # noqa: E402
from statskit.kpi.packages import load_packages  # noqa: E402
from statskit.kpi.runner import Processor  # noqa: E402
from statskit.kpi.store import SCHEMA  # noqa: E402
from statskit.kpi.tailer import Tailer  # noqa: E402
from statskit.state.sqlite import SQLiteDB  # noqa: E402
from statskit_server import create_app  # noqa: E402
from report import record  # noqa: E402

TARGETS = [("kiwix.box.test", "/content/wikipedia_fr_all/"), ("kiwix.box.test", "/content/wikipedia_fr_all/A/Paris"),
           ("kiwix.box.test", "/content/gutenberg_en/A/book"), ("files.box.test", "/"),
           ("files.box.test", "/doc.pdf"), ("edupi.box.test", "/api/documents/"), ("chat.box.test", "/room"),
           ("unknown.test", "/")]
CHUNK = 1 << 20


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_log(path: Path, lines: int) -> None:
    start = datetime(2024, 5, 6).timestamp()
    with open(path, "wb") as handle:
        batch = []
        for i in range(lines):
            host, uri = TARGETS[i % len(TARGETS)]
            method, status = ("POST", 201) if host == "edupi.box.test" else ("GET", 200)
            batch.append(caddy(start + 0.3 * i, host=host, uri=uri, method=method, status=status))
            if len(batch) == 10000:
                handle.write(b"".join(batch))
                batch = []
        handle.write(b"".join(batch))


def floor(path: Path) -> float:
    """Seconds to read ``path`` in chunks, split complete lines and orjson-parse each."""
    began = time.perf_counter()
    with open(path, "rb") as handle:
        rest = b""
        while True:
            data = handle.read(CHUNK)
            if not data:
                break
            data = rest + data
            end = data.rfind(b"\n")
            for line in data[:end].split(b"\n"):
                orjson.loads(line)
            rest = data[end + 1:]
    return time.perf_counter() - began


def tail(folder: Path, lines: int) -> tuple:
    db = SQLiteDB(str(folder / "kpi.db"))
    db.ensure_schema(SCHEMA)
    generators = Generators(load_packages(str(write_packages(folder))).packages)
    tailer = Tailer(str(folder / "logs"), "caddy_access_logs*.json", chunk_bytes=CHUNK)
    processor = Processor(db, tailer, generators, str(folder / "kpi.lock"), inactivity=1e9)
    assert processor.acquire()
    samples = {}
    marks = {lines // 4: "25%", lines // 2: "50%"}
    began = time.perf_counter()
    while processor.step():
        done = db.connection().execute("SELECT value FROM kpi_counter WHERE name = 'lines'").fetchone()[0]
        for mark, name in list(marks.items()):
            if done >= mark:
                samples[name] = rss_mib()
                del marks[mark]
    seconds = time.perf_counter() - began
    samples["100%"] = rss_mib()
    counted = db.connection().execute("SELECT value FROM kpi_counter WHERE name = 'lines'").fetchone()[0]
    processor.close(1)
    db.close()
    return seconds, counted, samples


def fill_year(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    db = SQLiteDB(str(data_dir / "kpi.db"))
    db.ensure_schema(SCHEMA)
    engine = Engine()
    start = datetime(2023, 5, 1)
    with db.transaction() as conn:
        engine.start(conn)
        for hour in range(24 * 366):
            at = start + timedelta(hours=hour)
            for p in range(8):
                package = f"Package {p}"
                engine.feed(conn, (at + timedelta(minutes=5 * p)).timestamp(),
                            [Input("home_visit", package), Input("request", package), Input("FILE_CREATED", package)])
        engine.snapshot(conn)
    db.close()


def api(folder: Path, requests: int) -> dict:
    fill_year(folder / "data")
    settings = load_settings(env={}, overrides={
        "state.backend": "memory", "sinks.enabled": [], "server.data_dir": str(folder / "data"),
        "kpi.enabled": True, "kpi.processing_disabled": True})
    app = create_app(settings)
    client = testing.TestClient(app)
    results = {}
    for path in ["/api/v1/aggregations"] + [f"/api/v1/aggregations/{k}" for k in "DWMY"]:
        times = []
        for _ in range(requests):
            began = time.perf_counter()
            got = client.simulate_get(path)
            times.append(time.perf_counter() - began)
            assert got.status_code == 200
        times.sort()
        results[path] = (statistics.median(times) * 1000, times[int(0.99 * (len(times) - 1))] * 1000)
    app.statskit.close(1)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "logs").mkdir()
        log = folder / "logs" / "caddy_access_logs.json"
        write_log(log, args.lines)
        size = log.stat().st_size
        floor_s = min(floor(log) for _ in range(2))
        tail_s, counted, memory = tail(folder, args.lines)
        assert counted == args.lines, (counted, args.lines)
        floor_rate, rate = args.lines / floor_s, args.lines / tail_s
        print(f"tailing {args.lines:,} lines ({size / 2**20:.0f} MiB): {rate:,.0f} lines/s; "
              f"read+orjson floor {floor_rate:,.0f} lines/s; ratio {rate / floor_rate:.2f} "
              f"(goal >= 0.5 and >= 50,000 lines/s)")
        record(f"tailing {args.lines:,} lines vs read+orjson floor", rate, baseline=floor_rate, unit="lines/s",
               goal=0.5)
        record(f"tailing {args.lines:,} lines", rate, unit="lines/s", goal=50_000)
        record("tailing: resident memory growth from 25 % to 100 % of the lines",
               memory["100%"] - memory.get("25%", memory["100%"]), unit="MiB")
        print("resident memory (MiB) at " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
        log.unlink()
        for path, (median, p99) in api(folder, args.requests).items():
            record(f"GET {path}, a year of hourly data, p99", p99, unit="ms", goal=20, goal_kind="max")
            print(f"{path:28s} median {median:6.2f} ms  p99 {p99:6.2f} ms (goal p99 < 20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
