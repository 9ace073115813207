"""What happens to each frame of a connection, independent of the websocket server.

    >>> import tempfile
    >>> from statskit.state.memory import MemoryState
    >>> from statskit.telemetry.store_sqlite import SQLiteTelemetryStore
    >>> store, state = SQLiteTelemetryStore(tempfile.mktemp()), MemoryState()
    >>> writer = TelemetryWriter(store, state)
    >>> ingest = Ingestor(store, writer, state)
    >>> conn = ingest.open("10.0.0.1:30333", audit=False)
    >>> conn.frame(b'{"msg": "system.connected", "ts": "2021-01-01T00:00:00Z", "network_id": "QmA"}')
    True
    >>> conn.frame(b'not json')
    False
    >>> writer.flush(5.0)
    True
    >>> conn.close(); store.connections()[0]["peer_id"], store.count_messages()
    ('QmA', 1)
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Dict, Optional, Set, Union

from ..state import StateStore
from .metrics import BYTES, CONNECTED, DROPPED, MESSAGES, RATE_LIMITED, REJECTED
from .parsing import FrameError, decode, flatten_envelope, node_info, to_message
from .store import Row, TelemetryStore
from .writer import TelemetryWriter

log = logging.getLogger("statskit.telemetry")

COUNT_EVERY = 64  # frames between two additions to the shared counters (and at every heartbeat)


class RateLimitedLog:
    """At most one log line per ``reason`` every ``every`` seconds, saying how many it stands for."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last: Dict[str, float] = {}
        self._skipped: Dict[str, int] = {}

    def warning(self, reason: str, text: str, *args: object) -> bool:
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) < self.every:
            self._skipped[reason] = self._skipped.get(reason, 0) + 1
            return False
        skipped = self._skipped.pop(reason, 0)
        self._last[reason] = now
        log.warning(text + (f" (and {skipped} more since the last such line)" if skipped else ""), *args)
        return True


class TokenBucket:
    """``rate`` messages per second with bursts of ``burst`` (rate 0: no limit)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self.tokens, self.stamp = self.burst, time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Ingestor:
    """Opens connections on one store and writer; shared by every connection of a process."""

    def __init__(self, store: TelemetryStore, writer: TelemetryWriter, state: StateStore, *,
                 max_rate: float = 0.0, burst: float = 0.0, errors_log: Optional[RateLimitedLog] = None,
                 listener_id: Optional[str] = None) -> None:
        self.store, self.writer, self.state = store, writer, state
        self.listener_id = listener_id  # written into each connection row (presence.py)
        self.open_ids: Set[int] = set()
        # Held around closing a row and around a heartbeat that may reopen this process's
        # rows (presence.py), so that a row being closed is never reopened.
        self.rows_lock = threading.Lock()
        self.with_tags = writer.points is not None
        self.max_rate, self.burst = max_rate, burst or max(100.0, max_rate)
        self.errors_log = errors_log or RateLimitedLog()

    def open(self, ip_addr: str, audit: bool) -> "Connection":
        """A new connection: its row is committed before the websocket is accepted."""
        connection_id = self.store.open_connection(ip_addr, audit, self.listener_id)
        self.open_ids.add(connection_id)
        self.state.incr(CONNECTED)
        return Connection(self, connection_id, ip_addr, audit)


class Connection:
    def __init__(self, ingest: Ingestor, connection_id: int, ip_addr: str, audit: bool) -> None:
        self.ingest, self.id, self.ip_addr, self.audit = ingest, connection_id, ip_addr, audit
        self.peer_id: Optional[str] = None
        self.tags: Optional[Dict[str, str]] = {} if ingest.with_tags else None
        self.bucket = TokenBucket(ingest.max_rate, ingest.burst)
        self.closed = False
        # Frame and byte counts, added to the shared state every COUNT_EVERY frames (and at
        # close): two state increments per frame were a tenth of the listener's CPU.
        self._frames = self._bytes = self._valid = 0

    def frame(self, data: Union[bytes, str]) -> bool:
        """Handle one frame; True when its message went to the write buffer. Never raises for
        bad input: it is counted (``statskit_telemetry_rejected_total{reason}``) and logged."""
        ingest, state = self.ingest, self.ingest.state
        self._bytes += len(data)
        self._frames += 1
        if self._frames >= COUNT_EVERY:
            self.count()
        try:
            obj = decode(data)
            self._valid += 1
            obj = flatten_envelope(obj)
            if self.peer_id is None:
                self._learn_peer(obj)
            message = to_message(obj)
        except FrameError as exc:
            state.incr(REJECTED, (("reason", exc.reason),))
            ingest.errors_log.warning(exc.reason, "telemetry frame from %s not stored: %s", self.ip_addr, exc)
            return False
        if not self.bucket.take():
            state.incr(RATE_LIMITED)
            ingest.errors_log.warning("rate", "telemetry from %s over the message rate limit: dropped", self.ip_addr)
            return False
        return ingest.writer.submit(Row(self.id, self.audit, message, self.tags))

    def count(self) -> None:
        """Add the frames counted so far to the shared state (``/metrics``)."""
        state = self.ingest.state
        if self._bytes:
            state.incr(BYTES, (), self._bytes)
        if self._valid:
            state.incr(MESSAGES, (), self._valid)
        self._frames = self._bytes = self._valid = 0

    def _learn_peer(self, obj: dict) -> None:
        info = node_info(obj)
        if info is not None:
            # Committed at once (as the original's UPDATE), so /nodes shows the node before its
            # first batch of messages is written. A store that is down: tried again with the
            # next message that names the peer (the message itself still goes to the buffer).
            try:
                self.ingest.store.update_connection(self.id, info)
            except Exception as exc:
                self.ingest.errors_log.warning("store", "telemetry: cannot record the peer of connection %s: %s",
                                               self.id, exc)
                return
            self.peer_id = info.peer_id
            if self.tags is not None:  # a new dict: rows already queued keep what they had
                self.tags = {"peer_id": info.peer_id, "name": info.name or "", "chain": info.chain or ""}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.count()
        self.ingest.state.incr(DROPPED)
        with self.ingest.rows_lock:
            self.ingest.open_ids.discard(self.id)
            try:
                self.ingest.store.close_connection(self.id)
            except Exception:
                log.exception("telemetry: cannot mark connection %s closed", self.id)
