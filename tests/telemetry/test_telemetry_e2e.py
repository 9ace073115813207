"""The telemetry listener end to end: real ``statskit-server`` (gunicorn, ASGI worker) and real
websocket clients (the ``websockets`` package, and a raw socket for a client that never answers)."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import pytest
import websockets

from statskit.telemetry.store_sqlite import SQLiteTelemetryStore
from telemetry_server import TelemetryServer, wait_for

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with TelemetryServer(tmp_path_factory.mktemp("telemetry")) as srv:
        yield srv


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def connected(peer: str, ts: str = "2999-01-01T00:00:00Z") -> str:
    return json.dumps({"msg": "system.connected", "ts": ts, "network_id": peer, "name": f"node-{peer}",
                       "chain": "dev", "version": "1.0", "authority": True, "startup_time": "1600000000000",
                       "implementation": "substrate"})


def test_both_forms_text_and_binary_and_a_malformed_frame(server):
    async def produce():
        async with websockets.connect(server.ws + "/") as ws:
            await ws.send(connected("QmBoth"))
            await ws.send(json.dumps({"msg": "block.import", "ts": "2999-01-01T00:00:01+01:00", "height": 1}).encode())
            await ws.send("{this is not json")
            await ws.send(json.dumps({"id": 9, "ts": "2999-01-01T00:00:02Z",
                                      "payload": {"msg": "system.interval", "peers": 2}}))
            await ws.send(json.dumps({"msg": "no ts"}).encode())
            await ws.send(json.dumps({"msg": "after", "ts": "2999-01-01T00:00:03Z"}))  # the connection lives on

    run(produce())
    store = server.store()
    rows = wait_for(lambda: [m for m in store.messages(10000) if m["peer_id"] == "QmBoth"] if len(
        [m for m in store.messages(10000) if m["peer_id"] == "QmBoth"]) == 4 else None)
    assert rows, server.tail()
    assert [(r["msg"], r["created_at"]) for r in rows] == [
        ("system.connected", "2999-01-01T00:00:00.000000"), ("block.import", "2998-12-31T23:00:01.000000"),
        ("system.interval", "2999-01-01T00:00:02.000000"), ("after", "2999-01-01T00:00:03.000000")]
    assert rows[2]["logs"] == {"msg": "system.interval", "peers": 2, "ts": "2999-01-01T00:00:02Z", "envelope_id": 9}
    conn = [c for c in store.connections() if c["peer_id"] == "QmBoth"][0]
    assert (conn["name"], conn["chain"], conn["authority"], conn["startup_time"], conn["audit"]) == \
        ("node-QmBoth", "dev", 1, 1600000000000, 0)
    assert conn["ip_addr"].startswith("127.0.0.1:")
    assert wait_for(lambda: server.metric('statskit_telemetry_rejected_total{reason="invalid_json"}') >= 1)
    assert server.metric('statskit_telemetry_rejected_total{reason="no_ts"}') >= 1
    store.close()


def test_an_oversize_frame_closes_that_connection_with_1009(server):
    async def produce():
        async with websockets.connect(server.ws + "/", max_size=None) as ws:
            await ws.send(json.dumps({"msg": "big", "ts": "2999-01-01T00:00:00Z", "pad": "x" * 5000}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code
        
    assert run(produce()) == 1009
    # the listener still serves others
    async def other():
        async with websockets.connect(server.ws + "/") as ws:
            await ws.send(connected("QmAfterBig"))
    run(other())
    store = server.store()
    assert wait_for(lambda: any(c["peer_id"] == "QmAfterBig" for c in store.connections()))
    store.close()


def raw_handshake(port: int, path: str = "/") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_silent_client_is_pinged_then_dropped(server):
    sock = raw_handshake(server.ws_port)  # never reads, never answers pings
    received = b""
    sock.settimeout(10)
    try:
        while b"\x88" not in received[-200:]:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    assert received.startswith(b"\x89")  # a ping first (opcode 9, FIN)
    assert b"\x88" in received  # then a close frame


def test_a_quiet_client_that_answers_pings_stays_connected(server):
    async def quiet():
        async with websockets.connect(server.ws + "/", ping_interval=None) as ws:  # its pongs only
            await asyncio.sleep(3.0)  # twice CLIENT_TIMEOUT_S without a message
            await ws.send(connected("QmQuiet"))
            await ws.close()

    run(quiet())
    store = server.store()
    assert wait_for(lambda: any(m["peer_id"] == "QmQuiet" for m in store.messages(100000)))
    store.close()


def test_audit_rows_survive_a_purge_that_removes_expired_rows(server):
    old = "2020-01-01T00:00:00Z"

    async def produce():
        async with websockets.connect(server.ws + "/") as expiring, \
                websockets.connect(server.ws + "/audit") as audit:
            await expiring.send(connected("QmExpiring", old))
            await audit.send(connected("QmAudit", old))
            for i in range(20):
                await expiring.send(json.dumps({"msg": "m", "ts": old, "i": i}))
                await audit.send(json.dumps({"msg": "m", "ts": old, "i": i}))
            store = server.store()
            try:
                # stored, then purged (PURGE_INTERVAL_S 0.5, LOG_EXPIRY_H 1: 2020 is expired)
                assert await asyncio.get_running_loop().run_in_executor(None, lambda: wait_for(
                    lambda: sum(m["peer_id"] == "QmAudit" for m in store.messages(100000)) == 21))
                gone = await asyncio.get_running_loop().run_in_executor(None, lambda: wait_for(
                    lambda: not any(m["peer_id"] == "QmExpiring" for m in store.messages(100000))))
                assert gone
                # the connection is still open: its row is kept
                assert any(c["peer_id"] == "QmExpiring" for c in store.connections())
            finally:
                store.close()

    run(produce())


def test_refused_networks_get_403_before_any_row(tmp_path):
    with TelemetryServer(tmp_path, env={"TELEMETRY_ALLOWED_NETWORKS": "10.0.0.0/8"}) as srv:
        async def attempt():
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(srv.ws + "/"):
                    pass
            return info.value.response.status_code
        assert run(attempt()) == 403
        store = srv.store()
        assert store.connections() == []
        store.close()
        assert wait_for(lambda: srv.metric('statskit_telemetry_refused_total{reason="network"}') == 1)


def test_a_token_in_the_url_when_required(tmp_path):
    with TelemetryServer(tmp_path, env={"TELEMETRY_REQUIRE_TOKEN": "true"}) as srv:
        async def attempt(query):
            try:
                async with websockets.connect(srv.ws + "/" + query) as ws:
                    await ws.send(connected("QmToken"))
                return 101
            except websockets.InvalidStatus as exc:
                return exc.response.status_code
        assert run(attempt("")) == 403
        assert run(attempt("?token=forged")) == 403
        assert run(attempt("?token=" + srv.token(["read"]))) == 403  # needs the write scope
        assert run(attempt("?token=" + srv.token(["write"]))) == 101


def test_sigterm_with_messages_in_the_buffer_loses_none(tmp_path):
    env = {"DB_SAVE_LATENCY_MS": "600000", "DB_BATCH_SIZE": "100000"}  # nothing written before the stop
    srv = TelemetryServer(tmp_path, env=env).start()
    try:
        async def produce():
            async with websockets.connect(srv.ws + "/audit") as ws:
                await ws.send(connected("QmTerm"))
                for i in range(500):
                    await ws.send(json.dumps({"msg": "m", "ts": "2021-01-01T00:00:00Z", "i": i}))
                # every frame read by the listener (counters reach the state within ~1 s)
                assert await asyncio.get_running_loop().run_in_executor(
                    None, lambda: wait_for(lambda: srv.metric("substrate_message_count") == 501))
                store = srv.store()
                assert store.count_messages() == 0  # still in the buffer
                store.close()
                srv.proc.send_signal(15)
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 20)
                return ws.close_code
        assert run(produce()) == 1001  # going away: nodes reconnect elsewhere
        assert srv.proc.wait(30) == 0, srv.tail(60)
    finally:
        srv.kill()
    store = SQLiteTelemetryStore.in_data_dir(str(tmp_path))
    assert store.count_messages() == 501
    assert [m["logs"].get("i") for m in store.messages(1000)][1:] == list(range(500))
    store.close()


def test_if_the_listener_dies_statskit_server_stops_with_status_1(tmp_path):
    srv = TelemetryServer(tmp_path).start()
    try:
        def children(pid):
            return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]

        # the listener's gunicorn master is the child with workers of its own (once they booted)
        listener = wait_for(lambda: [c for c in children(srv.pid) if children(c)])
        assert len(listener) == 1
        os.kill(listener[0], 9)
        assert srv.proc.wait(30) == 1
        assert "telemetry listener" in srv.tail(50) and "exited" in srv.tail(50)
    finally:
        srv.kill()
