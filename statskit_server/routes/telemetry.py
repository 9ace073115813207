"""The telemetry query routes (the original's JSON endpoints and benchmarks registry), on the
WSGI app. The same table of endpoints is served by the websocket listener
(:mod:`statskit_server.telemetry_http`), so the original's URLs work on its ``PORT`` too.

=====================================  ======  =============================================
``GET /nodes``                         read    latest connection of each peer
``GET /nodes/log_stats?peer_id=``      read    ``[{"qty", "log_type"}]``
``GET /nodes/logs?peer_id=&msg=&...``  read    newest first; ``Link: <...>; rel="next"``
``GET /reputation[/logged]``           read    ``?max_age_s=60&limit=100``
``GET /reputation/{peer_id}``          read    ``?start_time&end_time&limit=1000``
``GET /stats/db``, ``/stats/version``  read    table and index sizes; name, version (html)
``GET/POST /benchmarks``               r / w   ``{"setup": {...}}`` (4096 bytes at most)
``POST /benchmarks/events``            write   ``{"benchmark_id", "name", "phase", "created_at"}``
``GET /benchmarks/{id}/events``        read    ordered by name (404: no such benchmark)
``GET /benchmarks/{id}/targets``       read    ``[{"target"}]`` of ``setup.substrate.peerId``
=====================================  ======  =============================================

Every path also with a trailing slash; the OpenAPI description is ``GET /telemetry/openapi.json``. Tokens (``read`` / ``write``) only with ``[telemetry]
require_token``, as for the producers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlencode

import falcon

from statskit.events import decode_json
from statskit.telemetry import TelemetryService, TelemetryStore
from statskit.telemetry import api
from statskit.telemetry.openapi import openapi

from . import Web


@dataclass
class Answer:
    media: Any = None
    text: Optional[str] = None  # sent as text/html instead of JSON
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """What a handler gets: the store, the query parameters, the path fields, the raw body."""

    store: TelemetryStore
    get: api.Get
    fields: Dict[str, str]
    body: bytes
    path: str
    params: Dict[str, Any]
    require_token: bool = False


Handler = Callable[[Call], Answer]


def _logs(call: Call) -> Answer:
    rows, following = api.logs(call.store, call.get)
    headers = {}
    if following is not None:
        query = {k: v for k, v in call.params.items() if k not in ("cursor", "token")}
        query["cursor"] = following
        headers = {"Link": f'<{call.path}?{urlencode(query, doseq=True)}>; rel="next"', "X-Next-Cursor": following}
    return Answer(rows, headers=headers)


def _body(call: Call) -> Any:
    return decode_json(call.body)


ENDPOINTS: List[Tuple[str, str, str, Handler]] = [
    ("GET", "/nodes", "read", lambda c: Answer(api.nodes(c.store))),
    ("GET", "/nodes/log_stats", "read", lambda c: Answer(api.log_stats(c.store, c.get))),
    ("GET", "/nodes/logs", "read", _logs),
    ("GET", "/reputation", "read", lambda c: Answer(api.reputation(c.store, c.get))),
    ("GET", "/reputation/logged", "read", lambda c: Answer(api.reputation(c.store, c.get, logged=True))),
    ("GET", "/reputation/{peer_id}", "read",
     lambda c: Answer(api.reputation_of(c.store, c.fields["peer_id"], c.get))),
    ("GET", "/stats/db", "read", lambda c: Answer(api.stats_db(c.store))),
    ("GET", "/stats/version", "read", lambda c: Answer(text=api.version_text())),
    ("GET", "/benchmarks", "read", lambda c: Answer(api.benchmarks(c.store))),
    ("POST", "/benchmarks", "write", lambda c: Answer(api.create_benchmark(c.store, _body(c)))),
    ("POST", "/benchmarks/events", "write", lambda c: Answer(api.create_benchmark_event(c.store, _body(c)))),
    ("GET", "/benchmarks/example", "read", lambda c: Answer(text="")),
    ("GET", "/benchmarks/{benchmark_id}/events", "read",
     lambda c: Answer(api.benchmark_events(c.store, c.fields["benchmark_id"]))),
    ("GET", "/benchmarks/{benchmark_id}/targets", "read",
     lambda c: Answer(api.benchmark_targets(c.store, c.fields["benchmark_id"]))),
    ("GET", "/telemetry/openapi.json", "", lambda c: Answer(openapi(c.require_token))),
]


def routes() -> Dict[str, Dict[str, Tuple[str, Handler]]]:
    """path -> method -> (scope, handler), every path with and without a trailing slash."""
    table: Dict[str, Dict[str, Tuple[str, Handler]]] = {}
    for method, path, scope, handler in ENDPOINTS:
        for variant in (path, path + "/"):
            table.setdefault(variant, {})[method] = (scope, handler)
    return table


def respond(resp: Any, answer: Answer) -> None:
    for name, value in answer.headers.items():
        resp.set_header(name, value)
    if answer.text is not None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = answer.text
    else:
        resp.media = answer.media


class TelemetryQuery:
    """One path of :data:`ENDPOINTS` on the WSGI app."""

    def __init__(self, service: TelemetryService, web: Web, methods: Dict[str, Tuple[str, Handler]]) -> None:
        self.service, self.auth, self.methods = service, web.auth, methods
        self.require_token = web.settings.telemetry.require_token

    def _serve(self, req: falcon.Request, resp: falcon.Response, fields: Dict[str, str]) -> None:
        if req.method not in self.methods:
            raise falcon.HTTPMethodNotAllowed(sorted(self.methods))
        scope, handler = self.methods[req.method]
        if self.require_token and scope:
            self.auth.require(req, scope)
        body = b""
        if req.method == "POST":
            from ..body import read_body

            body = read_body(req, api.BENCHMARK_BODY_LIMIT)
        respond(resp, handler(Call(self.service.store(), req.get_param, fields, body, req.path, dict(req.params),
                                    self.require_token)))

    def on_get(self, req: falcon.Request, resp: falcon.Response, **fields: str) -> None:
        self._serve(req, resp, fields)

    def on_post(self, req: falcon.Request, resp: falcon.Response, **fields: str) -> None:
        self._serve(req, resp, fields)


def mount(app: falcon.App, service: TelemetryService, web: Web) -> None:
    """The query routes; the counters reach ``/metrics`` through the feature's metric source."""
    for path, methods in routes().items():
        app.add_route(path, TelemetryQuery(service, web, methods))
