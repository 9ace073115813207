"""One-shot queues in memory: one process (tests, ``[state] backend = memory``)."""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from .queue import Delivery, QueueLimits, Reporter, ScrapeResult
from .store_common import (
    MAX_PENDING_REASON,
    SERIES_MEMORY_MS,
    TIMEOUT_REASON,
    order_times,
    plan_delivery,
    trim_cursor,
)

# --------------------------------------------------------------------------- memory


@dataclass
class _Scraper:
    cursor: int
    last_ms: int
    since_ms: int
    ahead: Set[int] = field(default_factory=set)


class MemoryQueue:
    """The queue in this process only: for tests and single-process embedding (gunicorn workers
    would each have their own, and a restart loses it)."""

    def __init__(self, limits: QueueLimits, reporter: Reporter) -> None:
        self.limits = limits
        self.reporter = reporter
        self._lock = threading.Lock()
        self._events: List[Delivery] = []  # seq-ordered; seqs only ever removed from the front
        self._seqs: List[int] = []
        self._last_seq = 0
        self._scrapers: Dict[str, _Scraper] = {}
        self._series: Dict[str, int] = {}

    def post(self, key: str, value: float, time_ms: int) -> None:
        with self._lock:
            ((time_ms, key, value),) = order_times([(time_ms, key, value)], self._series)
            self._last_seq += 1
            self._events.append(Delivery(self._last_seq, time_ms, key, value))
            self._seqs.append(self._last_seq)
            if self._last_seq % self.limits.maintain_every == 0:
                self._maintain(time_ms)

    def _after(self, cursor: int) -> List[Delivery]:
        return self._events[bisect.bisect_right(self._seqs, cursor):]

    def _pending(self, scraper: _Scraper) -> int:
        return len(self._seqs) - bisect.bisect_right(self._seqs, scraper.cursor) - len(scraper.ahead)

    def scrape(self, scraper: str, now_ms: int, consume: bool = True) -> ScrapeResult:
        with self._lock:
            if not consume:
                return self._peek(scraper)
            self._forget_silent(now_ms)
            self._trim()
            result = ScrapeResult(pending={sid: self._pending(s) for sid, s in self._scrapers.items()})
            state = self._scrapers.get(scraper)
            if state is None:
                if len(self._scrapers) >= self.limits.max_scrapers:
                    result.status = "refused"
                    self.reporter.refused(scraper, self.limits.max_scrapers)
                    self._gc(now_ms)
                    return result
                since = int(now_ms - self.limits.backfill * 1000)
                state = self._scrapers[scraper] = _Scraper(self._register_cursor(since), now_ms, since)
                result.status = "new"
                self._trim_one(scraper, state)
            plan = plan_delivery(self._after(state.cursor), state.cursor, state.ahead, state.since_ms)
            state.cursor, state.ahead, state.last_ms = plan.cursor, plan.ahead, now_ms
            result.deliveries = plan.deliveries
            self._gc(now_ms)
            return result

    def _peek(self, scraper: str) -> ScrapeResult:
        result = ScrapeResult(pending={sid: self._pending(s) for sid, s in self._scrapers.items()}, status="peek")
        state = self._scrapers.get(scraper)
        if state is not None:
            result.deliveries = plan_delivery(self._after(state.cursor), state.cursor, state.ahead,
                                              state.since_ms).deliveries
        return result

    def maintain(self, now_ms: int) -> None:
        with self._lock:
            self._maintain(now_ms)

    def _maintain(self, now_ms: int) -> None:
        self._forget_silent(now_ms)
        self._trim()
        self._gc(now_ms)
        for key in [k for k, t in self._series.items() if t < now_ms - SERIES_MEMORY_MS]:
            del self._series[key]

    def _register_cursor(self, since_ms: int) -> int:
        if self.limits.backfill > 0:
            for event in self._events:
                if event.time_ms >= since_ms:
                    return event.seq - 1
        return self._last_seq

    def _forget_silent(self, now_ms: int) -> None:
        limit = self.limits.scraper_timeout * 1000
        for sid, state in list(self._scrapers.items()):
            if now_ms - state.last_ms > limit:
                lost = self._pending(state)
                del self._scrapers[sid]
                self.reporter.forgotten(sid, (now_ms - state.last_ms) / 1000)
                self.reporter.dropped(TIMEOUT_REASON, lost, sid, "scraper forgotten with events pending")

    def _trim(self) -> None:
        for sid, state in self._scrapers.items():
            self._trim_one(sid, state)

    def _trim_one(self, sid: str, state: _Scraper) -> None:
        if self._pending(state) <= self.limits.max_pending:
            return
        pending = [e.seq for e in self._after(state.cursor) if e.seq not in state.ahead]
        cursor, dropped = trim_cursor(pending, self.limits.max_pending)
        if cursor is not None:
            state.cursor = cursor
            state.ahead = {s for s in state.ahead if s > cursor}
            self.reporter.dropped(MAX_PENDING_REASON, dropped, sid,
                                  f"over max_pending={self.limits.max_pending}, oldest first")

    def _gc(self, now_ms: int) -> None:
        upto = min((s.cursor for s in self._scrapers.values()), default=self._last_seq)
        cut = bisect.bisect_right(self._seqs, upto)
        if self.limits.backfill > 0:  # keep what a new scraper may still backfill
            cutoff = now_ms - self.limits.backfill * 1000
            keep_after = self._last_seq - self.limits.max_pending
            cut = next((i for i in range(cut) if self._events[i].time_ms >= cutoff and self._seqs[i] > keep_after),
                       cut)
        if cut:
            del self._events[:cut]
            del self._seqs[:cut]

    def flush(self, timeout: Optional[float] = None) -> bool:
        return True  # nothing is buffered

    def stored(self) -> int:
        """Events held (what bounds memory)."""
        with self._lock:
            return len(self._events)

    def close(self, timeout: Optional[float] = None) -> None:
        pass
