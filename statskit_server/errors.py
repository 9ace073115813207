"""Every error leaves as JSON ``{"error": code, "message": text}``; nothing escapes as a bare 500."""
from __future__ import annotations

import logging
import re

import falcon

from statskit.errors import StatskitError, StorageFull, Unavailable, is_storage_full, is_transient

log = logging.getLogger("statskit.server")


def error_code(title: str) -> str:
    """``"413 Payload Too Large"`` -> ``"payload_too_large"``."""
    text = re.sub(r"^\d+\s*", "", title or "error")
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "error"


def serialize_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    body = {"error": error_code(exc.title), "message": exc.description or exc.title}
    resp.media = body
    resp.content_type = falcon.MEDIA_JSON


def handle_statskit_error(req: falcon.Request, resp: falcon.Response, exc: StatskitError, params: dict) -> None:
    resp.status = exc.status
    resp.media = exc.to_dict()
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        resp.set_header("Retry-After", str(retry_after))
    on_reject = getattr(req.context, "on_reject", None)
    if on_reject is not None:
        on_reject(exc)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
    if isinstance(exc, falcon.HTTPError):  # falcon's own errors (404, 405, ...) keep their status
        raise exc
    if is_transient(exc):
        # The SQLite state locked past its busy timeout, a store down: not the client's fault
        # and nothing was stored; a 503 tells it (and its retry logic) to try again.
        log.warning("storage unavailable on %s %s: %s", req.method, req.path, exc)
        handle_statskit_error(req, resp, Unavailable("storage busy or unavailable; try again"), params)
        return
    if is_storage_full(exc):
        # A full or unwritable disk under any store (a feature's included): nothing was stored.
        log.error("storage cannot write on %s %s: %s", req.method, req.path, exc)
        handle_statskit_error(req, resp, StorageFull("the store cannot write; nothing was stored, try again later"), params)
        return
    log.exception("unexpected error on %s %s", req.method, req.path)
    resp.status = 500
    resp.media = {"error": "internal_error", "message": "internal error; it has been logged"}


def install(app: falcon.App) -> None:
    app.set_error_serializer(serialize_http_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(StatskitError, handle_statskit_error)
