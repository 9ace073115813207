"""The generic one-shot queue: on any backend's keyed records and numbered log
(:mod:`statskit.state.protocols`), for a backend without a queue tuned for it.

Events are items of the log ``oneshot``, numbered in commit order. Every scraper's cursor,
last scrape and "delivered ahead" set live in one record, changed atomically by each scrape, so
two processes (or hosts) can never hand the same event to the same scraper. Each series' newest
event time is a record of its own (``oneshot_series``), so the events of a series get strictly
increasing times across processes. Maintenance walks the log: fine for the generic path, whose
log stays bounded by ``max_pending``.

One limit the tuned stores do not have: two processes posting the same series within the same
millisecond may commit the later-stamped event first; with ``use_explicit_timestamps`` on,
Prometheus then drops the earlier-stamped one as out of order.
"""
from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import orjson

from ..errors import RetryableError, Unavailable
from ..state.protocols import KeyedRecords, NumberedLog
from ..worker import BatchWorker
from .queue import Delivery, QueueLimits, Reporter, ScrapeResult
from .store_common import (
    MAX_PENDING_REASON,
    SERIES_MEMORY_MS,
    TIMEOUT_REASON,
    log,
    plan_delivery,
    trim_cursor,
)

LOG = "oneshot"
STATE = "oneshot"          # records table of the scraper registry
SCRAPERS = "scrapers"      # its one key
SERIES = "oneshot_series"  # records table: series -> newest event time (ms)
_EVENT = struct.Struct("<qd")
_TIME = struct.Struct("<q")
_READ_ALL = 1 << 62

Scrapers = Dict[str, List[Any]]  # id -> [cursor, last_ms, since_ms, [ahead seqs]]
Report = Callable[[Reporter], None]


def _encode_event(time_ms: int, key: str, value: float) -> bytes:
    return _EVENT.pack(time_ms, value) + key.encode()


def _decode_event(seq: int, item: bytes) -> Delivery:
    time_ms, value = _EVENT.unpack_from(item)
    return Delivery(seq, time_ms, item[_EVENT.size:].decode(), value)


