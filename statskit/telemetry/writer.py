"""Batched, retried writes into the telemetry store.

Messages wait in a bounded buffer and go to the store in one committed transaction of at most
``DB_BATCH_SIZE`` rows, at the latest ``DB_SAVE_LATENCY_MS`` after the oldest arrived
(whichever comes first; the original flushed on time only). A write that fails is retried with
backoff until it succeeds or the process stops (the original logged and dropped the batch); a
message is counted as stored only once its transaction committed. A full buffer drops the new
message and counts it (``statskit_telemetry_dropped_total{reason="buffer_full"}``).
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional

from ..errors import RetryableError
from ..state import StateStore
from ..worker import BatchWorker
from .metrics import BUFFER_DROPS, REJECTED, STORED
from .store import Row, TelemetryStore

log = logging.getLogger("statskit.telemetry")

_REASONS = {"queue_full": "buffer_full", "shutdown": "shutdown", "rejected": "rejected",
            "retries_exhausted": "retries_exhausted"}


class TelemetryWriter:
    def __init__(self, store: TelemetryStore, state: StateStore, *, batch_size: int = 1024,
                 max_latency: float = 0.1, max_buffer: int = 100000, points: Any = None) -> None:
        self.store, self.state = store, state
        self.points = points  # statskit.telemetry.points.PointSinks, fed after each commit
        self.worker = BatchWorker(self._send, max_queue=max_buffer, batch_size=batch_size, max_latency=max_latency,
                                  max_retries=None, backoff=0.2, max_backoff=5.0, on_drop=self._dropped,
                                  name="statskit-telemetry-writer")

    def submit(self, row: Row) -> bool:
        return self.worker.submit(row)

    def _send(self, batch: List[Row]) -> None:
        try:
            refused = self.store.insert_messages(batch) or 0
        except RetryableError as exc:
            log.warning("telemetry store write of %d messages failed, retrying: %s", len(batch), exc)
            raise
        except Exception as exc:
            # Any store failure is retried: a message the node sent is never dropped silently.
            log.exception("telemetry store write of %d messages failed, retrying", len(batch))
            raise RetryableError(str(exc)) from exc
        self.state.incr(STORED, (), len(batch) - refused)
        if self.points is not None:
            try:
                self.points.emit(batch)  # queued only: the InfluxDB sink writes in its own thread
            except Exception:
                log.exception("telemetry: cannot queue %d InfluxDB points", len(batch))
        if refused:
            self.state.incr(REJECTED, (("reason", "store_refused"),), refused)
            log.error("telemetry store refused %d messages of a batch of %d", refused, len(batch))

    def _dropped(self, items: List[Any], reason: str) -> None:
        self.state.incr(BUFFER_DROPS, (("reason", _REASONS.get(reason, reason)),), len(items))
        log.error("telemetry: %d messages dropped (%s)", len(items), reason)

    def flush(self, timeout: Optional[float] = None) -> bool:
        return self.worker.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        drained = self.worker.close(timeout)
        if self.points is not None:
            self.points.close(timeout)
        self.state.flush()
        return drained

    def __len__(self) -> int:
        return len(self.worker)
