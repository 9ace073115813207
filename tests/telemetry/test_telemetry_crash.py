"""A listener worker killed with -9 (real gunicorn, real websockets): its connection rows are
closed once its heartbeat is older than ``listener_timeout``, so the purge can delete them;
the rows of live listeners (the replacement worker, another host on the same PostgreSQL) stay
open."""
from __future__ import annotations

import asyncio
import json
import time

import psycopg
import pytest
import websockets

from pg_server import postgresql  # noqa: F401  (fixture)
from telemetry_server import TelemetryServer, wait_for

pytestmark = pytest.mark.e2e

OLD = "2020-01-01T00:00:00Z"  # expired at once: only the open rows keep a connection
# LOG_EXPIRY_H 2 s: a closed connection row is purged once it closed longer ago than that
CRASH = {"TELEMETRY_LISTENER_TIMEOUT_S": "1.5", "LOG_EXPIRY_H": str(2 / 3600)}


def connected(peer: str) -> str:
    return json.dumps({"msg": "system.connected", "ts": OLD, "network_id": peer, "name": peer})


async def hold(url: str, peer: str, opened: asyncio.Event, stop: asyncio.Event) -> None:
    """A node that says who it is, then stays connected (answering pings) until ``stop``."""
    try:
        async with websockets.connect(url) as ws:
            await ws.send(connected(peer))
            opened.set()
            await stop.wait()
    except websockets.ConnectionClosed:
        opened.set()  # the killed worker's node: its socket died with the worker


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


async def in_thread(check, timeout: float = 20.0):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: wait_for(check, timeout))


def test_sqlite_rows_of_a_killed_worker_are_closed_then_purged(tmp_path):
    with TelemetryServer(tmp_path, env=CRASH) as srv:
        store = srv.store()

        def row(peer):
            rows = [c for c in store.connections() if c["peer_id"] == peer]
            return rows[0] if rows else None

        async def scenario():
            stop = asyncio.Event()
            opened = asyncio.Event()
            killed = asyncio.ensure_future(hold(srv.ws + "/", "QmKilled", opened, stop))
            await opened.wait()
            assert await in_thread(lambda: row("QmKilled"))
            assert row("QmKilled")["closed_at"] is None and row("QmKilled")["listener"]
            [worker] = srv.listener_workers()
            await asyncio.get_running_loop().run_in_executor(None, srv.kill_listener_worker, worker)
            alive_opened = asyncio.Event()
            alive = asyncio.ensure_future(hold(srv.ws + "/", "QmAlive", alive_opened, stop))
            await alive_opened.wait()
            assert await in_thread(lambda: row("QmAlive"))
            # closed by the replacement worker once the killed one's heartbeat is 1.5 s old,
            # then deleted by a purge (closed, and its one message expired)
            assert await in_thread(lambda: row("QmKilled") is None), (store.connections(), srv.tail())
            await asyncio.sleep(2.0)  # more than a listener timeout: the live row stays open
            assert row("QmAlive")["closed_at"] is None
            assert row("QmAlive")["listener"] != "" and row("QmAlive")["listener"] is not None
            stop.set()
            await asyncio.gather(killed, alive)

        try:
            run(scenario())
        finally:
            store.close()
        assert "marked closed" in srv.tail(200)


