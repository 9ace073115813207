"""``/write``: the receiver for the Grafana analytics panel (macropower-analytics-panel).

Point the panel's *server* option at ``http://HOST:PORT/write`` (``/write?token=...`` when
``[grafana] require_token`` is on: the panel posts with ``mode: 'no-cors'``, which cannot send
headers, and its body arrives as ``text/plain``). The payload rules are in
:mod:`statskit.grafana.decoding`, sessions and counters in :mod:`statskit.grafana.sessions`, the log
lines in :mod:`statskit.grafana.sessionlog`; the ``grafana_analytics_*`` families join ``GET /metrics``.

=======  ==================================================================================
method   answer
=======  ==================================================================================
any      **201** with an empty body, as the original (the panel ignores
but      it; scripts written against the original keep working; like the original, any
OPTIONS  method with a payload in its body is taken). The payload is checked before the
         answer and applied right after it, in batches (at most 50 ms later), as the original
         applied its channel in a goroutine; a scrape of ``/metrics`` first applies what its
         worker holds. Payloads of one session apply in arrival order, as the original's
         (two workers may apply two payloads of one session in either order).
         **400** (JSON error) for a body that is not a payload: none, not JSON, not an
         object, or a field of the wrong type, e.g. an int field given ``1.5`` or ``"1"``
         (the original's 400 cases); also ``null`` and an object with no payload key
         (``{}``), which the original counted as a session with empty labels. Nothing
         changes then.
         **401/403** with ``require_token`` and no valid token with the ``write`` scope (the
         ``Authorization`` header, or the ``token`` query parameter).
         **413** over ``[limits] max_body_bytes``.
OPTIONS  CORS preflight: **204** with ``Access-Control-Allow-*`` for an origin in
         ``[grafana] cors_origins`` (``*`` = any), **403** for another origin (the original
         answered 400 to every OPTIONS, so panels in CORS mode could not post at all).
=======  ==================================================================================

Unclean paths (``/./write``, ``//write``, ``//metrics``) are a **301** to the clean one, as
the original's Go ServeMux answered them.

Answers with a payload carry ``Access-Control-Allow-Origin`` for an allowed ``Origin``.
"""
from __future__ import annotations

import posixpath
import re
from typing import Optional

import falcon

from statskit.grafana import SessionTracker, decode_payload

from ..body import read_body
from . import Web

ALLOW_METHODS = "POST, PUT, OPTIONS"


class Write:
    def __init__(self, tracker: SessionTracker, web: Web) -> None:
        self.tracker = tracker
        self.auth = web.auth
        settings = web.settings
        self.require_token = settings.grafana.require_token
        self.max_body_bytes = settings.limits.max_body_bytes
        self.origins = frozenset(settings.grafana.cors_origins)

    def _allowed_origin(self, req: falcon.Request) -> Optional[str]:
        """The Access-Control-Allow-Origin value for this request's Origin, or None."""
        origin = req.get_header("Origin")
        if origin is None or not self.origins:
            return None
        if "*" in self.origins:
            return "*"
        return origin if origin in self.origins else None

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        allowed = self._allowed_origin(req)
        if allowed is not None:  # set first, so that a browser can read our errors too
            resp.set_header("Access-Control-Allow-Origin", allowed)
            if allowed != "*":
                resp.append_header("Vary", "Origin")
        if self.require_token:
            self.auth.require(req, "write", allow_query=True)
        body = read_body(req, self.max_body_bytes)
        payload = decode_payload(body)  # a bad payload is a 400 here, before anything is stored
        self.tracker.submit(payload, body=body)  # returns once the payload is committed to the journal
        resp.status = falcon.HTTP_201
        resp.content_length = 0  # (falcon adds its default Content-Type; the original sent none)

    # The original took any method: a payload in the body is one, whatever the method.
    on_put = on_get = on_delete = on_patch = on_post

    def on_options(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Allow", ALLOW_METHODS)
        resp.status = falcon.HTTP_204
        if req.get_header("Origin") is None:
            return  # not a CORS preflight: just say what the route takes
        allowed = self._allowed_origin(req)
        if allowed is None:
            raise falcon.HTTPForbidden(title="403 Forbidden",
                                       description="origin not allowed by [grafana] cors_origins")
        resp.set_header("Access-Control-Allow-Origin", allowed)
        if allowed != "*":
            resp.append_header("Vary", "Origin")
        resp.set_header("Access-Control-Allow-Methods", ALLOW_METHODS)
        requested = req.get_header("Access-Control-Request-Headers")
        resp.set_header("Access-Control-Allow-Headers", requested or "Content-Type, Authorization")
        resp.set_header("Access-Control-Max-Age", "86400")


RECEIVER_PATHS = frozenset({"/write", "/metrics"})


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` as its ServeMux applied it: no ``.``/``..`` elements, no repeated
    slashes (a trailing slash kept).

        >>> clean_path("/./write"), clean_path("//write"), clean_path("/x/../metrics")
        ('/write', '/write', '/metrics')
    """
    cleaned = posixpath.normpath("/" + re.sub("/+", "/", path).lstrip("/"))
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class UncleanPaths:
    """Middleware: ``/./write``, ``//write`` and the like are a 301 to the clean path, as the
    original receiver's Go ServeMux answered them (only for its two paths: others stay 404)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        path = req.path
        if "//" not in path and "/." not in path:
            return
        cleaned = clean_path(path)
        if cleaned != path and cleaned in RECEIVER_PATHS:
            query = req.query_string
            raise falcon.HTTPMovedPermanently(cleaned + ("?" + query if query else ""))


def mount(app: falcon.App, tracker: SessionTracker, web: Web) -> None:
    app.add_route("/write", Write(tracker, web))
    app.add_middleware(UncleanPaths())
