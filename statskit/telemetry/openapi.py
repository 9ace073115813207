"""The OpenAPI description of the telemetry query routes (``GET /telemetry/openapi.json``).

    >>> doc = openapi(require_token=True)
    >>> doc["paths"]["/nodes/logs"]["get"]["security"]
    [{'token': ['read']}]
    >>> sorted(doc["paths"])[:3]
    ['/benchmarks', '/benchmarks/events', '/benchmarks/example']
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .. import __version__
from . import api

_TIME = {"type": "string", "example": "2020-03-25T13:17:09.008533",
         "description": "naive UTC, YYYY-MM-DDTHH:MM:SS[.f]; bounds are strict"}
_INT = {"type": "integer"}
_STR = {"type": "string"}


def _q(name: str, schema: Dict[str, Any], description: str, required: bool = False, where: str = "query") -> Dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "description": description,
            "schema": schema}


_ID = _q("benchmark_id", _INT, "a benchmark id (404 when unknown)", where="path")
_LOGS = [_q("peer_id", _STR, "the node", True), _q("msg", _STR, "message type, e.g. block.import"),
         _q("target", _STR, "logs.target"), _q("start_time", _TIME, "after (default: the epoch)"),
         _q("end_time", _TIME, "before (default: now)"),
         _q("limit", {**_INT, "minimum": 1, "maximum": api.LOGS_MAX_LIMIT}, f"default {api.LOGS_DEFAULT_LIMIT}"),
         _q("cursor", _STR, "X-Next-Cursor of the previous page (also in its Link header)")]
_REP = [_q("max_age_s", _INT, f"default {api.REPUTATION_DEFAULT_MAX_AGE}"),
        _q("limit", {**_INT, "maximum": api.REPUTATION_MAX_LIMIT}, f"default {api.REPUTATION_DEFAULT_LIMIT}")]

ROUTES: List[Tuple[str, str, str, str, List[Dict[str, Any]]]] = [
    ("get", "/nodes", "read", "the latest connection row of each peer id", []),
    ("get", "/nodes/log_stats", "read", '[{"qty", "log_type"}] of a node', [_q("peer_id", _STR, "the node", True)]),
    ("get", "/nodes/logs", "read", '[{"ip_addr", "peer_id", "msg", "created_at", "logs"}], newest first', _LOGS),
    ("get", "/reputation", "read", "latest system.network_state peer set per reporting peer", _REP),
    ("get", "/reputation/logged", "read", "the same, remote peers limited to known nodes", _REP),
    ("get", "/reputation/{peer_id}", "read", "what other nodes reported about peer_id",
     [_q("peer_id", _STR, "the peer", where="path"), _q("start_time", _TIME, "after"), _q("end_time", _TIME, "before"),
      _q("limit", _INT, f"default {api.REPUTATION_PEER_DEFAULT_LIMIT}")]),
    ("get", "/stats/db", "read", '[{"relation", "size"}], largest first', []),
    ("get", "/stats/version", "read", "name<br\\>version<br\\>description (text/html)", []),
    ("get", "/benchmarks", "read", "every benchmark, newest first", []),
    ("post", "/benchmarks", "write", f'create from {{"setup": {{...}}}} (at most {api.BENCHMARK_BODY_LIMIT} bytes)', []),
    ("post", "/benchmarks/events", "write", 'create from {"benchmark_id", "name", "phase", "created_at"}', []),
    ("get", "/benchmarks/example", "read", "empty", []),
    ("get", "/benchmarks/{benchmark_id}/events", "read", "the benchmark's events, by name", [_ID]),
    ("get", "/benchmarks/{benchmark_id}/targets", "read", '[{"target"}] of the node setup.substrate.peerId names', [_ID]),
]


def openapi(require_token: bool = False) -> Dict[str, Any]:
    paths: Dict[str, Any] = {}
    for method, path, scope, summary, params in ROUTES:
        op: Dict[str, Any] = {"summary": summary, "parameters": params, "responses": {
            "200": {"description": "the original's JSON shape"},
            "400": {"description": 'a bad parameter or body: {"error", "message", "field"}'},
            "404": {"description": "an unknown benchmark id"}, "413": {"description": "a body over the limit"},
            "503": {"description": "the store is down or busy: retry"}}}
        if method == "post":
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        if require_token:
            op["security"] = [{"token": [scope]}]
            op["responses"].update({"401": {"description": "no or a bad token"},
                                    "403": {"description": f"a token without the {scope} scope"}})
        paths.setdefault(path, {})[method] = op
    return {"openapi": "3.0.3",
            "info": {"title": "statskit telemetry queries", "version": __version__,
                     "description": "The substrate-analytics JSON endpoints. Every path also with a trailing "
                                    "slash. Tokens are needed only with [telemetry] require_token: the read "
                                    "scope for GET, write for POST. The live feed is ws://HOST:PORT/feed."},
            "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                                         "description": "Authorization: Token <t> or Bearer <t>"}}},
            "paths": dict(sorted(paths.items()))}
