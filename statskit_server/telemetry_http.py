"""The listener's own HTTP routes and live feed, beside the producers' ``/`` and ``/audit``:

* the query routes of :mod:`statskit_server.routes.telemetry` (same table, same answers as on
  the WSGI app), so that the original's URLs keep working on its ``PORT``; each query runs in
  the executor (the event loop keeps serving the nodes);
* ``ws://HOST:PORT/feed``: the live feed (:mod:`statskit.telemetry.feed`).

A ``read`` token (``write`` for the POSTs) is needed when ``[telemetry] require_token`` is on:
``Authorization`` header on HTTP, ``?token=`` on the feed.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Tuple

import falcon
import falcon.asgi
import orjson

from statskit.errors import StatskitError, TooLarge, is_transient
from statskit.telemetry import api
from statskit.telemetry.feed import MAX_SUBSCRIPTIONS, FeedError, FeedHub, Subscription, parse_request
from statskit.telemetry.metrics import FEEDS_CONNECTED, FEEDS_DISCONNECTED, REFUSED
from statskit.tokens import TokenError

from .errors import error_code
from .routes.telemetry import Call, Handler, respond, routes

# The app is telemetry_asgi.TelemetryApp (not imported: that module imports this one); what
# is used of it is ``app.listener``, its Listener.
TelemetryApp = Any

log = logging.getLogger("statskit.telemetry")


async def read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    if req.content_length is not None and req.content_length > limit:
        raise TooLarge(f"body of {req.content_length} bytes; the limit is {limit}")
    data = await req.stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"body over the limit of {limit} bytes")
    return bytes(data)


class AsyncQuery:
    """One path of the query table on the listener."""

    def __init__(self, app: TelemetryApp, methods: Dict[str, Tuple[str, Handler]]) -> None:
        self.app, self.methods = app, methods

    async def _serve(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, fields: Dict[str, str]) -> None:
        listener = self.app.listener
        assert listener is not None, "the ASGI lifespan startup did not run"
        if req.method not in self.methods:
            raise falcon.HTTPMethodNotAllowed(sorted(self.methods))
        scope, handler = self.methods[req.method]
        if listener.query_auth is not None and scope:
            listener.query_auth.require(req, scope)
        body = await read_body(req, api.BENCHMARK_BODY_LIMIT) if req.method == "POST" else b""
        call = Call(listener.store, req.get_param, fields, body, req.path, dict(req.params),
                    listener.query_auth is not None)
        answer = await asyncio.get_running_loop().run_in_executor(None, handler, call)
        respond(resp, answer)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **fields: str) -> None:
        await self._serve(req, resp, fields)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **fields: str) -> None:
        await self._serve(req, resp, fields)


class FeedResource:
    """``/feed``: subscriptions of one connection, pushed by the process's :class:`FeedHub`."""

    def __init__(self, app: TelemetryApp) -> None:
        self.app = app

    async def on_websocket(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        listener = self.app.listener
        assert listener is not None, "the ASGI lifespan startup did not run"
        why = listener.feed_refusal(req)
        if why is not None:
            listener.state.incr(REFUSED, (("reason", "feed_" + why),))
            await ws.close()  # before accept: HTTP 403
            return
        hub: FeedHub = listener.feed
        await ws.accept()
        listener.state.incr(FEEDS_CONNECTED)
        listener.sockets_feed.add(ws)
        subs: Dict[Tuple[str, str], Subscription] = {}

        async def send(message: Dict[str, Any]) -> None:
            await ws.send_text(orjson.dumps(message).decode())

        try:
            while True:
                try:
                    data = await ws.receive_media()
                except falcon.WebSocketDisconnected:
                    return
                try:
                    interest, key, position, kind, interval = parse_request(_decode(data))
                    if interest == "unsubscribe":
                        sub = subs.pop(key, None)
                        if sub is not None:
                            hub.unsubscribe(sub)
                        continue
                    if key in subs:
                        hub.unsubscribe(subs.pop(key))
                    if len(subs) >= MAX_SUBSCRIPTIONS:
                        raise FeedError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
                    assert position is not None
                    subs[key] = hub.subscribe(send, key, position, kind, interval)
                except FeedError as exc:
                    await send({"error": str(exc)})
        finally:
            for sub in subs.values():
                hub.unsubscribe(sub)
            listener.sockets_feed.discard(ws)
            listener.state.incr(FEEDS_DISCONNECTED)


def _decode(data: Any) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FeedError(f"malformed JSON: {exc.msg}") from None


def feed_refusal(listener: Any, req: falcon.asgi.Request) -> Any:
    """Why a feed handshake is refused (stopping, token, too many), or None."""
    if listener.stopping:
        return "stopping"
    if listener.auth is not None:
        try:
            if not listener.auth.verify(req.get_param("token") or "").has("read"):
                return "token"
        except TokenError:
            return "token"
    if len(listener.sockets_feed) >= listener.settings.max_connections:
        return "max_connections"
    return None


async def _close_ws(kw: Dict[str, Any], code: int) -> None:
    """On a websocket (falcon passes ``ws`` and no response): close it with ``code``."""
    ws = kw.get("ws")
    if ws is not None:
        try:
            await ws.close(code)
        except Exception:
            pass


async def _statskit_error(req: Any, resp: Any, exc: StatskitError, params: Any, **kw: Any) -> None:
    if resp is None:
        await _close_ws(kw, 3000 + int(exc.status))
        return
    resp.status = exc.status
    resp.media = exc.to_dict()


async def _unexpected(req: Any, resp: Any, exc: Exception, params: Any, **kw: Any) -> None:
    if resp is None:
        if not isinstance(exc, (falcon.HTTPError, falcon.WebSocketDisconnected)):
            log.exception("unexpected error on the websocket %s", req.path)
        await _close_ws(kw, 3000 + int(str(exc.status)[:3]) if isinstance(exc, falcon.HTTPError) else 1011)
        return
    if isinstance(exc, falcon.HTTPError):
        resp.status = exc.status
        resp.media = {"error": error_code(exc.title), "message": exc.description or exc.title}
        for name, value in dict(exc.headers or {}).items():
            resp.set_header(name, value)
        return
    if is_transient(exc):
        log.warning("telemetry store unavailable on %s %s: %s", req.method, req.path, exc)
        resp.status = 503
        resp.set_header("Retry-After", "1")
        resp.media = {"error": "unavailable", "message": "storage busy or unavailable; try again"}
        return
    log.exception("unexpected error on %s %s", req.method, req.path)
    resp.status = 500
    resp.media = {"error": "internal_error", "message": "internal error; it has been logged"}


def mount(app: TelemetryApp) -> None:
    """The query routes and ``/feed`` on the listener app."""
    json_handler = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(StatskitError, _statskit_error)
    for path, methods in routes().items():
        app.add_route(path, AsyncQuery(app, methods))
    app.add_route("/feed", FeedResource(app))
    app.add_route("/feed/", FeedResource(app))
