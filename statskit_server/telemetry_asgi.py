"""The telemetry websocket listener: a small ``falcon.asgi.App`` with ``/`` (expiring data) and
``/audit`` (kept forever), run by gunicorn's ASGI worker (:mod:`.telemetry_worker`).

    statskit-server --telemetry --telemetry-bind 0.0.0.0:8000      # beside the WSGI app
    gunicorn -k statskit_server.telemetry_worker.TelemetryWorker \\
        'statskit_server.telemetry_asgi:create_telemetry_app()'     # on its own

Per connection: refused before the handshake (HTTP 403) when the peer is outside
``allowed_networks``, the token is missing or lacks the ``write`` scope (``require_token``) or
``max_connections`` are open (counted over all its worker processes,
:mod:`statskit.telemetry.slots`); its ``peer_connections`` row is committed, then the websocket is
accepted. Every frame (text or binary) goes to :class:`statskit.telemetry.Connection`. statskit
pings every ``heartbeat_interval`` and closes a connection from which nothing (not even a pong)
arrived for ``client_timeout``. Frames over ``ws_max_payload`` close it with 1009 (gunicorn).
At a graceful stop every connection is closed with 1001 (going away: nodes reconnect) and the
write buffer is flushed before the worker exits.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from typing import Any, List, Optional, Set, Tuple

import falcon
import falcon.asgi
from falcon.constants import WebSocketPayloadType

from statskit.config import Settings, load_settings
from statskit.state import StateStore, open_state
from statskit.telemetry import Connection, Ingestor, TelemetryStore, TelemetryWriter, open_store
from statskit.telemetry.feed import FeedHub
from statskit.telemetry.metrics import REFUSED
from statskit.telemetry.presence import Presence
from statskit.telemetry.slots import SharedSlots
from statskit.telemetry.purge import Purger
from statskit.tokens import TokenError

from . import telemetry_http
from .auth import Authenticator
from .peer import client_address, normalize

log = logging.getLogger("statskit.telemetry")

HEARTBEAT_EXTENSION = "statskit.heartbeat"
GOING_AWAY = 1001


class _RawText(falcon.media.TextBaseHandlerWS):
    """Frames handed over as they came (text or bytes): parsing is the library's job."""

    def serialize(self, media: object) -> str:
        return str(media)

    def deserialize(self, payload: str) -> object:
        return payload


class _RawBinary(falcon.media.BinaryBaseHandlerWS):
    def serialize(self, media: object) -> bytes:
        return bytes(media)  # type: ignore[call-overload]

    def deserialize(self, payload: bytes) -> object:
        return payload


