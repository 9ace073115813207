"""Expiry: every ``PURGE_INTERVAL_S``, messages of ``/`` connections older than ``LOG_EXPIRY_H``
are deleted in short transactions (ingestion goes on between them); ``/audit`` data is never
purged, and the row of a connection that is still open is kept (the original deleted it).

Each listener process runs a :class:`Purger` thread, but a round is claimed in the store
(:meth:`~statskit.telemetry.store.TelemetryStore.claim_purge`), so it runs once per interval per
store, whatever the number of workers or hosts.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

from .parsing import format_utc
from .store import TelemetryStore

log = logging.getLogger("statskit.telemetry")


def cutoff(expiry_hours: float, now: Optional[datetime] = None) -> str:
    """The stored-time form of "``expiry_hours`` ago" (UTC).

    >>> cutoff(3, datetime(2020, 1, 1, 12, tzinfo=timezone.utc))
    '2020-01-01T09:00:00.000000'
    """
    now = now or datetime.now(timezone.utc)
    return format_utc((now - timedelta(hours=expiry_hours)).astimezone(timezone.utc).replace(tzinfo=None))


def purge_once(store: TelemetryStore, expiry_hours: float, interval: float) -> Optional[int]:
    """Run a purge round if no other process ran one within ``interval``; rows deleted or None."""
    if not store.claim_purge(interval * 0.9, time.time()):  # 0.9: timer jitter must not skip a round
        return None
    deleted = store.purge(cutoff(expiry_hours))
    if deleted:
        log.info("telemetry purge: %d messages older than %s h deleted", deleted, expiry_hours)
    return deleted


class Purger:
    def __init__(self, store: TelemetryStore, expiry_hours: float, interval: float) -> None:
        self.store, self.expiry_hours, self.interval = store, expiry_hours, interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="statskit-telemetry-purge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(min(self.interval, 60.0) if self.interval > 60 else self.interval):
            try:
                purge_once(self.store, self.expiry_hours, self.interval)
            except Exception:
                log.exception("telemetry purge failed (tried again next round)")

    def close(self, timeout: Optional[float] = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
