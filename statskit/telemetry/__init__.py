"""Telemetry streams (the tetcore-analytics / substrate-analytics ingestion).

Nodes started with ``--telemetry-url 'ws://HOST:PORT/ 5'`` stream one JSON object per
websocket frame. Each connection gets a ``peer_connections`` row; each message with an RFC 3339
``ts`` is stored whole in ``substrate_logs`` (or ``tetcore_logs``), batched and committed by
:class:`~statskit.telemetry.writer.TelemetryWriter`; messages of ``/`` expire after
``LOG_EXPIRY_H`` (:mod:`~statskit.telemetry.purge`), those of ``/audit`` never do.

Modules: :mod:`.parsing` (frames, peer ids, times), :mod:`.ingest` (per connection),
:mod:`.writer`, :mod:`.store_sqlite` / :mod:`.store_postgres`, :mod:`.purge`, :mod:`.metrics`.
The websocket server itself is ``statskit_server.telemetry_asgi``.
"""
from .feature import FEATURE, TelemetryService
from .ingest import Connection, Ingestor
from .parsing import FrameError, Message, NodeInfo, node_info, parse_frame, parse_rfc3339
from .store import Row, StoreUnavailable, TelemetryStore
from .stores import open_store
from .writer import TelemetryWriter

__all__ = ["FEATURE", "Connection", "FrameError", "Ingestor", "Message", "NodeInfo", "Row", "StoreUnavailable",
           "TelemetryService", "TelemetryStore", "TelemetryWriter", "node_info", "open_store", "parse_frame",
           "parse_rfc3339"]
