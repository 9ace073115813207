"""HTTP for statskit_client: one ``requests.Session`` per process, URL joining, JSON and gzip
bodies, and the mapping of an answer to "delivered", "retry later" or "give up".

    >>> join_url("http://stats.example/api", "ping/")
    'http://stats.example/api/ping/'
    >>> join_url("http://stats.example/api/", "/log/event/")
    'http://stats.example/api/log/event/'
"""
from __future__ import annotations

import gzip as _gzip
import json
import logging
import os
import threading
from datetime import date, datetime
from typing import Any, List, Optional, Set

import requests

from statskit import __version__
from statskit.worker import RetryableError, parse_retry_after

from .errors import SendError

log = logging.getLogger("statskit_client")

DEFAULT_URL = "http://localhost:20080"  # the original stats-client's default (stats-service's port)
USER_AGENT = f"statskit-client/{__version__} python-requests/{requests.__version__}"


class RetryableSendError(SendError, RetryableError):
    """A transient failure (no answer, 408, 429, 5xx): the worker retries the batch, after
    ``retry_after`` seconds when the server sent ``Retry-After``."""

    def __init__(self, message: str, status: int = 0, body: str = "", retry_after: Optional[float] = None) -> None:
        SendError.__init__(self, message, status, body)
        self.retry_after = retry_after


class BatchRouteMissing(Exception):
    """The server has no ``POST /log/events`` (the original stats-service): send one by one."""


# Servers (base URLs) that answered 404/405 to POST /log/events, for every client of this
# process: asked once per server, said once in the log.
_no_batch_route: Set[str] = set()
_no_batch_lock = threading.Lock()


def join_url(base: str, path: str) -> str:
    """``base`` + ``path`` keeping any path prefix of ``base``, with or without its trailing slash.

    The original used ``urljoin``, which dropped the last path segment of a base without a
    trailing slash (``ping/``) or the whole base path (``/log/event/``): a server mounted
    under a prefix behind a proxy was unreachable.
    """
    return base.rstrip("/") + "/" + path.lstrip("/")


def _default(obj: Any) -> Any:
    # Values json cannot encode: dates as RFC 3339 (what the server reads for ``time``), the
    # rest as text, rather than failing a whole batch in the worker thread as the original did.
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


# allow_nan=False: NaN is not JSON, and the server would reject the whole batch for it.
encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default).encode


class Transport:
    """Sends to one statskit server. Safe to share between threads; after ``os.fork()`` the child
    opens its own connections (sharing the parent's keep-alive sockets would mix both streams)."""

    def __init__(self, url: str, access_token: Optional[str], timeout: float = 10.0, gzip: bool = False) -> None:
        self.url = url
        self.timeout = timeout
        self.gzip = gzip
        self.headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if access_token:
            self.headers["Authorization"] = f"Token {access_token}"
        self._session: Optional[requests.Session] = None
        self._pid = 0

    @property
    def session(self) -> requests.Session:
        if self._session is None or self._pid != os.getpid():
            session = requests.Session()
            session.headers.update(self.headers)
            self._session, self._pid = session, os.getpid()
        return self._session

    def reset(self) -> None:
        """Forget the connections (in a forked child: they belong to the parent). Not closed:
        closing could block on a pool lock the parent's thread held at fork time."""
        self._session = None

    def get(self, path: str) -> requests.Response:
        return self.session.get(join_url(self.url, path), timeout=self.timeout)

    def post(self, path: str, body: bytes) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if self.gzip:
            body = _gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        return self.session.post(join_url(self.url, path), data=body, headers=headers, timeout=self.timeout)

    @property
    def has_batch_route(self) -> bool:
        """False once the server answered 404/405 to ``POST /log/events``."""
        return self.url not in _no_batch_route

    def post_batch(self, bodies: List[bytes]) -> None:
        """POST /log/events with the JSON array of already encoded events; raises
        :class:`RetryableSendError` (retry) or :class:`SendError` (give up) unless it was taken,
        :class:`BatchRouteMissing` when the server has no such route."""
        try:
            resp = self.post("log/events", b"[" + b",".join(bodies) + b"]")
        except requests.RequestException as exc:
            raise RetryableSendError(f"{join_url(self.url, 'log/events')} unreachable: {exc}") from exc
        if resp.status_code in (404, 405):
            with _no_batch_lock:
                first = self.url not in _no_batch_route
                _no_batch_route.add(self.url)
            if first:
                log.warning("statskit_client: %s answered %d to POST /log/events (a stats-service without "
                            "the batch route): sending each event to /log/event/ instead", self.url, resp.status_code)
            raise BatchRouteMissing(self.url)
        check(resp)

    def post_event(self, body: bytes) -> None:
        """POST /log/event/ with one encoded event (or a one-point list); raises as post_batch."""
        try:
            resp = self.post("log/event/", body)
        except requests.RequestException as exc:
            raise RetryableSendError(f"{join_url(self.url, 'log/event/')} unreachable: {exc}") from exc
        check(resp)


def check(resp: requests.Response) -> None:
    """Nothing for a 2xx; else the error to retry or to give up with."""
    status = resp.status_code
    if status < 300:
        return
    body = resp.text[:500]
    message = f"{resp.request.method} {resp.url} answered {status}: {body[:200]}"
    if status in (408, 429) or status >= 500:
        raise RetryableSendError(message, status, body, parse_retry_after(resp.headers.get("Retry-After")))
    raise SendError(message, status, body, _error_index(resp))


def _error_index(resp: requests.Response) -> Optional[int]:
    """The offending event's position, when the server named it (statskit's 400/413 bodies do)."""
    try:
        index = resp.json().get("index")
    except (ValueError, AttributeError):
        return None
    return index if isinstance(index, int) and not isinstance(index, bool) else None
