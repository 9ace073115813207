"""HTTP transport for the InfluxDB sink: InfluxDB 1.x ``/write`` + ``/query``, and the v2 write API.

Each writer's ``write(body)`` sends one batch of line protocol and maps the answer:

* stored: returns;
* connection error, timeout, 5xx, 429: :class:`~statskit.worker.RetryableError` (with the
  ``Retry-After`` delay when the server gave one);
* any other 4xx: :class:`Rejected`, which says whether the whole batch was refused or, for an
  InfluxDB 1.x "partial write", how many of its points.

Nothing connects before the first call, and every process (gunicorn forks workers) opens its
own connections.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

import requests

from ..worker import RetryableError, parse_retry_after

log = logging.getLogger("statskit.sinks.influxdb")

_DROPPED = re.compile(r"dropped=(\d+)")


class Rejected(Exception):
    """InfluxDB refused points for good (4xx other than a missing database).

    ``dropped`` is None when the whole request was refused, else how many of its points were
    (an InfluxDB 1.x "partial write": the others are stored)."""

    def __init__(self, message: str, status: int, dropped: Optional[int] = None) -> None:
        super().__init__(message)
        self.status, self.dropped = status, dropped


def _check(status: int, text: str, headers: Any) -> None:
    """Map a write answer to nothing (done), RetryableError or Rejected."""
    if status < 300:
        return
    message = f"InfluxDB answered {status}: {text.strip()[:300]}"
    if status == 429 or status >= 500:
        raise RetryableError(message, parse_retry_after(headers.get("Retry-After")))
    if "partial write" in text:
        # 1.x stores the other points; "dropped=N" leaves out the lines it could not parse,
        # each named by an "unable to parse" (never from our formatter, but count them).
        match = _DROPPED.search(text)
        raise Rejected(message, status, (int(match.group(1)) if match else 0) + text.count("unable to parse"))
    raise Rejected(message, status)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def check_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError at start-up for one that cannot work (it
    would otherwise fail every write, retried forever, while the buffer fills)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"[influxdb] url must look like http://host:8086, not {url!r}")
    return url.rstrip("/")


class V1Writer:
    """``POST /write`` on InfluxDB 1.x, creating the database when it is missing; ``/query`` for reads."""

    def __init__(self, url: str, database: str, retention_policy: str = "", username: str = "",
                 password: str = "", timeout: float = 10.0) -> None:
        self.url = check_url(url)
        self.database, self.retention_policy = database, retention_policy
        self.auth = (username, password) if username else None
        self.timeout = timeout
        self._local = threading.local()  # a Session per thread: the writer thread and request threads
        self._sessions: List[requests.Session] = []
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None or self._local.pid != os.getpid():  # never share sockets across fork()
            session = requests.Session()
            # Proxy and CA-bundle variables apply as for any requests client, but a loopback
            # InfluxDB is never behind a proxy (a stray http_proxy would break it).
            session.trust_env = not _is_loopback(self.url)
            self._local.session, self._local.pid = session, os.getpid()
            with self._lock:
                self._sessions.append(session)
        return session

    def write(self, body: bytes) -> None:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        for attempt in (1, 2):
            try:
                resp = self.session.post(self.url + "/write", params=params, data=body, auth=self.auth,
                                         timeout=self.timeout)
            except requests.RequestException as exc:
                raise RetryableError(f"InfluxDB unreachable: {exc.__class__.__name__}: {exc}") from exc
            if resp.status_code == 404 and "database not found" in resp.text and attempt == 1:
                self.query(f'CREATE DATABASE "{_ident(self.database)}"', method="POST")
                log.warning("created the missing InfluxDB database %s", self.database)
                continue
            _check(resp.status_code, resp.text, resp.headers)
            return

    def query(self, q: str, method: str = "GET") -> Dict[str, Any]:
        """The JSON answer of ``/query`` (times in ns); an HTTP error raises as a write would."""
        try:
            resp = self.session.request(method, self.url + "/query", params={"q": q, "db": self.database, "epoch": "ns"},
                                        auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RetryableError(f"InfluxDB unreachable: {exc.__class__.__name__}: {exc}") from exc
        _check(resp.status_code, resp.text, resp.headers)
        return resp.json()

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


class V2Writer:
    """The v2 write API through influxdb-client (synchronous calls, our own batching and retries)."""

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout: float = 10.0) -> None:
        self.url, self.token, self.org, self.bucket, self.timeout = check_url(url), token, org, bucket, timeout
        self._client: Any = None
        self._api: Any = None
        self._pid = 0

    def _write_api(self) -> Any:
        if self._api is None or self._pid != os.getpid():
            # Imported here: importing influxdb_client costs ~0.3 s, paid only when v2 is used.
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            # retries=False: BatchWorker retries, without blocking flush() or close() on urllib3's sleeps.
            self._client = InfluxDBClient(url=self.url, token=self.token, org=self.org,
                                          timeout=int(self.timeout * 1000), retries=False)
            self._api, self._pid = self._client.write_api(write_options=SYNCHRONOUS), os.getpid()
        return self._api

    def write(self, body: bytes) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._write_api().write(bucket=self.bucket, org=self.org, record=body, write_precision="ns")
        except ApiException as exc:
            text = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
            if exc.status == 404:
                text += " (bucket or org not found; for InfluxDB 1.x use [influxdb] api = v1)"
            _check(exc.status or 500, text, exc.headers or {})
        except (HTTPError, OSError) as exc:
            raise RetryableError(f"InfluxDB unreachable: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = self._api = None



def _ident(name: str) -> str:
    """An InfluxQL double-quoted identifier's content."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _literal(text: str) -> str:
    """An InfluxQL single-quoted string's content."""
    return text.replace("\\", "\\\\").replace("'", "\\'")