class RecordsQueue:
    """:class:`~statskit.oneshot.queue.OneShotQueue` on ``records`` and ``logs``."""

    def __init__(self, records: KeyedRecords, logs: NumberedLog, limits: QueueLimits, reporter: Reporter,
                 max_spooled: int = 100_000) -> None:
        self.records = records
        self.logs = logs
        self.limits = limits
        self.reporter = reporter
        # Posts that found the store down wait here, in memory, and go in, in order, once it is
        # back. (The server's Redis queue journals them on the host's disk instead, see
        # store_redis.py; its spool only carries the nudge that settles a batch in doubt.)
        self._spool = BatchWorker(self._post_spooled, max_queue=max_spooled, batch_size=500, max_latency=0.05,
                                  max_retries=None, backoff=0.1, max_backoff=2.0, name="statskit-oneshot-spool")

    # -- posting

    def post(self, key: str, value: float, time_ms: int) -> None:
        if not self._waiting():  # else behind what waits, in order
            try:
                self._post(key, value, time_ms)
                return
            except RetryableError:
                pass  # down or busy: it waits
        self._wait(key, value, time_ms)

    def _waiting(self) -> bool:
        """Whether earlier posts wait for the store (a new one goes behind them)."""
        return len(self._spool) > 0

    def _wait(self, key: str, value: float, time_ms: int) -> None:
        """Keep a post the store could not take (answered all the same): in the spool."""
        if not self._spool.submit((key, value, time_ms)):
            raise Unavailable("one-shot store unavailable and the spool of waiting posts is full")

    def _post_spooled(self, events: List[Tuple[str, float, int]]) -> None:
        for i, event in enumerate(events):
            try:
                self._post(*event)
            except RetryableError:
                del events[:i]  # the batch is retried: only what is not stored yet
                raise

    def _post(self, key: str, value: float, time_ms: int) -> None:
        def stamp(current: Dict[str, Optional[bytes]]) -> Tuple[Dict[str, Optional[bytes]], int]:
            last = current[key]
            t = time_ms
            if last is not None and t <= _TIME.unpack(last)[0]:
                t = _TIME.unpack(last)[0] + 1  # strictly after the series' newest event
            return {key: _TIME.pack(t)}, t

        stamped = self.records.update(SERIES, [key], stamp)
        last = self.logs.append(LOG, [_encode_event(stamped, key, value)])
        if last % self.limits.maintain_every == 0:
            try:
                self.maintain(stamped)
            except RetryableError:
                pass  # stored already; the clean-up runs again at the next scrape

    # -- scraping

    def _events(self, after: int) -> List[Delivery]:
        return [_decode_event(seq, item) for seq, item in self.logs.read(LOG, after, _READ_ALL)]

    def _load(self, current: Optional[bytes]) -> Scrapers:
        return {} if current is None else orjson.loads(current)

    def scrape(self, scraper: str, now_ms: int, consume: bool = True) -> ScrapeResult:
        if not consume:
            return self._peek(scraper)
        reports: List[Report] = []

        def change(current: Dict[str, Optional[bytes]]) -> Tuple[Dict[str, Optional[bytes]], ScrapeResult]:
            reports.clear()  # the change may run again when another process got there first
            scrapers = self._load(current[SCRAPERS])
            last_seq = self.logs.last(LOG)
            self._forget_silent(scrapers, now_ms, last_seq, reports)
            self._trim(scrapers, last_seq, reports)
            result = ScrapeResult(pending={sid: last_seq - s[0] - len(s[3]) for sid, s in scrapers.items()})
            state = scrapers.get(scraper)
            if state is None:
                if len(scrapers) >= self.limits.max_scrapers:
                    result.status = "refused"
                    reports.append(lambda r: r.refused(scraper, self.limits.max_scrapers))
                    return {SCRAPERS: orjson.dumps(scrapers)}, result
                since = int(now_ms - self.limits.backfill * 1000)
                state = scrapers[scraper] = [self._register_cursor(since, last_seq), now_ms, since, []]
                result.status = "new"
                self._trim({scraper: state}, last_seq, reports)  # a backfill longer than max_pending
            cursor, _, since, ahead = state
            plan = plan_delivery(self._events(cursor), cursor, set(ahead), since)
            scrapers[scraper] = [plan.cursor, now_ms, since, sorted(plan.ahead)]
            result.deliveries = plan.deliveries
            return {SCRAPERS: orjson.dumps(scrapers)}, result

        result = self.records.update(STATE, [SCRAPERS], change)
        for report in reports:
            report(self.reporter)
        self._gc(now_ms)
        return result

    def _peek(self, scraper: str) -> ScrapeResult:
        scrapers = self._load(self.records.get(STATE, SCRAPERS))
        last_seq = self.logs.last(LOG)
        result = ScrapeResult(pending={sid: last_seq - s[0] - len(s[3]) for sid, s in scrapers.items()},
                              status="peek")
        state = scrapers.get(scraper)
        if state is not None:
            cursor, _, since, ahead = state
            result.deliveries = plan_delivery(self._events(cursor), cursor, set(ahead), since).deliveries
        return result

    def _register_cursor(self, since_ms: int, last_seq: int) -> int:
        if self.limits.backfill > 0:
            for event in self._events(0):
                if event.time_ms >= since_ms:
                    return event.seq - 1
        return last_seq

    def _forget_silent(self, scrapers: Scrapers, now_ms: int, last_seq: int, reports: List[Report]) -> None:
        limit = self.limits.scraper_timeout * 1000
        for sid, (cursor, last_ms, _, ahead) in list(scrapers.items()):
            if now_ms - last_ms > limit:
                del scrapers[sid]
                lost, idle = last_seq - cursor - len(ahead), (now_ms - last_ms) / 1000

                def report(r: Reporter, sid: str = sid, lost: int = lost, idle: float = idle) -> None:
                    r.forgotten(sid, idle)
                    r.dropped(TIMEOUT_REASON, lost, sid, "scraper forgotten with events pending")

                reports.append(report)

    def _trim(self, scrapers: Scrapers, last_seq: int, reports: List[Report]) -> None:
        limit = self.limits.max_pending
        for sid, state in scrapers.items():
            cursor, _, _, ahead = state
            if last_seq - cursor - len(ahead) <= limit:
                continue
            skip: Set[int] = set(ahead)
            pending = [seq for seq, _ in self.logs.read(LOG, cursor, _READ_ALL) if seq not in skip]
            new_cursor, dropped = trim_cursor(pending, limit)
            if new_cursor is None:
                continue
            state[0], state[3] = new_cursor, [s for s in ahead if s > new_cursor]
            def report(r: Reporter, sid: str = sid, n: int = dropped) -> None:
                r.dropped(MAX_PENDING_REASON, n, sid, f"over max_pending={limit}, oldest first")

            reports.append(report)

    def _gc(self, now_ms: int) -> None:
        """Drop the events every tracked scraper has passed (keeping what a backfill may want)."""
        scrapers = self._load(self.records.get(STATE, SCRAPERS))
        last_seq = self.logs.last(LOG)
        upto = min((s[0] for s in scrapers.values()), default=last_seq)
        if self.limits.backfill > 0:
            cutoff = now_ms - self.limits.backfill * 1000
            keep_after = last_seq - self.limits.max_pending
            for event in self._events(0):
                if event.seq > upto:
                    break
                if event.time_ms >= cutoff and event.seq > keep_after:
                    upto = event.seq - 1
                    break
        self.logs.trim(LOG, upto)

    # -- upkeep

    def maintain(self, now_ms: int) -> None:
        reports: List[Report] = []

        def change(current: Dict[str, Optional[bytes]]) -> Tuple[Dict[str, Optional[bytes]], None]:
            reports.clear()
            scrapers = self._load(current[SCRAPERS])
            last_seq = self.logs.last(LOG)
            self._forget_silent(scrapers, now_ms, last_seq, reports)
            self._trim(scrapers, last_seq, reports)
            return {SCRAPERS: orjson.dumps(scrapers)}, None

        self.records.update(STATE, [SCRAPERS], change)
        for report in reports:
            report(self.reporter)
        self._gc(now_ms)
        old = [k for k, v in self.records.scan(SERIES) if _TIME.unpack(v)[0] < now_ms - SERIES_MEMORY_MS]
        if old:
            self.records.delete(SERIES, old)

    def flush(self, timeout: Optional[float] = None) -> bool:
        return self._spool.flush(timeout)  # a post is committed before it returns, or spooled

    def stored(self) -> int:
        return len(self.logs.read(LOG, 0, _READ_ALL))

    def close(self, timeout: Optional[float] = None) -> None:
        if not self._spool.close(timeout):
            log.error("one-shot queue stopped with %d post(s) not stored (the store stayed down)", len(self._spool))

