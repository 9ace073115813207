"""The telemetry feature: its ``[telemetry]`` options and how its services are built.

Off by default. When on, ``statskit-server`` also starts the websocket listener
(``statskit_server.telemetry_asgi``) on ``[telemetry] bind``; the WSGI app shows its
counters on ``/metrics``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from ..config import (Option, Settings, choice, parse_bind, parse_bool, parse_duration, parse_networks,
                      parse_positive_duration, parse_positive_int, parse_size)
from ..feature import Built, Context
from .metrics import TelemetryMetrics

if TYPE_CHECKING:
    from .store import TelemetryStore

_B, _P, _PD, _D, _Z, _N = parse_bool, parse_positive_int, parse_positive_duration, parse_duration, parse_size, parse_networks


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port < 65536:
        raise ValueError(f"not a port: {value!r}")
    return port


def _ms(value: str) -> float:
    """Milliseconds (``DB_SAVE_LATENCY_MS``), as seconds."""
    ms = float(value)
    if ms <= 0:
        raise ValueError(f"must be more than 0 ms, not {value!r}")
    return ms / 1000.0


def _hours(value: str) -> float:
    hours = float(value)
    if hours <= 0:
        raise ValueError(f"must be more than 0 hours, not {value!r}")
    return hours


OPTIONS = [
    Option("telemetry", "enabled", False, _B, "STATSKIT_TELEMETRY_ENABLED", "--telemetry",
           "start the telemetry websocket listener (ws://HOST:PORT/ and /audit)"),
    Option("telemetry", "bind", "127.0.0.1:8000", parse_bind, "TELEMETRY_BIND", "--telemetry-bind",
           "address:port of the websocket listener"),
    Option("telemetry", "port", 0, _port, "PORT", None, "the original's PORT: replaces the port of bind (0 = keep)"),
    Option("telemetry", "workers", 1, _P, "TELEMETRY_WORKERS", None, "listener processes (asyncio, one each)"),
    Option("telemetry", "store", "auto", choice("auto", "sqlite", "postgresql"), "TELEMETRY_STORE", None,
           "sqlite (data_dir/telemetry.db) or postgresql; auto = postgresql when database_url is set"),
    Option("telemetry", "database_url", "", str, "DATABASE_URL", None, "PostgreSQL URL (postgres://user:pw@host/db)"),
    Option("telemetry", "logs_table", "substrate_logs", choice("substrate_logs", "tetcore_logs"), "TELEMETRY_LOGS_TABLE",
           None, "the messages table: substrate_logs (substrate-analytics) or tetcore_logs (tetcore-analytics)"),
    Option("telemetry", "heartbeat_interval", 5.0, _PD, "HEARTBEAT_INTERVAL", None, "seconds between pings"),
    Option("telemetry", "client_timeout", 10.0, _PD, "CLIENT_TIMEOUT_S", None, "drop a connection silent this long"),
    Option("telemetry", "ws_max_payload", 524288, _Z, "WS_MAX_PAYLOAD", None, "largest frame (bigger: close 1009)"),
    Option("telemetry", "max_connections", 1024, _P, "MAX_PENDING_CONNECTIONS", None,
           "open connections of the listener, all its worker processes together (more: refused, HTTP 403)"),
    Option("telemetry", "db_batch_size", 1024, _P, "DB_BATCH_SIZE", None, "messages per insert transaction"),
    Option("telemetry", "db_save_latency", 0.1, _ms, "DB_SAVE_LATENCY_MS", None, "ms a message waits at most before its insert"),
    Option("telemetry", "max_buffer", 100000, _P, "TELEMETRY_MAX_BUFFER", None, "messages buffered per process (more: dropped, counted)"),
    Option("telemetry", "log_expiry_h", 3.0, _hours, "LOG_EXPIRY_H", None, "hours / data is kept (/audit: forever)"),
    Option("telemetry", "purge_interval", 600.0, _PD, "PURGE_INTERVAL_S", None, "seconds between purges"),
    Option("telemetry", "influxdb_measurement", "substrate_telemetry", str, "TELEMETRY_INFLUXDB_MEASUREMENT", None,
           "measurement of telemetry points (with the influxdb sink on)"),
    Option("telemetry", "influxdb_rp", "", str, "TELEMETRY_INFLUXDB_RP", None,
           "v1 retention policy of / points (empty: [influxdb] retention_policy)"),
    Option("telemetry", "influxdb_audit_rp", "", str, "TELEMETRY_INFLUXDB_AUDIT_RP", None,
           "v1 retention policy of /audit points (empty: [influxdb] retention_policy)"),
    Option("telemetry", "influxdb_bucket", "", str, "TELEMETRY_INFLUXDB_BUCKET", None,
           "v2 bucket of / points (empty: [influxdb] bucket)"),
    Option("telemetry", "influxdb_audit_bucket", "", str, "TELEMETRY_INFLUXDB_AUDIT_BUCKET", None,
           "v2 bucket of /audit points (empty: [influxdb] bucket)"),
    Option("telemetry", "listener_timeout", 60.0, _PD, "TELEMETRY_LISTENER_TIMEOUT_S", None,
           "a listener process silent this long (no heartbeat, e.g. killed -9) is gone: its connections are closed"),
    Option("telemetry", "allowed_networks", [], _N, "TELEMETRY_ALLOWED_NETWORKS", None,
           "CIDRs allowed to send (empty = everyone)"),
    Option("telemetry", "require_token", False, _B, "TELEMETRY_REQUIRE_TOKEN", None,
           "producers need ?token= with the write scope"),
    Option("telemetry", "max_message_rate", 0.0, float, "TELEMETRY_MAX_MESSAGE_RATE", None,
           "messages/s per connection (0 = no limit; bursts of max(100, rate))"),
]


def listener_bind(settings: Settings) -> str:
    """``[telemetry] bind`` with ``port`` (env ``PORT``) applied.

    >>> from types import SimpleNamespace as N
    >>> listener_bind(N(telemetry=N(bind="127.0.0.1:8000", port=9000)))
    '127.0.0.1:9000'
    """
    bind, port = settings.telemetry.bind, settings.telemetry.port
    if not port or bind.lower().startswith(("unix:", "fd://")):
        return bind
    host = bind.rsplit(":", 1)[0] if (bind.count(":") == 1 or bind.startswith("[") and "]:" in bind) else bind
    return f"{host}:{port}"


_OPEN_LOCK = threading.Lock()


@dataclass
class TelemetryService:
    """What the HTTP routes of the WSGI app use: the counters, and the store the queries read
    (opened in each process on first use: a PostgreSQL connection must not cross a fork)."""

    settings: Any
    metrics: TelemetryMetrics
    _store: Any = None
    _pid: int = 0

    def store(self) -> "TelemetryStore":
        import os

        if self._store is None or self._pid != os.getpid():
            with _OPEN_LOCK:  # gthread workers: one store per process, not one per first request
                if self._store is None or self._pid != os.getpid():
                    from .stores import open_store

                    self._store, self._pid = open_store(self.settings), os.getpid()
        return self._store

    def close(self, timeout: Optional[float] = None) -> None:
        import os

        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None


class TelemetryFeature:
    name = "telemetry"
    options = OPTIONS

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.telemetry.enabled)

    def build(self, ctx: Context) -> Built:
        metrics = TelemetryMetrics(ctx.state)
        service = TelemetryService(ctx.settings, metrics)
        return Built(service, metric_sources=[metrics], closers=[service.close])


def validate(settings: Settings, workers: Optional[int] = None) -> None:
    """Refuse settings the listener cannot use, before anything starts."""
    from ..config import ConfigError

    tel = settings.telemetry
    if tel.client_timeout <= tel.heartbeat_interval:
        raise ConfigError(f"[telemetry] client_timeout ({tel.client_timeout}) must be longer than "
                          f"heartbeat_interval ({tel.heartbeat_interval}): every connection would time out")
    if tel.store == "postgresql" and not tel.database_url:
        raise ConfigError("[telemetry] store postgresql needs database_url (env DATABASE_URL)")


FEATURE = TelemetryFeature()
