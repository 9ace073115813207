"""Telemetry queries (issue 14): latency of ``/nodes/logs`` and ``/nodes/log_stats`` over a
big store, and the live feed's push delay with 100 subscribers; real ``statskit-server``.

1. The store is filled in process (``--messages`` over 100 nodes, 6 message types, times spread
   over a day), then the server is started on it. Each query runs ``--requests`` times against
   random nodes; the baseline is ``GET /ping`` on the same server in the same run (the HTTP
   cost alone). Goal: p99 under 50 ms for a node's newest 100 messages.
2. Feed: 100 websocket subscribers on one node's ``system.interval`` (one shared poll), a
   producer sending one message every 0.1 s stamped with its send time; delay = receipt - send.

    python benchmarks/bench_telemetry_queries.py [--messages 10000000] [--store sqlite|postgresql]

Every server binds 127.0.0.1, every load is bounded in count and time, servers stop by PID.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "telemetry")]
import requests  # noqa: E402
import websockets  # noqa: E402

from statskit.telemetry import Message, Row  # noqa: E402
from statskit.telemetry.parsing import NodeInfo, format_utc  # noqa: E402
from telemetry_server import TelemetryServer  # noqa: E402
from report import record  # noqa: E402

NODES = 100
TYPES = ["system.interval", "block.import", "notify.finalized", "txpool.import", "afg.finalized", "tracing.profiling"]
BATCH = 20000


def fill(store, total: int) -> float:
    start = time.monotonic()
    conns = []
    for k in range(NODES):
        cid = store.open_connection(f"10.0.{k // 250}.{k % 250}:30333", False)
        store.update_connection(cid, NodeInfo(f"QmNode{k}", name=f"node{k}", chain="bench"))
        conns.append(cid)
    base = datetime(2026, 1, 1)
    step = 86400.0 / max(1, total // NODES)
    i = 0
    while i < total:
        rows = []
        for j in range(i, min(total, i + BATCH)):
            when = format_utc(base + timedelta(seconds=(j // NODES) * step))
            msg = TYPES[j % len(TYPES)]
            logs = {"msg": msg, "ts": when + "Z", "height": j // NODES, "peers": 8, "target": "bench"}
            rows.append(Row(conns[j % NODES], False, Message(when, msg, logs)))
        store.insert_messages(rows)
        i += BATCH
    return time.monotonic() - start


def latencies(session: requests.Session, url: str, params_of, count: int) -> List[float]:
    out = []
    for _ in range(count):
        t = time.perf_counter()
        resp = session.get(url, params=params_of(), timeout=30)
        out.append((time.perf_counter() - t) * 1000)
        assert resp.status_code == 200, resp.text[:200]
    return out


def summary(values: List[float]) -> str:
    ordered = sorted(values)
    return f"median {statistics.median(ordered):.1f} ms, p99 {ordered[max(0, int(len(ordered) * 0.99) - 1)]:.1f} ms"


async def feed_delay(ws_url: str, subscribers: int, messages: int) -> List[float]:
    delays: List[float] = []

    async def subscriber(ready: asyncio.Event, count: List[int]) -> None:
        async with websockets.connect(ws_url + "/feed", max_queue=None) as ws:
            await ws.send(json.dumps({"peer_id": "QmFeed", "msg": "system.interval", "interest": "subscribe"}))
            count[0] += 1
            if count[0] == subscribers:
                ready.set()
            got = 0
            while got < messages:
                push = json.loads(await asyncio.wait_for(ws.recv(), 30))
                now = time.time()
                for row in push["data"]:
                    delays.append((now - row["sent"]) * 1000)
                    got += 1

    ready, count = asyncio.Event(), [0]
    tasks = [asyncio.ensure_future(subscriber(ready, count)) for _ in range(subscribers)]
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.sleep(1.5)  # every subscription registered
    async with websockets.connect(ws_url + "/") as node:
        await node.send(json.dumps({"msg": "system.connected", "ts": datetime.utcnow().isoformat() + "Z",
                                    "network_id": "QmFeed"}))
        for i in range(messages):
            await node.send(json.dumps({"msg": "system.interval", "ts": datetime.utcnow().isoformat() + "Z",
                                        "sent": time.time(), "i": i}))
            await asyncio.sleep(0.1)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="statskit-bench-tq-") as tmp:
        env: Dict[str, str] = {}
        pg = None
        if args.store == "postgresql":
            from pg_server import PostgreSQL

            pg = PostgreSQL()
            pg.start()
            env["DATABASE_URL"] = pg.new_database("bench")
        try:
            from statskit.config import load_settings
            from statskit.telemetry import open_store

            store = open_store(load_settings(env={"STATSKIT_DATA_DIR": tmp, **env}))
            seconds = fill(store, args.messages)
            store.close()
            if pg is not None:  # what autovacuum does to a database in service (visibility map, statistics)
                import psycopg

                with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
                    db.execute("VACUUM ANALYZE")
            print(f"filled {args.messages:,} messages over {NODES} nodes into {args.store} in {seconds:.0f} s")
            with TelemetryServer(tmp, env=env) as srv:
                session = requests.Session()
                node = lambda: f"QmNode{random.randrange(NODES)}"  # noqa: E731
                latencies(session, srv.url + "/ping", dict, 20)  # warm-up
                ping = latencies(session, srv.url + "/ping", dict, args.requests)
                newest = latencies(session, srv.url + "/nodes/logs", lambda: {"peer_id": node(), "limit": 100},
                                   args.requests)
                typed = latencies(session, srv.url + "/nodes/logs",
                                  lambda: {"peer_id": node(), "msg": "block.import", "limit": 100}, args.requests)
                stats = latencies(session, srv.url + "/nodes/log_stats", lambda: {"peer_id": node()},
                                  max(10, args.requests // 10))
                what = f"{args.messages:,} messages in {args.store}"
                record(f"GET /nodes/logs newest 100 of a node, {what}, median vs GET /ping",
                       statistics.median(newest), baseline=statistics.median(ping), unit="ms")
                p99 = sorted(newest)[max(0, int(len(newest) * 0.99) - 1)]  # as summary() takes it
                record(f"GET /nodes/logs newest 100 of a node, {what}, p99", p99, unit="ms", goal=50, goal_kind="max")
                print(f"GET /ping (baseline):                    {summary(ping)}")
                print(f"GET /nodes/logs newest 100 of a node:    {summary(newest)}  (goal: p99 < 50 ms; "
                      f"{statistics.median(newest) / statistics.median(ping):.1f}x the baseline)")
                print(f"GET /nodes/logs newest 100 block.import: {summary(typed)}")
                print(f"GET /nodes/log_stats of a node:          {summary(stats)}  "
                      f"({args.messages // NODES:,} messages each)")
                delays = asyncio.run(feed_delay(srv.ws, 100, 30))
                record("feed, 100 subscribers, push delay median", statistics.median(delays), unit="ms")
                print(f"feed, 100 subscribers of one pair, 30 messages: push delay {summary(delays)} "
                      f"(one poll per second: about 0.5 s expected)")
        finally:
            if pg is not None:
                pg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
