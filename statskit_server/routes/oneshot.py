"""``POST /event``: one-shot events for Prometheus (the oneShotMetricsServer API).

    curl -X POST 'http://127.0.0.1:8080/event?type=deploy&service=api&value=2.5'
    curl -X POST http://127.0.0.1:8080/event -d type=deploy -d service=api     # form body works too

Labels come from the query string and, with ``Content-Type: application/x-www-form-urlencoded``,
from the body (other bodies are ignored, as the original did); the rules are in
:mod:`statskit.oneshot.parsing`. Each scraper of ``GET /metrics`` then gets the event once.

=====  ==================================================================================
200    registered: ``{"status": "ok", "series": "events_to_metrics{...}", "value": 2.5}``
       (the original answered 200 with an empty body; clients that ignore the body keep
       working). A NaN or infinite value is given as the string ``"NaN"``, ``"+Inf"``,
       ``"-Inf"``, since JSON has no such numbers.
400    the event cannot be represented (bad label name or value, bad value, bad escape);
       nothing is registered (the original answered 400 or 200 and registered part of it)
401    ``[oneshot] require_token`` and no valid token (``Authorization: Token ...`` header
       or ``token`` parameter); 403 for a token without the ``write`` scope
413    body over ``[limits] max_body_bytes``, or labels over ``[limits] max_event_bytes``
405    another method, OPTIONS included (no CORS here, as in the original)
=====  ==================================================================================
"""
from __future__ import annotations

import math
from typing import List, Tuple, Union

import falcon
import orjson

from statskit.oneshot import TOKEN_PARAM, OneShot, parse_form, query_bytes

from ..body import read_body
from . import Web

FORM = "application/x-www-form-urlencoded"


class EventResource:
    def __init__(self, oneshot: OneShot, web: Web) -> None:
        self.oneshot = oneshot
        self.auth = web.auth
        self.require_token = web.settings.oneshot.require_token
        self.max_body_bytes = web.settings.limits.max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        pairs: List[Tuple[str, str]] = []
        content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if content_type == FORM:
            # Body pairs first, then the query's: the order of Go's ParseForm.
            pairs = parse_form(read_body(req, self.max_body_bytes), "body")
        if self.require_token:  # (curl -d token=... puts it in the body)
            form_token = next((v for k, v in pairs if k == TOKEN_PARAM), "")
            self.auth.require(req, "write", allow_query=True, form_token=form_token)
        pairs += parse_form(query_bytes(req.query_string or ""), "query")
        event = self.oneshot.post(pairs)
        # Serialized here rather than through resp.media: this route is the hot one.
        answer = {"status": "ok", "series": event.series, "value": _json_number(event.value)}
        resp.data = orjson.dumps(answer)
        resp.content_type = falcon.MEDIA_JSON


    def on_options(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The original had no CORS and answered 405 (falcon's default OPTIONS answer is 200).
        raise falcon.HTTPMethodNotAllowed(["POST"])


def _json_number(value: float) -> Union[float, str]:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def mount(app: falcon.App, oneshot: OneShot, web: Web) -> None:
    app.add_route("/event", EventResource(oneshot, web))
