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
