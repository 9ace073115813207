"""The listener into PostgreSQL and InfluxDB 1.6.7, end to end (real servers, real websockets)."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import psycopg
import pytest
import websockets

from pg_server import postgresql  # noqa: F401  (fixture)
from telemetry_server import TelemetryServer, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.realserver]


def now_ts() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def produce(url: str, peer: str, n: int) -> None:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"msg": "system.connected", "ts": now_ts(), "network_id": peer, "name": f"n-{peer}",
                                  "chain": "dev"}))
        for i in range(n):
            await ws.send(json.dumps({"id": 1, "ts": now_ts(),
                                      "payload": {"msg": "system.interval", "peers": i, "bandwidth": {"up": 1.5}}}))


def test_two_hosts_ingest_into_one_postgresql(postgresql, tmp_path):
    url = postgresql.new_database("telemetry_e2e")
    env = {"DATABASE_URL": url}
    with TelemetryServer(tmp_path / "a", env=env) as a, TelemetryServer(tmp_path / "b", env=env) as b:
        async def both():
            await asyncio.gather(produce(a.ws + "/", "QmHostA", 50), produce(b.ws + "/audit", "QmHostB", 50))
        asyncio.run(asyncio.wait_for(both(), 30))
        with psycopg.connect(url) as db:
            def counts():
                return dict(db.execute("SELECT pc.peer_id, count(*) FROM substrate_logs l JOIN peer_connections pc "
                                       "ON pc.id = l.peer_connection_id GROUP BY pc.peer_id").fetchall())
            assert wait_for(lambda: counts() == {"QmHostA": 51, "QmHostB": 51}), (counts(), a.tail(), b.tail())
            audit = dict(db.execute("SELECT peer_id, audit FROM peer_connections").fetchall())
            assert audit == {"QmHostA": False, "QmHostB": True}
        assert a.store().count_messages() == 0  # nothing went to the embedded store


def test_points_in_influxdb_with_expiring_and_audit_retention_policies(influxdb1, tmp_path):
    influxdb1.create_database("telemetry")
    influxdb1.query('CREATE RETENTION POLICY "expiring" ON "telemetry" DURATION 3h REPLICATION 1')
    env = {"INFLUXDB_URL": influxdb1.url, "INFLUXDB_API": "v1", "INFLUXDB_DB": "telemetry",
           "TELEMETRY_INFLUXDB_RP": "expiring", "STATSKIT_INFLUXDB_FLUSH_INTERVAL": "0.1"}
    with TelemetryServer(tmp_path, env=env, args=["--sinks", "influxdb"]) as srv:
        async def both():
            await asyncio.gather(produce(srv.ws + "/", "QmExp", 10), produce(srv.ws + "/audit", "QmAud", 5))
        asyncio.run(asyncio.wait_for(both(), 30))

        def count(rp: str, peer: str) -> float:
            result = influxdb1.query(f'SELECT sum("count"), max("peers"), max("bandwidth_up") FROM "{rp}".'
                                     f'"substrate_telemetry" WHERE "peer_id" = \'{peer}\' AND "msg" = \'system.interval\'',
                                     db="telemetry")
            series = result["results"][0].get("series")
            return series[0]["values"][0][1:] if series else None

        assert wait_for(lambda: count("expiring", "QmExp") == [10, 9, 1.5], 15), (count("expiring", "QmExp"), srv.tail())
        assert wait_for(lambda: count("autogen", "QmAud") == [5, 4, 1.5], 15)
        assert count("autogen", "QmExp") is None and count("expiring", "QmAud") is None
        tags = influxdb1.query('SHOW TAG VALUES FROM "expiring"."substrate_telemetry" WITH KEY IN ("name", "chain") '
                               'WHERE "peer_id" = \'QmExp\'',
                               db="telemetry")
        assert sorted(v[1] for v in tags["results"][0]["series"][0]["values"]) == ["dev", "n-QmExp"]


class BucketToDb:
    """A pass-through HTTP proxy in front of VictoriaMetrics that copies the v2 ``bucket``
    parameter into ``db``. VictoriaMetrics stores ``/api/v2/write`` points without any label for
    the bucket (checked: ``?bucket=a`` and ``?bucket=b`` land identical), but labels them
    ``db=...`` from a ``db`` parameter; so through this proxy the bucket each point was written
    to is visible in what VictoriaMetrics stored. The body goes through untouched."""

    def __init__(self, target: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        import requests

        self.requests: list = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self, method: str) -> None:
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v2/write":
                    proxy.requests.append(dict(params))
                    params["db"] = params.get("bucket", "")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-encoding")}
                resp = requests.request(method, target + url.path, params=params, data=body, headers=headers,
                                        timeout=10)
                self.send_response(resp.status_code)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            def do_POST(self) -> None:
                self._forward("POST")

            def do_GET(self) -> None:
                self._forward("GET")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_points_through_the_v2_write_api_into_expiring_and_audit_buckets(victoria_metrics, tmp_path):
    proxy = BucketToDb(victoria_metrics.url)
    env = {"INFLUXDB_URL": proxy.url, "INFLUXDB_API": "v2", "INFLUXDB_TOKEN": "t", "INFLUXDB_ORG": "statskit",
           "INFLUXDB_BUCKET": "default", "TELEMETRY_INFLUXDB_BUCKET": "telemetry-3h",
           "TELEMETRY_INFLUXDB_AUDIT_BUCKET": "telemetry-audit", "STATSKIT_INFLUXDB_FLUSH_INTERVAL": "0.1"}
    try:
        with TelemetryServer(tmp_path, env=env, args=["--sinks", "influxdb"]) as srv:
            async def both():
                await asyncio.gather(produce(srv.ws + "/", "QmExp", 10), produce(srv.ws + "/audit", "QmAud", 5))
            asyncio.run(asyncio.wait_for(both(), 30))

            def peers():
                """(peer_id, bucket) -> the stored values of the "peers" field, in time order"""
                out: dict = {}
                for s in victoria_metrics.export('{__name__="substrate_telemetry_peers"}'):
                    key = (s["metric"]["peer_id"], s["metric"].get("db"))
                    out.setdefault(key, []).extend(zip(s["timestamps"], s["values"]))
                return {k: [v for _, v in sorted(vs)] for k, vs in out.items()}

            expected = {("QmExp", "telemetry-3h"): [float(i) for i in range(10)],
                        ("QmAud", "telemetry-audit"): [float(i) for i in range(5)]}
            assert wait_for(lambda: peers() == expected, 15), (peers(), proxy.requests, srv.tail())
        series = victoria_metrics.export('{__name__=~"substrate_telemetry_.*"}')
        labels = {(s["metric"]["__name__"], s["metric"]["peer_id"], s["metric"]["msg"], s["metric"].get("name"),
                   s["metric"].get("chain"), s["metric"]["db"]) for s in series}
        assert labels >= {("substrate_telemetry_bandwidth_up", "QmExp", "system.interval", "n-QmExp", "dev", "telemetry-3h"),
                          ("substrate_telemetry_count", "QmAud", "system.connected", "n-QmAud", "dev", "telemetry-audit")}
        assert {s["metric"]["db"] for s in series} == {"telemetry-3h", "telemetry-audit"}  # never the default bucket
        up = [v for s in series if s["metric"]["__name__"] == "substrate_telemetry_bandwidth_up" for v in s["values"]]
        assert up == [1.5] * 15
        assert {(r["org"], r["bucket"]) for r in proxy.requests} == {("statskit", "telemetry-3h"),
                                                                     ("statskit", "telemetry-audit")}
    finally:
        proxy.close()
