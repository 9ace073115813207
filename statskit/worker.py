"""A bounded background queue that sends in batches, with retries: used by the client and the InfluxDB sink.

Modelled on sentry-python's transport worker and what mature analytics clients do
(``shared/spec/client-anchors.md``): one daemon thread, a **bounded** queue that drops the
*newest* item when full (a slow backend never adds latency to the caller), batches by count
and age, exponential backoff with jitter that honours ``Retry-After``, a ``flush(timeout)`` that
never hangs, and correct behaviour after ``os.fork()`` (gunicorn ``--preload``).

    >>> sent = []
    >>> worker = BatchWorker(sent.extend, batch_size=10, max_latency=0.05)
    >>> worker.submit("a")
    True
    >>> worker.flush(1.0)
    True
    >>> sent
    ['a']
    >>> worker.kill()
"""
from __future__ import annotations

import abc
import os
import random
import threading
import time
import weakref
from collections import deque
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, List, Optional, Sequence

from .errors import RetryableError

__all__ = ["BatchWorker", "RetryableError", "Worker", "parse_retry_after"]


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class Worker(abc.ABC):
    """What callers of a background worker use; :class:`BatchWorker` is the thread-based one."""

    @abc.abstractmethod
    def submit(self, item: Any) -> bool:
        """Queue ``item``; False (and the drop hook called) when the queue is full."""

    @abc.abstractmethod
    def submit_many(self, items: Sequence[Any]) -> int:
        """Queue as many of ``items`` as fit, in order; how many were taken."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Items queued and not yet sent or given up."""

    @abc.abstractmethod
    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush within ``timeout`` and stop; False if items were left unsent."""

    @abc.abstractmethod
    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything queued is sent or given up; False if ``timeout`` ran out first."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the thread at once; what is still queued is dropped."""


_workers: "weakref.WeakSet[BatchWorker]" = weakref.WeakSet()
# The longest Retry-After honoured (seconds): a server asking for more gets retried after this.
MAX_RETRY_AFTER = 600.0
# "Queued forever ago": what flush() sets as the oldest item's time to make the queue due now.
# Not 0.0: time.monotonic() counts from an unspecified point (boot on Linux), so now - 0.0 can be
# smaller than max_latency and the flush would wait out its timeout without sending anything.
_DUE_NOW = float("-inf")


