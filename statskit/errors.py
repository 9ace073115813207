"""Errors that carry the HTTP status a server should answer with."""
from __future__ import annotations

import sqlite3
from typing import Any, Optional


class StatskitError(Exception):
    """Base class. ``status`` is the HTTP status, ``title`` a short machine-friendly code."""

    status = 400
    title = "invalid_input"

    def __init__(self, message: str, *, field: Optional[str] = None, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index

    def to_dict(self) -> dict:
        body: dict[str, Any] = {"error": self.title, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.index is not None:
            body["index"] = self.index
        return body


class ValidationError(StatskitError):
    """Input that is well-formed JSON but not a valid event, point or payload (400)."""


class TooLarge(StatskitError):
    """A body, event or batch over its size limit (413)."""

    status = 413
    title = "too_large"


class RequestTimeout(StatskitError):
    """The request body did not arrive within ``[server] body_timeout`` (408)."""

    status = 408
    title = "request_timeout"


class StorageFull(StatskitError):
    """The store cannot write (disk full or unwritable): nothing was stored (507, with
    Retry-After); reads keep working and writes resume by themselves once it can write."""

    status = 507
    title = "insufficient_storage"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(StatskitError):
    """A store the request needs is down or busy (503): the request may be retried as it is.
    ``retry_after`` (seconds) becomes the answer's Retry-After header."""

    status = 503
    title = "unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetryableError(Exception):
    """A transient failure (5xx, 429, connection refused, a locked database): what was tried
    may be tried again, after ``retry_after`` seconds if given (BatchWorker: else after an
    exponential backoff)."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_transient(exc: BaseException) -> bool:
    """A store that is down or busy, as opposed to a bug: RetryableError, a network error, or
    SQLite locked/busy past its timeout. (``sqlite3.OperationalError`` also covers "no such
    column" and syntax errors: those are bugs, not a reason to tell a client to retry.)"""
    if isinstance(exc, (RetryableError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    return False


class NotFound(StatskitError):
    """An id (in the path or the body) that names nothing stored (404)."""

    status = 404
    title = "not_found"


def is_storage_full(exc: BaseException) -> bool:
    """The store cannot write: a full disk, an I/O error, a read-only or vanished file (SQLite's
    FULL, IOERR, READONLY, CANTOPEN; ENOSPC/EROFS/EDQUOT from a file write). Not a bug, and not
    the client's fault: a 507 with Retry-After, reads keep working."""
    import errno

    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(part in text for part in ("full", "disk i/o", "readonly", "unable to open"))
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