class Listener:
    """The process-wide parts: store, writer, purger, live connections. Built at ASGI startup
    (after gunicorn forked the worker), closed at shutdown."""

    def __init__(self, settings: Settings, state: Optional[StateStore] = None,
                 store: Optional[TelemetryStore] = None) -> None:
        self.settings = tel = settings.telemetry
        self.server_settings = settings.server
        self.state = state or open_state(settings.state.backend, settings.server.data_dir, settings.state.flush_interval)
        self.store = store or open_store(settings)
        points = None
        if "influxdb" in settings.sinks.enabled:
            from statskit.telemetry.points import PointSinks

            points = PointSinks.from_settings(settings, self.state)
        self.writer = TelemetryWriter(self.store, self.state, batch_size=tel.db_batch_size,
                                      max_latency=tel.db_save_latency, max_buffer=tel.max_buffer, points=points)
        self.ingest = Ingestor(self.store, self.writer, self.state, max_rate=tel.max_message_rate)
        self.purger = Purger(self.store, tel.log_expiry_h, tel.purge_interval)
        self.presence = Presence(self.store, tel.listener_timeout, lambda: list(self.ingest.open_ids),
                                 lock=self.ingest.rows_lock)
        self.ingest.listener_id = self.presence.instance
        self.networks = [ipaddress.ip_network(n) for n in tel.allowed_networks if n != "*"]
        self.everyone = not tel.allowed_networks or "*" in tel.allowed_networks
        self.auth = Authenticator.from_settings(settings) if tel.require_token else None
        self.query_auth = self.auth  # the query routes: a read (POST: write) token when required
        self.sockets: Set[falcon.asgi.WebSocket] = set()
        self.sockets_feed: Set[falcon.asgi.WebSocket] = set()
        self.feed = FeedHub(self.store)
        # max_connections holds for all the listener's processes (and survives a crashed one)
        self.slots = SharedSlots.in_data_dir(settings.server.data_dir, tel.max_connections)
        self.stopping = False

    def start(self) -> None:
        self.presence.start()  # first: connections of crashed listeners closed before a purge
        self.purger.start()

    def client(self, req: falcon.asgi.Request) -> Tuple[str, str]:
        """The node's address (a trusted proxy's forwarding header believed, as on the HTTP
        routes) and what its connection row says: ``ip:port``, or the forwarded ip alone."""
        server = self.server_settings
        addr = client_address(req, server.trusted_proxies, server.client_ip_header)
        peer = tuple(req.scope.get("client") or ())  # ASGI: [host, port], or None when unknown
        if len(peer) != 2:
            peer = (req.remote_addr, 0)
        if addr == normalize(str(peer[0])):
            return addr, f"{peer[0]}:{peer[1]}"
        return addr, addr

    def refusal(self, req: falcon.asgi.Request, addr: str) -> Optional[str]:
        """Why this handshake is refused, or None."""
        if self.stopping:
            return "stopping"
        if not self.everyone:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                return "network"
            ip = getattr(ip, "ipv4_mapped", None) or ip
            if not any(ip in net for net in self.networks):
                return "network"
        if self.auth is not None:
            try:
                if not self.auth.verify(req.get_param("token") or "").has("write"):
                    return "token"
            except TokenError:
                return "token"
        return None

    def feed_refusal(self, req: falcon.asgi.Request) -> Optional[str]:
        return telemetry_http.feed_refusal(self, req)

    async def drain(self) -> None:
        """Graceful stop: refuse new connections, close the open ones (1001), flush the buffer."""
        self.stopping = True
        await self.feed.close()
        sockets = list(self.sockets) + list(self.sockets_feed)
        if sockets:
            await asyncio.gather(*(ws.close(GOING_AWAY) for ws in sockets), return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.writer.flush, 30.0)

    def close(self, timeout: Optional[float] = None) -> None:
        self.purger.close(1.0)
        self.writer.close(timeout)
        self.presence.close(1.0)
        self.slots.close()
        self.store.close()
        self.state.flush()