class BatchWorker(Worker):
    """Sends batches of at most ``batch_size`` items, at the latest ``max_latency`` s after the
    oldest was queued. ``send(batch)`` raises :class:`RetryableError` to retry (at most
    ``max_retries`` times, None = until it works) or any other exception to drop the batch.
    ``on_drop(items, reason)`` hears of every item given up ("queue_full", "retries_exhausted",
    "rejected", "shutdown")."""

    def __init__(self, send: Callable[[List[Any]], Any], *, max_queue: int = 10000, batch_size: int = 100,
                 max_latency: float = 0.5, max_retries: Optional[int] = 5, backoff: float = 0.5,
                 max_backoff: float = 30.0, on_drop: Optional[Callable[[List[Any], str], None]] = None,
                 name: str = "statskit-worker") -> None:
        self.send, self.on_drop, self.name = send, on_drop, name
        self.max_queue, self.batch_size, self.max_latency = max_queue, batch_size, max_latency
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.sent = self.dropped = 0
        self._reset()
        _workers.add(self)

    def _reset(self) -> None:
        # Fresh lock, queue and no thread: what a forked child must start from, since the parent's
        # thread does not exist in the child and its lock may have been held at fork time.
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque = deque()
        self._oldest = 0.0
        self._in_flight = 0
        self._stopping = False
        self._flushes = 0  # flush() calls so far: a retry waiting when one starts goes at once
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def submit(self, item: Any) -> bool:
        if self._pid != os.getpid():
            self._reset()  # fork without register_at_fork (Python < 3.7 paths, or os.fork in C code)
        with self._cond:
            if self._stopping or len(self._queue) >= self.max_queue:
                full = "shutdown" if self._stopping else "queue_full"
            else:
                full = ""
                if not self._queue:
                    self._oldest = time.monotonic()
                self._queue.append(item)
                n = len(self._queue)
                # Wake the thread when the queue stops being empty (an idle thread waits without a
                # timeout, so it must start its max_latency clock now) and when a batch is complete.
                # Only on those transitions: a notify per call costs the caller ~0.3 us in a backlog.
                if n == 1 or n == self.batch_size:
                    self._cond.notify()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
        if full:
            self._drop([item], full)
        return not full

    def submit_many(self, items: Sequence[Any]) -> int:
        """Queue as many of ``items`` as fit under one lock; returns how many were taken.
        The rest are NOT dropped: the caller decides (the SQLite sink writes them inline)."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            if self._stopping:
                return 0
            room = max(0, self.max_queue - len(self._queue))
            taken = items[:room] if len(items) > room else items
            if taken:
                before = len(self._queue)
                if not before:
                    self._oldest = time.monotonic()
                self._queue.extend(taken)
                # As in submit(): wake the thread only when the queue stops being empty or a batch
                # completes; a wake-up per call is a system call per request.
                if not before or (before < self.batch_size <= len(self._queue)):
                    self._cond.notify()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
            return len(taken)

    def __len__(self) -> int:
        return len(self._queue) + self._in_flight

    def _drop(self, items: Sequence[Any], reason: str) -> None:
        self.dropped += len(items)
        if self.on_drop is not None:
            try:
                self.on_drop(list(items), reason)
            except Exception:
                pass  # a broken hook must not kill the worker thread

    def _next_batch(self) -> Optional[List[Any]]:
        with self._cond:
            while True:
                if self._queue and (self._stopping or len(self._queue) >= self.batch_size
                                    or time.monotonic() - self._oldest >= self.max_latency):
                    break
                if self._stopping:
                    return None
                wait = self.max_latency - (time.monotonic() - self._oldest) if self._queue else None
                self._cond.wait(wait)
            n = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._oldest = time.monotonic()
            self._in_flight = n
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._send_with_retries(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send_with_retries(self, batch: List[Any]) -> None:
        attempt = 0
        while True:
            try:
                self.send(batch)
                self.sent += len(batch)
                return
            except RetryableError as exc:
                attempt += 1
                if self.max_retries is not None and attempt > self.max_retries:
                    self._drop(batch, "retries_exhausted")
                    return
                asked = exc.retry_after is not None
                delay = min(exc.retry_after, MAX_RETRY_AFTER) if exc.retry_after is not None else self._backoff(attempt)
                if not self._wait_before_retry(delay, hurry_allowed=not asked):
                    self._drop(batch, "shutdown")
                    return
            except Exception:
                self._drop(batch, "rejected")
                return

    def _wait_before_retry(self, delay: float, hurry_allowed: bool) -> bool:
        """Sleep ``delay`` seconds; False when the worker is stopping. New items do not cut the
        wait short (the queue refilling is no reason to hammer a server that is down); a flush
        that starts meanwhile does, unless the server asked for the delay (Retry-After is
        honoured in full)."""
        deadline = time.monotonic() + delay
        with self._cond:
            flushes = self._flushes
            while not self._stopping:
                left = deadline - time.monotonic()
                # A flush that starts during this wait cuts it (once: the next wait counts anew).
                if left <= 0 or (hurry_allowed and self._flushes != flushes):
                    return True
                self._cond.wait(left)
            return False

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads the retries of many clients after an outage.
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))

    def flush(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._oldest = _DUE_NOW  # make whatever is queued due now
            self._flushes += 1  # and a retry waiting out its own backoff go now
            self._cond.notify_all()
            while self._queue or self._in_flight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 0.05))
                self._oldest = _DUE_NOW
        return True

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush for at most ``timeout`` seconds, then stop; what is left is dropped ("shutdown")."""
        drained = self.flush(timeout)
        self.kill()
        return drained

    def kill(self) -> None:
        with self._cond:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        if left:
            self._drop(left, "shutdown")


def _after_fork_in_child() -> None:
    for worker in list(_workers):
        worker._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
