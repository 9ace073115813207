"""The stats-service API: ``POST /log/event``, ``POST /log/events``, ``GET /log/event/{id}``, ``GET /log/events``.

Status codes (all errors are JSON ``{"error", "message"}``):

=========================  ==============================================================
401                        no token, or a token that does not verify
403                        a valid token without the ``write`` (POST) or ``read`` (GET) scope
400                        malformed JSON, missing ``uid``/``event``, bad names or types
413                        body over ``max_body_bytes``, an event over ``max_event_bytes``,
                           more than ``max_batch_events`` events
404                        a method the route does not take (stats-service's Pyramid routes
                           answered 404, not 405), and a POST whose ``X-HTTP-Method-Override``
                           is PUT, DELETE, PATCH or OPTIONS (stats-service rewrote the method
                           and then found no view): nothing is written
=========================  ==============================================================

A rejected request stores nothing: a batch is validated whole before any sink sees it.
"""
from __future__ import annotations

import re

from typing import Any, List, Optional

import falcon

from statskit.errors import StatskitError, TooLarge, ValidationError
from statskit.events import check_item_sizes, decode_batch, decode_json, parse_event, parse_items, parse_time
from statskit.pipeline import Pipeline

from ..body import read_body
from . import Web

MAX_QUERY_LIMIT = 1000


class _Ingest:
    def __init__(self, pipeline: Pipeline, web: Web) -> None:
        self.pipeline = pipeline
        self.auth = web.auth
        self.limits = web.settings.limits
        self.table_name = web.settings.influxdb.table_name

    def _reject_counter(self, req: falcon.Request, items: List[Any]) -> None:
        """Count a rejected request under the offending event's name when there is one."""
        def on_reject(exc: StatskitError) -> None:
            name = ""
            if exc.index is not None and 0 <= exc.index < len(items) and isinstance(items[exc.index], dict):
                candidate = items[exc.index].get("event")
                name = candidate if isinstance(candidate, str) and len(candidate) <= 128 else ""
            self.pipeline.reject(exc.title, name, max(1, len(items)))
        req.context.on_reject = on_reject

    def _store(self, items: List[Any], body_length: int) -> list:
        check_item_sizes(items, body_length, self.limits.max_event_bytes)
        # v1 events get the server's ``now`` when they have none, as stats-service v1 added it.
        events = parse_items(items, table_name=self.table_name, stamp_now=True)
        self.pipeline.ingest(events)
        return events


class LogEvent(_Ingest):
    """One event (a dict: answered with its id) or a list of points (answered ``"OK"``)."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.require(req, "write")
        items: List[Any] = []
        self._reject_counter(req, items)
        body = read_body(req, self.limits.max_body_bytes)
        doc = decode_json(body)
        if isinstance(doc, dict):
            items.append(doc)
            if len(body) > self.limits.max_event_bytes:
                raise TooLarge(f"event of {len(body)} bytes; the limit is {self.limits.max_event_bytes}")
            # A dict is a v1 event: uid and event required, as stats-service v1 asserted (a
            # lone point is not taken for one; points come as a list).
            event = parse_event(doc, table_name=self.table_name, stamp_now=True)
            self.pipeline.ingest([event])
            resp.media = event.id
        elif isinstance(doc, list):
            if len(doc) > self.limits.max_batch_events:
                raise TooLarge(f"{len(doc)} points in one request; the limit is {self.limits.max_batch_events}")
            items.extend(doc)
            self._store(items, len(body))
            resp.media = "OK"
        else:
            raise ValidationError("expected an event object or a list of points")


class LogEvents(_Ingest):
    """POST: many events in one request (a JSON array or NDJSON), answered ``{"count": n, "ids": [...]}``.
    GET: recent events, newest first: ``?uid=&event=&since=&until=&limit=``."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.require(req, "write")
        items: List[Any] = []
        self._reject_counter(req, items)
        body = read_body(req, self.limits.max_body_bytes)
        items.extend(decode_batch(body, self.limits.max_batch_events))
        events = self._store(items, len(body))
        resp.media = {"count": len(events), "ids": [e.id for e in events]}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.require(req, "read")
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_QUERY_LIMIT, default=100)
        events = self.pipeline.query(
            uid=req.get_param("uid"), event=req.get_param("event"),
            since_ns=_time_param(req, "since"), until_ns=_time_param(req, "until"), limit=limit)
        resp.media = {"count": len(events), "events": [e.to_dict() for e in events]}


class EventById:
    def __init__(self, pipeline: Pipeline, web: Web) -> None:
        self.pipeline = pipeline
        self.auth = web.auth

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: str) -> None:
        self.auth.require(req, "read")
        key = event_id.strip().lower()  # as stats-service did
        event = self.pipeline.get(key)
        if event is None:
            raise falcon.HTTPNotFound(title="404 Not Found", description=f"no event {key!r}")
        resp.media = event.to_dict()


def _time_param(req: falcon.Request, name: str) -> Optional[int]:
    raw = req.get_param(name)
    if raw is None:
        return None
    value: Any = raw
    text = raw.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        value = int(text)  # exact: a float would round nanoseconds (page by time without skips)
    else:
        try:
            value = float(text)
        except ValueError:
            pass  # an RFC 3339 time
    return parse_time(value, field=name)


# The routes stats-service had (plus /log/events, statskit's batch route beside them).
STATS_SERVICE_ROUTES = frozenset({"/log/event", "/log/event/", "/log/events", "/log/events/", "/log/event/{event_id}",
                                  "/log/event/{event_id}/", "/ping", "/ping/"})
# stats-service's middleware rewrote a POST's method to one of these (and then no view matched).
OVERRIDDEN_METHODS = frozenset({"PUT", "DELETE", "PATCH", "OPTIONS"})


class StatsServiceMethods:
    """Middleware: on the stats-service routes, a method without a responder is a 404 (Pyramid's
    answer there; falcon's would be 405), and so is a POST that ``X-HTTP-Method-Override``
    turns into PUT, DELETE, PATCH or OPTIONS. Other routes keep falcon's 405."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
        if resource is None or req.uri_template not in STATS_SERVICE_ROUTES:
            return
        method = req.method
        if method == "POST":
            override = (req.get_header("X-HTTP-Method-Override") or "").strip().upper()
            if override in OVERRIDDEN_METHODS:
                method = override
        if method != req.method or not hasattr(resource, "on_" + method.lower()):
            raise falcon.HTTPNotFound(title="404 Not Found",
                                      description=f"{req.path} has no {method} (as in stats-service)")


def mount(app: falcon.App, pipeline: Pipeline, web: Web) -> None:
    app.add_middleware(StatsServiceMethods())
    log_event = LogEvent(pipeline, web)
    app.add_route("/log/event", log_event)
    app.add_route("/log/event/", log_event)
    log_events = LogEvents(pipeline, web)
    app.add_route("/log/events", log_events)
    app.add_route("/log/events/", log_events)
    by_id = EventById(pipeline, web)
    app.add_route("/log/event/{event_id}", by_id)
    app.add_route("/log/event/{event_id}/", by_id)
