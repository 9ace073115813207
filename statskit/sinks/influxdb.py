"""InfluxDB: batched, retried writes that never fail or slow a request.

Two APIs, chosen by ``[influxdb] api``:

* ``v2``: InfluxDB 2.x/3.x (and servers speaking its write API) through influxdb-client's
  synchronous write call, with ``token``, ``org`` and ``bucket``. Its own batching WriteApi is
  not used: its ``flush()`` is a no-op and batches are lost on close.
* ``v1``: InfluxDB 1.x ``/write`` with ``database``, ``retention_policy``, ``username`` and
  ``password``; the database is created when the server answers "database not found", as
  stats-service did.

Each event becomes one point (:func:`statskit.sinks.lineprotocol.to_line`): the measurement
(``TABLE_NAME``, default ``analytics``, for ``{uid, event}`` events; a point's own otherwise),
tags ``uid``, ``event`` and the client's tags, the event's fields plus ``event_id`` as a string
field, and the event's time in nanoseconds.

``emit`` only formats lines and queues them on a :class:`~statskit.worker.BatchWorker`
(``batch_size`` lines or ``flush_interval`` seconds per write). Connection errors, timeouts,
5xx and 429 are retried with backoff, for as long as it takes, while up to ``max_buffer`` lines
wait; past that the newest are dropped. Every drop is counted in
``statskit_sink_dropped_total{sink="influxdb", reason}`` and logged; written points in
``statskit_sink_written_total{sink="influxdb"}``.

    >>> from statskit.state.memory import MemoryState
    >>> sink = InfluxDBSink(V1Writer("http://127.0.0.1:8086", "stats"), MemoryState())  # connects lazily
    >>> sink.close(0)
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import requests

from ..events import Event
from ..worker import BatchWorker, RetryableError, parse_retry_after
from .lineprotocol import to_line

log = logging.getLogger("statskit.sinks.influxdb")


class Rejected(Exception):
    """InfluxDB refused the batch for good (4xx other than a missing database)."""


def _check(status: int, text: str, headers: Any) -> None:
    """Map a write answer to nothing (done), RetryableError or Rejected."""
    if status < 300:
        return
    if status == 429 or status >= 500:
        raise RetryableError(f"InfluxDB answered {status}: {text[:200]}", parse_retry_after(headers.get("Retry-After")))
    raise Rejected(f"InfluxDB answered {status}: {text[:300]}")


class V1Writer:
    """``POST /write`` on InfluxDB 1.x, creating the database when it is missing."""

    def __init__(self, url: str, database: str, retention_policy: str = "", username: str = "",
                 password: str = "", timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.database, self.retention_policy = database, retention_policy
        self.auth = (username, password) if username else None
        self.timeout = timeout
        self._session: Optional[requests.Session] = None
        self._pid = 0

    @property
    def session(self) -> requests.Session:
        if self._session is None or self._pid != os.getpid():  # never share sockets across fork()
            self._session, self._pid = requests.Session(), os.getpid()
            self._session.trust_env = False
        return self._session

    def write(self, body: bytes) -> None:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        for attempt in (1, 2):
            try:
                resp = self.session.post(self.url + "/write", params=params, data=body, auth=self.auth,
                                         timeout=self.timeout)
            except requests.RequestException as exc:
                raise RetryableError(f"InfluxDB unreachable: {exc.__class__.__name__}") from exc
            if resp.status_code == 404 and "database not found" in resp.text and attempt == 1:
                self.query(f'CREATE DATABASE "{_ident(self.database)}"', method="POST")
                log.info("created InfluxDB database %s", self.database)
                continue
            _check(resp.status_code, resp.text, resp.headers)
            return

    def query(self, q: str, method: str = "GET") -> Dict[str, Any]:
        try:
            resp = self.session.request(method, self.url + "/query", params={"q": q, "db": self.database, "epoch": "ns"},
                                        auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RetryableError(f"InfluxDB unreachable: {exc.__class__.__name__}") from exc
        _check(resp.status_code, resp.text, resp.headers)
        return resp.json()


class V2Writer:
    """The v2 write API through influxdb-client (synchronous calls, our own batching and retries)."""

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout: float = 10.0) -> None:
        self.url, self.token, self.org, self.bucket, self.timeout = url, token, org, bucket, timeout
        self._api: Any = None
        self._pid = 0

    def _write_api(self) -> Any:
        if self._api is None or self._pid != os.getpid():
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            client = InfluxDBClient(url=self.url, token=self.token, org=self.org, timeout=int(self.timeout * 1000),
                                    retries=False)
            self._api, self._pid = client.write_api(write_options=SYNCHRONOUS), os.getpid()
        return self._api

    def write(self, body: bytes) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._write_api().write(bucket=self.bucket, org=self.org, record=body, write_precision="ns")
        except ApiException as exc:
            _check(exc.status or 500, str(exc.body or exc.reason), exc.headers or {})
        except (HTTPError, OSError) as exc:
            raise RetryableError(f"InfluxDB unreachable: {exc.__class__.__name__}") from exc


class InfluxDBSink:
    name = "influxdb"

    def __init__(self, writer: Any, state: Any, *, batch_size: int = 5000, flush_interval: float = 1.0,
                 max_buffer: int = 200_000, table_name: str = "analytics", read_events: bool = True) -> None:
        self.writer = writer
        self.state = state
        self.table_name = table_name
        self.read_events = read_events and isinstance(writer, V1Writer)
        self.worker = BatchWorker(self._send, max_queue=max_buffer, batch_size=batch_size, max_latency=flush_interval,
                                  max_retries=None, backoff=0.5, max_backoff=30.0, on_drop=self._dropped,
                                  name="statskit-influxdb-writer")
        self._last_log = 0.0
        self._unlogged: Dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "InfluxDBSink":
        cfg = settings.influxdb
        if cfg.api == "v1":
            writer: Any = V1Writer(cfg.url, cfg.database, cfg.retention_policy, cfg.username, cfg.password, cfg.timeout)
        elif cfg.api == "v2":
            writer = V2Writer(cfg.url, cfg.token, cfg.org, cfg.bucket, cfg.timeout)
        else:
            raise ValueError(f"[influxdb] api must be v1 or v2, not {cfg.api!r}")
        return cls(writer, state, batch_size=cfg.batch_size, flush_interval=cfg.flush_interval,
                   max_buffer=cfg.max_buffer, table_name=cfg.table_name, read_events=cfg.read_events)

    def emit(self, events: Sequence[Event]) -> None:
        lines = [to_line(e) for e in events]
        taken = self.worker.submit_many(lines)
        if taken < len(lines):
            self._dropped(lines[taken:], "buffer_full")

    def _send(self, lines: List[str]) -> None:
        try:
            self.writer.write("\n".join(lines).encode("utf-8"))
        except RetryableError as exc:
            self._note_failure(str(exc))
            raise
        except Rejected as exc:
            log.error("InfluxDB refused %d points: %s", len(lines), exc)
            raise
        self.state.incr("statskit_sink_written", {"sink": self.name}, len(lines))

    def _note_failure(self, message: str) -> None:
        self.state.incr("statskit_sink_errors", {"sink": self.name}, 1)
        now = time.monotonic()
        if now - self._last_log >= 10:  # an outage retries every few seconds: log it, not each try
            self._last_log = now
            log.warning("InfluxDB write failed, will retry (%d points waiting): %s", len(self.worker), message)

    def _dropped(self, lines: List[str], reason: str) -> None:
        self.state.incr("statskit_sink_dropped", {"sink": self.name, "reason": reason}, len(lines))
        self._unlogged[reason] = self._unlogged.get(reason, 0) + len(lines)
        now = time.monotonic()
        if now - self._last_log >= 10 or reason == "shutdown":
            self._last_log = now
            counts, self._unlogged = self._unlogged, {}
            log.error("InfluxDB sink dropped points: %s", ", ".join(f"{n} ({r})" for r, n in counts.items()))

    def get(self, event_id: str) -> Optional[Event]:
        """An event by id from InfluxDB 1.x (v2 servers answer Flux, which statskit does not speak)."""
        if not self.read_events:
            return None
        table = _ident(self.table_name)
        result = self.writer.query(f'SELECT * FROM "{table}" WHERE "event_id" = \'{_literal(event_id)}\' LIMIT 1')
        series = (result.get("results") or [{}])[0].get("series")
        if not series:
            return None
        columns, values = series[0]["columns"], series[0]["values"][0]
        row = dict(zip(columns, values))
        tag_result = self.writer.query(f'SHOW TAG KEYS FROM "{table}"')
        tag_series = (tag_result.get("results") or [{}])[0].get("series") or [{"values": []}]
        tag_keys = {v[0] for v in tag_series[0]["values"]}
        time_ns = int(row.pop("time"))
        row.pop("event_id", None)
        tags = {k: str(v) for k, v in row.items() if k in tag_keys and v is not None}
        fields = {k: v for k, v in row.items() if k not in tag_keys and v is not None}
        return Event(event_id, time_ns, self.table_name, tags, fields, uid=tags.get("uid"), event=tags.get("event"))

    def query(self, **filters: Any) -> List[Event]:
        return []

    def flush(self, timeout: Optional[float] = None) -> None:
        self.worker.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        if not self.worker.close(timeout):
            log.error("InfluxDB sink stopped with points unwritten (counted as dropped, reason shutdown)")


def _ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
