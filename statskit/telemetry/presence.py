"""Which listener processes are alive, so that the connections of a crashed one get closed.

A connection row is "open" (``closed_at`` NULL) until its listener closes it, and the purge
never deletes an open connection. A listener process killed with -9 (or a host that lost
power) closes nothing: its rows would look open forever. So each listener process has an
instance id, written into every connection row it opens (``peer_connections.listener``) and
into ``telemetry_listeners`` with a heartbeat, refreshed every ``listener_timeout / 4``. At
start and at every heartbeat, each listener closes the connections of the instances whose
heartbeat is older than ``listener_timeout`` (``closed_at`` = their last heartbeat) and forgets
those instances. PostgreSQL compares heartbeats on the database's clock, so hosts with skewed
clocks never close each other's live rows; a live listener that was wrongly taken for dead
(its store unreachable longer than the timeout) reopens its connections at its next heartbeat.

    >>> import tempfile, os
    >>> from statskit.telemetry.store_sqlite import SQLiteTelemetryStore
    >>> store = SQLiteTelemetryStore(os.path.join(tempfile.mkdtemp(), "t.db"))
    >>> store.beat_listener("dead", [])
    0
    >>> crashed = store.open_connection("10.0.0.1:1", audit=False, listener="dead")
    >>> store.close_orphans(timeout=-1.0)  # every heartbeat is older than "1 s in the future"
    1
    >>> store.connections()[0]["closed_at"] is not None
    True
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any, Callable, Iterable, Optional

from .store import TelemetryStore

log = logging.getLogger("statskit.telemetry")


def new_instance_id() -> str:
    """``host:pid:random``: readable in the table, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Presence:
    """The heartbeat thread of one listener process. ``open_ids`` tells the connections this
    process has open (reopened if another listener took this one for dead)."""

    def __init__(self, store: TelemetryStore, timeout: float, open_ids: Callable[[], Iterable[int]],
                 instance: Optional[str] = None, lock: Optional[Any] = None) -> None:
        self.store, self.timeout, self.open_ids = store, timeout, open_ids
        self.instance = instance or new_instance_id()
        self.lock = lock or threading.Lock()  # the Ingestor's rows_lock: no close runs meanwhile
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def beat(self) -> None:
        """Heartbeat, then close the connections of listeners gone for ``timeout``."""
        with self.lock:
            reopened = self.store.beat_listener(self.instance, list(self.open_ids()))
        if reopened:
            log.warning("telemetry listener %s was taken for dead (no heartbeat for %s s): its connections "
                        "are open again", self.instance, self.timeout)
        closed = self.store.close_orphans(self.timeout)
        if closed:
            log.warning("telemetry: %d connections of listeners gone for over %s s marked closed", closed,
                        self.timeout)

    def start(self) -> None:
        try:
            self.beat()  # registered before the first connection; orphans of a crash closed now
        except Exception:
            log.exception("telemetry listener heartbeat failed (tried again in %.1f s)", self.timeout / 4)
        self._thread = threading.Thread(target=self._run, name="statskit-telemetry-presence", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            try:
                self.beat()
            except Exception:
                log.exception("telemetry listener heartbeat failed (tried again in %.1f s)", self.timeout / 4)

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop beating and leave the table (after the listener closed its connections)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.store.forget_listener(self.instance)
        except Exception:
            log.exception("telemetry: cannot remove listener %s (its rows close after %s s)", self.instance,
                          self.timeout)
