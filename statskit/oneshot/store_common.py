"""What every one-shot store shares: delivery planning, trimming and per-series time order."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from .queue import Delivery

log = logging.getLogger("statskit.oneshot")

MAX_PENDING_REASON = "max_pending"
TIMEOUT_REASON = "scraper_timeout"
# How long a series remembers its newest event time. Later events of it are stamped after that
# time; only an event held longer than this in a worker's write buffer could be stamped earlier.
SERIES_MEMORY_MS = 60_000
# Unused since posts commit before returning; kept because statskit.state.oneshot exported it.
FLUSH_INTERVAL = 0.05


@dataclass
class Plan:
    """What one scrape hands out and where the scraper's cursor goes."""

    deliveries: Sequence[Delivery]
    cursor: int
    ahead: Set[int]


def plan_delivery(rows: Iterable[Delivery], cursor: int, ahead: Set[int], since_ms: int = 0) -> Plan:
    """The first pending event of each series, in ``seq`` order.

    ``rows`` are the events after ``cursor`` in ``seq`` order; ``ahead`` the ones among them
    already delivered; events older than ``since_ms`` (posted before the scraper's first scrape,
    committed after it) are passed over. The cursor stops before the first deferred event;
    delivered events past it join ``ahead``.
    """
    if not ahead:  # the common case first: every row the first of its series, none too old
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return Plan([], cursor, set())
        if len({row.key for row in rows}) == len(rows) and min(row.time_ms for row in rows) >= since_ms:
            return Plan(rows, rows[-1].seq, set())
    seen: Set[str] = set()
    deliveries: List[Delivery] = []
    first_deferred: Optional[int] = None
    last = cursor
    for row in rows:
        last = row.seq
        if row.seq in ahead or row.time_ms < since_ms:
            continue
        if row.key in seen:
            if first_deferred is None:
                first_deferred = row.seq
            continue
        seen.add(row.key)
        deliveries.append(row)
    new_cursor = last if first_deferred is None else first_deferred - 1
    new_ahead = {s for s in ahead if s > new_cursor}
    new_ahead.update(d.seq for d in deliveries if d.seq > new_cursor)
    return Plan(deliveries, new_cursor, new_ahead)


def trim_cursor(pending_seqs: List[int], max_pending: int) -> Tuple[Optional[int], int]:
    """Where a cursor must move so that at most ``max_pending`` of ``pending_seqs`` (in order,
    ahead ones excluded) remain, and how many that drops: ``(None, 0)`` when under the limit."""
    excess = len(pending_seqs) - max_pending
    if excess <= 0:
        return None, 0
    return pending_seqs[excess - 1], excess


def order_times(rows: Iterable[Tuple[int, str, float]], latest: Dict[str, int]) -> List[Tuple[int, str, float]]:
    """``(time_ms, key, value)`` rows with each series' times strictly increasing; ``latest``
    (series -> newest time so far) is read and updated."""
    out = []
    for time_ms, key, value in rows:
        last = latest.get(key)
        if last is not None and time_ms <= last:
            time_ms = last + 1
        latest[key] = time_ms
        out.append((time_ms, key, value))
    return out