class TelemetryResource:
    """``/`` or ``/audit``: one websocket per node."""

    def __init__(self, app: "TelemetryApp", audit: bool) -> None:
        self.app, self.audit = app, audit

    async def on_websocket(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        listener = self.app.listener
        assert listener is not None, "the ASGI lifespan startup did not run"
        addr, ip_addr = listener.client(req)
        why = listener.refusal(req, addr)
        if why is None and not listener.slots.acquire():
            why = "max_connections"
        if why is not None:
            listener.state.incr(REFUSED, (("reason", why),))
            log.info("telemetry connection from %s refused: %s", ip_addr, why)
            await ws.close()  # before accept: an HTTP 403, no websocket
            return
        try:
            await self._connection(req, ws, listener, ip_addr)
        finally:
            listener.slots.release()

    async def _connection(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket, listener: Listener,
                          ip_addr: str) -> None:
        loop = asyncio.get_running_loop()
        # The original stored the peer as "ip:port" and refused the handshake when this insert failed.
        try:
            conn: Connection = await loop.run_in_executor(None, listener.ingest.open, ip_addr, self.audit)
        except Exception as exc:
            listener.state.incr(REFUSED, (("reason", "store_unavailable"),))
            listener.ingest.errors_log.warning("open", "telemetry connection from %s refused: cannot store its "
                                               "connection row: %s", req.remote_addr, exc)
            await ws.close()  # HTTP 403 before the handshake; the node retries later
            return
        listener.sockets.add(ws)
        try:
            await ws.accept()
            await self._serve(req, ws, conn, listener)
        finally:
            listener.sockets.discard(ws)
            await loop.run_in_executor(None, conn.close)

    async def _serve(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket, conn: Connection,
                     listener: Listener) -> None:
        tel = listener.settings
        heartbeat = (req.scope.get("extensions") or {}).get(HEARTBEAT_EXTENSION)
        last_frame = [time.monotonic()]
        watchdog = asyncio.ensure_future(self._watchdog(ws, heartbeat, last_frame, tel.heartbeat_interval,
                                                        tel.client_timeout, conn))
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    data: Any = await ws.receive_media()
                except falcon.WebSocketDisconnected:
                    return
                last_frame[0] = time.monotonic()
                if conn.peer_id is None:
                    # May commit the node's details: off the event loop.
                    await loop.run_in_executor(None, conn.frame, data)
                else:
                    conn.frame(data)
        finally:
            watchdog.cancel()

    async def _watchdog(self, ws: falcon.asgi.WebSocket, heartbeat: Any, last_frame: List[float],
                        interval: float, timeout: float, conn: Connection) -> None:
        """Ping every ``interval``; close the connection once nothing arrived for ``timeout``."""
        while True:
            await asyncio.sleep(min(interval, timeout))
            seen = max(last_frame[0], heartbeat.last_seen() if heartbeat is not None else 0.0)
            if time.monotonic() - seen > timeout:
                log.info("telemetry connection %s (%s) silent for %.0f s: closed", conn.id, conn.ip_addr, timeout)
                try:
                    await ws.close(GOING_AWAY, "client timeout")
                except Exception:
                    pass
                return
            conn.count()  # a quiet node's last frames reach /metrics within a heartbeat
            if heartbeat is not None:
                await heartbeat.ping()


class Lifespan:
    """Builds the :class:`Listener` in the worker at ASGI startup and closes it at shutdown."""

    def __init__(self, app: "TelemetryApp", settings: Settings, kwargs: dict) -> None:
        self.app, self.settings, self.kwargs = app, settings, kwargs

    async def process_startup(self, scope: Any, event: Any) -> None:
        self.app.listener = Listener(self.settings, **self.kwargs)
        self.app.listener.start()

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        listener, self.app.listener = self.app.listener, None
        if listener is not None:
            await listener.drain()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, listener.close, self.settings.server.graceful_timeout)


class TelemetryApp(falcon.asgi.App):
    """falcon.asgi.App carrying its :class:`Listener` (and ``drain`` for the worker's stop)."""

    listener: Optional[Listener]

    async def statskit_drain(self) -> None:
        if self.listener is not None:
            await self.listener.drain()


def create_telemetry_app(settings: Optional[Settings] = None, **listener_kwargs: Any) -> TelemetryApp:
    """The listener app; ``listener_kwargs`` (``state``, ``store``) are for tests."""
    if settings is None:
        settings = load_settings(os.environ.get("STATSKIT_CONFIG") or None)
    app = TelemetryApp()
    app.listener = None
    app.add_middleware(Lifespan(app, settings, listener_kwargs))
    app.ws_options.media_handlers[WebSocketPayloadType.TEXT] = _RawText()
    app.ws_options.media_handlers[WebSocketPayloadType.BINARY] = _RawBinary()
    # No falcon receive queue and pump task on top of gunicorn's: the handler always waits in
    # receive(), so it sees a disconnect anyway, and each frame costs one hop less (30 -> 22 us).
    app.ws_options.max_receive_queue = 0
    app.req_options.strip_url_path_trailing_slash = False
    app.add_route("/", TelemetryResource(app, audit=False))
    app.add_route("/audit", TelemetryResource(app, audit=True))
    app.add_route("/audit/", TelemetryResource(app, audit=True))
    telemetry_http.mount(app)  # the query routes and /feed
    return app
