"""Counters buffered per process and flushed at most ``flush_interval`` apart: what a shared
backend (SQLite, Redis) builds on, so a request costs no write.

A subclass writes a batch with ``_write(rows)`` (one transaction or round trip) and reads with
``_read(prefix)``; a batch that fails goes back into the buffer, so no acknowledged increment is
lost while the store is down: it goes out with the next flush that succeeds.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Dict, List, Optional, Tuple

from ..errors import is_storage_full, is_transient
from ..logs import RateLimit
from ..labels import LabelKey, Labels, label_key
from ..process import pid

CounterRow = Tuple[str, LabelKey, float]
log = logging.getLogger("statskit.state")
_errors = RateLimit(60.0)


class BufferedCounters:
    def __init__(self, flush_interval: float = 1.0) -> None:
        self.flush_interval = flush_interval
        self._lock = threading.Lock()  # the pending dict
        self._flush_lock = threading.Lock()  # one write of it at a time (see flush)
        self._pending: Dict[Tuple[str, LabelKey], float] = {}
        self._flusher_pid = 0
        self._stop = threading.Event()
        self._flusher: Optional[threading.Thread] = None
        _live.add(self)

    # -- what a subclass provides

    def _write(self, rows: List[CounterRow]) -> None:
        """Add ``rows`` to the shared counters, all or nothing."""
        raise NotImplementedError

    def _read(self, prefix: str) -> List[CounterRow]:
        """Every shared counter whose name starts with ``prefix``, sorted by name and labels."""
        raise NotImplementedError

    # -- the counters API

    def incr(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = (name, label_key(labels))
        with self._lock:
            self._pending[key] = self._pending.get(key, 0.0) + amount
        if self._flusher_pid != pid():
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
            self._stop = threading.Event()
            flusher = self._flusher = threading.Thread(target=self._run_flusher, name="statskit-state-flush",
                                                       daemon=True)
        flusher.start()

    def _run_flusher(self) -> None:
        stop = self._stop
        while not stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:
                # Down or busy: retried on the next tick, the increments stay pending. Anything
                # else is logged (once a minute), and retried too: a dead flusher would strand
                # every later increment of this process.
                if not self.is_transient(exc) and _errors.allow(type(self).__name__):
                    log.exception("%s: flushing counters failed; retrying", type(self).__name__)

    def flush(self) -> None:
        # One flush at a time: a flush that found nothing pending because the flusher thread had
        # just taken it returned before that write landed, so flush() then counters() could
        # miss this process's own increments (seen in CI with a 50 ms flush interval).
        with self._flush_lock:
            self._before_flush()
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            try:
                self._write([(name, lk, value) for (name, lk), value in pending.items()])
            except BaseException:
                self._requeue([(name, lk, value) for (name, lk), value in pending.items()])
                raise

    def _before_flush(self) -> None:
        """Run under the flush lock before the pending increments are taken (a subclass's)."""

    def _after_fork(self) -> None:
        """In a forked child: new locks, and no copy of the parent's pending increments (the
        parent flushes those)."""
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = {}

    def _requeue(self, rows: List[CounterRow]) -> None:
        """Put rows back into the buffer (for the next flush): counters never lose acknowledged
        increments."""
        with self._lock:
            for name, lk, value in rows:
                self._pending[(name, lk)] = self._pending.get((name, lk), 0.0) + value

    def counters(self, prefix: str = "") -> List[CounterRow]:
        try:
            self.flush()
        except Exception as exc:
            # A store that cannot write (full disk) can often still be read: answer with what
            # it holds (this process's pending increments follow once it can write again).
            if not is_storage_full(exc):
                raise
        return self._read(prefix)

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def close(self) -> None:
        self._stop.set()
        flusher = self._flusher
        if flusher is not None and flusher.is_alive() and flusher is not threading.current_thread():
            flusher.join(5.0)  # a flush in progress finishes (or puts its increments back) first
        self.flush()
        _live.discard(self)


_live: "weakref.WeakSet[BufferedCounters]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock a thread of the parent held at fork() stays held in the child, whose copy of that
    # thread does not exist: new locks (the pending increments are the parent's, flushed by it).
    for state in list(_live):
        state._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _flush_at_exit() -> None:
    for state in list(_live):
        try:
            state.flush()
        except Exception:
            pass  # the store is gone; nothing more can be done at exit