@pytest.mark.realserver
def test_postgresql_two_hosts_a_killed_worker_on_one_leaves_the_other_open(postgresql, tmp_path):
    url = postgresql.new_database("telemetry_crash")
    env = {**CRASH, "DATABASE_URL": url}
    with TelemetryServer(tmp_path / "a", env=env) as a, TelemetryServer(tmp_path / "b", env=env) as b, \
            psycopg.connect(url, autocommit=True) as db:
        def row(peer):
            return db.execute("SELECT closed_at, listener FROM peer_connections WHERE peer_id = %s",
                              (peer,)).fetchone()

        async def scenario():
            stop = asyncio.Event()
            opened_a, opened_b = asyncio.Event(), asyncio.Event()
            on_a = asyncio.ensure_future(hold(a.ws + "/", "QmHostA", opened_a, stop))
            on_b = asyncio.ensure_future(hold(b.ws + "/audit", "QmHostB", opened_b, stop))
            await asyncio.gather(opened_a.wait(), opened_b.wait())
            assert await in_thread(lambda: row("QmHostA") and row("QmHostB"))
            assert row("QmHostA")[1] != row("QmHostB")[1]  # each host's listener has its own id
            [worker] = a.listener_workers()
            await asyncio.get_running_loop().run_in_executor(None, a.kill_listener_worker, worker)
            # closed (by either host), then purged: only its expired message kept it
            assert await in_thread(lambda: row("QmHostA") is None), (
                db.execute("SELECT * FROM peer_connections").fetchall(), a.tail())
            await asyncio.sleep(2.0)
            assert row("QmHostB")[0] is None  # host B lives: its connection is open
            listeners = [r[0] for r in db.execute("SELECT instance FROM telemetry_listeners").fetchall()]
            assert len(listeners) == 2  # B's worker and A's replacement, not the killed one
            stop.set()
            await asyncio.gather(on_a, on_b)

        run(scenario())
        # a graceful stop closes the rows and leaves the table
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as db:
        while db.execute("SELECT count(*) FROM telemetry_listeners").fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert db.execute("SELECT count(*) FROM telemetry_listeners").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM peer_connections WHERE closed_at IS NULL").fetchone()[0] == 0


def test_max_connections_holds_over_two_workers_and_a_killed_one_frees_its_slots(tmp_path):
    limit = 4
    env = {**CRASH, "TELEMETRY_WORKERS": "2", "MAX_PENDING_CONNECTIONS": str(limit)}
    with TelemetryServer(tmp_path, env=env) as srv:
        assert wait_for(lambda: len(srv.listener_workers()) == 2)
        store = srv.store()

        def holders():
            """listener instance -> open connection ids"""
            out = {}
            for c in store.connections():
                if c["closed_at"] is None:
                    out.setdefault(c["listener"], []).append(c["id"])
            return out

        async def attempt(stop: asyncio.Event, peer: str):
            """True once connected (held until ``stop``), False when refused."""
            result = asyncio.get_running_loop().create_future()

            async def node():
                try:
                    async with websockets.connect(srv.ws + "/") as ws:
                        await ws.send(connected(peer))
                        result.set_result(True)
                        await stop.wait()
                except websockets.InvalidStatus as exc:
                    assert exc.response.status_code == 403
                    result.set_result(False)
                except websockets.ConnectionClosed:
                    if not result.done():
                        result.set_result(False)
            task = asyncio.ensure_future(node())
            return await result, task

        async def fill(stop, prefix, tries):
            accepted, tasks = 0, []
            for i in range(tries):
                ok, task = await attempt(stop, f"{prefix}{i}")
                tasks.append(task)
                accepted += ok
            return accepted, tasks

        async def scenario():
            # Until the kernel spreads the connections over both workers (each would take 4 on its own).
            for round_ in range(10):
                stop = asyncio.Event()
                accepted, tasks = await fill(stop, f"QmR{round_}n", limit + 6)
                assert accepted == limit, srv.tail()
                spread = await in_thread(lambda: sum(map(len, holders().values())) == limit and holders())
                if len(spread) == 2:
                    break
                stop.set()
                await asyncio.gather(*tasks)
                assert await in_thread(lambda: not holders())
            else:
                pytest.skip("the kernel gave every connection to one worker in 10 rounds")
            # kill -9 a worker holding some slots: they come back, the other worker's stay taken
            victim_listener, victim_ids = sorted(spread.items(), key=lambda kv: len(kv[1]))[0]
            pid = int(victim_listener.split(":")[1])
            await asyncio.get_running_loop().run_in_executor(None, srv.kill_listener_worker, pid)
            freed = len(victim_ids)
            more, more_tasks = await fill(stop, "QmAfterKill", freed + 3)
            assert more == freed, (more, freed, srv.tail())
            stop.set()
            await asyncio.gather(*tasks, *more_tasks)

        try:
            run(scenario())
        finally:
            store.close()
        # (the killed worker's last second of counters died with it)
        assert wait_for(lambda: srv.metric('statskit_telemetry_refused_total{reason="max_connections"}') >= 3)
