"""Telemetry ingestion (issue 13): the real listener (statskit-server --telemetry) fed by real
websocket producers, into SQLite and PostgreSQL.

1. Peak rate: 50 connections sending as fast as they can (``PEAK_MESSAGES`` in all); messages/s
   from the first send until all are in the store, and the same rows written straight into the
   store in process (the baseline: what the store alone can do on this machine, this run).
2. Fleet: 1,000 connections, each a ``system.interval``-like message every second for
   ``FLEET_SECONDS``, plus a burst of 100 at once from every connection half-way; none lost,
   send-to-stored latency (the store polled every 20 ms: an upper bound), RSS of the listener.

    python benchmarks/bench_telemetry.py [--quick]

Every server binds 127.0.0.1, every load is bounded in count and time, servers stop by PID.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "telemetry")]
import websockets  # noqa: E402

from statskit.telemetry import Row, parse_frame  # noqa: E402
from statskit.telemetry.store_sqlite import SQLiteTelemetryStore  # noqa: E402
from telemetry_server import TelemetryServer  # noqa: E402
from report import record  # noqa: E402

DEADLINE = 120.0  # seconds any phase may take


def message(i: int, sent: Optional[float] = None) -> str:
    return json.dumps({"id": 1, "ts": "2026-01-01T00:00:00.000000Z", "payload": {
        "msg": "system.interval", "peers": 8, "height": i, "best": "0x" + "ab" * 32, "txcount": 0,
        "bandwidth_upload": 1024.5, "bandwidth_download": 2048.25, "sent": sent or 0.0}})


async def peak_producers(url: str, connections: int, per_connection: int) -> float:
    async def one(k: int) -> None:
        async with websockets.connect(url, max_queue=None) as ws:
            await ws.send(json.dumps({"msg": "system.connected", "ts": "2026-01-01T00:00:00Z",
                                      "network_id": f"QmPeak{k}", "name": f"peak{k}"}))
            for i in range(per_connection):
                await ws.send(message(i))
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(connections))), DEADLINE)
    return started


def wait_count(count, total: int) -> float:
    deadline = time.monotonic() + DEADLINE
    while count() < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count()} of {total} stored after {DEADLINE} s")
        time.sleep(0.01)
    return time.monotonic()


def baseline_sqlite(total: int) -> float:
    store = SQLiteTelemetryStore(tempfile.mktemp(suffix=".db"))
    cid = store.open_connection("x", False)
    rows = [Row(cid, False, parse_frame(message(i))) for i in range(total)]
    started = time.monotonic()
    for k in range(0, total, 1024):
        store.insert_messages(rows[k:k + 1024])
    rate = total / (time.monotonic() - started)
    store.close()
    return rate


def peak(server: TelemetryServer, count, total: int, connections: int = 50, store: str = "SQLite",
         baseline: Optional[float] = None) -> str:
    cpu = listener_cpu_seconds(server.pid)
    started = asyncio.run(peak_producers(server.ws + "/", connections, total // connections))
    done = wait_count(count, total + connections)
    cpu = listener_cpu_seconds(server.pid) - cpu
    record(f"peak, 50 connections, {total:,} messages into {store}" + (" vs the store alone" if baseline else ""),
           total / (done - started), baseline=baseline, unit="msg/s", goal=20_000 if store == "SQLite" else None,
           goal_on="value")
    return (f"{total / (done - started):,.0f} messages/s, listener CPU {cpu / total * 1e6:.0f} us a message "
            f"(so {total / cpu:,.0f}/s on a core of its own)")


def listener_cpu_seconds(master_pid: int) -> float:
    """user + system CPU of the listener's workers so far."""
    total = 0.0
    for child in _children(master_pid):
        for worker in _children(child):
            fields = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> List[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def listener_rss_kib(master_pid: int) -> int:
    """VmRSS of the telemetry listener: the child of statskit-server that has children of its own
    (its gunicorn master; the WSGI workers have none), and its workers."""
    def children(pid: int) -> List[int]:
        try:
            return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def rss(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
    total = 0
    for child in children(master_pid):
        workers = children(child)
        if workers:
            total += rss(child) + sum(rss(w) for w in workers)
    return total


async def fleet(url: str, connections: int, seconds: int, store: SQLiteTelemetryStore, spread: bool) -> dict:
    latencies: List[float] = []
    sent_total = 0
    stop = asyncio.Event()

    async def poll() -> None:  # arrival times of stored rows, by their "sent" field
        last = 0
        conn = store.db.connection()
        while not stop.is_set() or len(latencies) < sent_total:
            rows = conn.execute(f"SELECT id, json_extract(logs, '$.sent') FROM {store.table} WHERE id > ?",
                                (last,)).fetchall()
            now = time.time()
            for row_id, sent in rows:
                last = max(last, row_id)
                if sent:
                    latencies.append(now - sent)
            await asyncio.sleep(0.02)

    async def node(k: int) -> None:
        nonlocal sent_total
        async with websockets.connect(url, max_queue=None, open_timeout=60) as ws:
            await ws.send(json.dumps({"msg": "system.connected", "ts": "2026-01-01T00:00:00Z",
                                      "network_id": f"QmFleet{k}", "name": f"fleet{k}"}))
            await asyncio.sleep(k / connections)  # spread the nodes over the second
            for second in range(seconds):
                # the burst: every node in the same second, or each in its own second
                burst = 100 if second == (k % seconds if spread else seconds // 2) else 1
                for i in range(burst):
                    await ws.send(message(i, time.time()))
                sent_total += burst
                await asyncio.sleep(1.0)

    poller = asyncio.ensure_future(poll())
    await asyncio.wait_for(asyncio.gather(*(node(k) for k in range(connections))), DEADLINE)
    stop.set()
    await asyncio.wait_for(poller, DEADLINE)
    latencies.sort()
    return {"sent": sent_total, "stored": len(latencies),
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--burst-only", action="store_true",
                        help="only the fleet with every node's burst in the same second (SQLite)")
    parser.add_argument("--workers", type=int, default=1, help="listener processes (TELEMETRY_WORKERS)")
    args = parser.parse_args()
    total = 50_000 if args.quick else 200_000
    fleet_seconds = 6 if args.quick else 12
    env = {"HEARTBEAT_INTERVAL": "5", "CLIENT_TIMEOUT_S": "10", "WS_MAX_PAYLOAD": "524288",
           "DB_SAVE_LATENCY_MS": "100", "MAX_PENDING_CONNECTIONS": "2048", "TELEMETRY_MAX_BUFFER": "1000000",
           "LOG_EXPIRY_H": "100000", "PURGE_INTERVAL_S": "600", "TELEMETRY_WORKERS": str(args.workers)}
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        base = 0.0 if args.burst_only else baseline_sqlite(total)
        with TelemetryServer(Path(tmp) / "sqlite", env=env) as server:
            store = server.store()
            if not args.burst_only:
                rate = peak(server, store.count_messages, total, baseline=base)
                print(f"peak, 50 connections, SQLite: {rate} (store alone in process: {base:,.0f}/s; "
                      f"goal 20,000/s)", flush=True)
            for spread in ((False,) if args.burst_only else (True, False)):
                store.db.connection().execute(f"DELETE FROM {store.table}")
                cpu, own = listener_cpu_seconds(server.pid), time.process_time()
                result = asyncio.run(fleet(server.ws + "/", 1000, fleet_seconds, store, spread))
                cpu, own = listener_cpu_seconds(server.pid) - cpu, time.process_time() - own
                lost = result["sent"] - result["stored"]
                when = "each in its own second" if spread else "all in the same second"
                what = f"fleet, 1000 connections, bursts {when}"
                record(f"{what}: messages lost of {result['sent']:,}", lost, goal=0, goal_kind="max")
                record(f"{what}: send-to-stored p99", result["p99_ms"], unit="ms", goal=1000, goal_kind="max")
                record(f"{what}: listener RSS", listener_rss_kib(server.pid) / 1024, unit="MiB")
                print(f"fleet, 1000 connections x {fleet_seconds} s + a burst of 100 each ({when}): sent "
                      f"{result['sent']}, lost {lost}, send-to-stored p50 {result['p50_ms']:.0f} ms, p99 "
                      f"{result['p99_ms']:.0f} ms (goal < 1000), listener RSS "
                      f"{listener_rss_kib(server.pid) / 1024:.0f} MiB; CPU: listener {cpu:.1f} s, "
                      f"producers {own:.1f} s", flush=True)
            store.close()
        if args.burst_only:
            return 0
        try:
            from pg_server import PostgreSQL

            pg = PostgreSQL()
        except Exception as exc:
            print(f"PostgreSQL: skipped ({exc})")
            return 0
        with pg:
            url = pg.new_database("bench")
            with TelemetryServer(Path(tmp) / "pg", env={**env, "DATABASE_URL": url}) as server:
                import psycopg

                with psycopg.connect(url, autocommit=True) as db:
                    def count() -> int:
                        return db.execute("SELECT count(*) FROM substrate_logs").fetchone()[0]
                    rate = peak(server, count, total, store="PostgreSQL")
                print(f"peak, 50 connections, PostgreSQL: {rate}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
