"""What ``on_error(exc, batch)`` receives: why events were not delivered."""
from __future__ import annotations

from typing import Optional


class ClientError(Exception):
    """Base class of the errors statskit_client reports."""


class SendError(ClientError):
    """The server refused a request (a 4xx other than 408/429, or a 5xx once retries ran out).

    ``status`` is the HTTP status (0 when there was no answer), ``body`` the start of the
    server's answer, ``index`` the position of the offending event when the server named one.
    """

    def __init__(self, message: str, status: int = 0, body: str = "", index: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.index = index


class DroppedError(ClientError):
    """Events given up without a server answer: ``reason`` is ``"queue_full"`` (the bounded
    queue is full: the newest event is dropped), ``"shutdown"`` (still queued when the client
    was closed, or logged after), ``"before_send"`` (the hook raised) or ``"unencodable"``
    (not JSON-serialisable)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or f"events dropped: {reason}")
        self.reason = reason


class ClientWarning(UserWarning):
    """Warned (rate-limited) when events are dropped, and once when the client is disabled."""
