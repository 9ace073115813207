"""The live feed (``ws://HOST:PORT/feed``): subscribers name a ``(peer_id, msg)`` pair and get
the stored messages of that pair pushed as they arrive, oldest first, each row once.

One poll task per subscribed pair, whatever the number of subscribers (the original polled
every pair every second into a per-pair cache): it asks the store for the rows after the
oldest position any of the pair's subscribers has reached, then gives each subscriber the rows
after its own position. A new subscriber wakes its pair's task at once, so its first push (the
rows after its ``start_time``) does not wait for the next tick.

Requests (JSON text frames)::

    {"peer_id": "Qm..", "msg": "tracing.profiling", "interest": "subscribe",
     "start_time": "2020-03-25T13:17:09", "aggregate_type": "mean", "aggregate_interval": 5}
    {"peer_id": "Qm..", "msg": "tracing.profiling", "interest": "unsubscribe"}

Pushes: ``{"peer_message": {"peer_id", "msg"}, "data": [...]}``; errors ``{"error": "..."}``.

    >>> aggregate([("2020-01-01T00:00:01.000000", {"time": 10, "name": "n", "target": "t"}),
    ...            ("2020-01-01T00:00:02.000000", {"time": 30, "name": "n", "target": "t"})], "mean", 5)
    [{'time': 20, 'name': 'n', 'target': 't', 'values': '', 'created_at': '2020-01-01T00:00:00'}]
"""
from __future__ import annotations

import asyncio
import logging
import math
import statistics
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

from ..errors import StatskitError
from .api import chrono, parse_time
from .parsing import format_utc, now_utc
from .store import TelemetryStore

log = logging.getLogger("statskit.telemetry")

AGGREGATES = ("mean", "median", "min", "max", "percentile90")
HIDDEN = ("ts", "id", "msg", "level", "line")  # the original's rows leave these out
MAX_ROWS = 10000  # per poll of a pair (more: polled again at once)
MAX_SUBSCRIPTIONS = 100  # per feed connection

Send = Callable[[Dict[str, Any]], Awaitable[None]]
Key = Tuple[str, str]
Position = Tuple[str, int]


class FeedError(ValueError):
    """A request the feed refuses: sent back as ``{"error": message}``."""


def _agg(values: List[float], kind: str) -> float:
    if kind == "mean":
        return statistics.fmean(values)
    if kind == "median":
        return statistics.median(values)
    if kind == "min":
        return min(values)
    if kind == "max":
        return max(values)
    ordered = sorted(values)  # percentile90: nearest rank
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def aggregate(rows: List[Tuple[str, Dict[str, Any]]], kind: str, interval: int) -> List[Dict[str, Any]]:
    """Rows ``(created_at, logs)`` grouped by interval, ``target`` and ``name``: the
    ``kind`` of their ``time`` values (rows without a numeric ``time`` are left out)."""
    groups: Dict[Tuple[str, Any, Any], List[float]] = {}
    for created_at, logs in rows:
        value = logs.get("time")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        when = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%f")
        start = datetime(1970, 1, 1) + timedelta(seconds=(int((when - datetime(1970, 1, 1)).total_seconds())
                                                          // interval) * interval)
        groups.setdefault((format_utc(start), logs.get("target"), logs.get("name")), []).append(float(value))
    return [{"time": int(_agg(values, kind)), "name": name, "target": target, "values": "",
             "created_at": chrono(bucket)} for (bucket, target, name), values in sorted(groups.items(), key=str)]


class Subscription:
    def __init__(self, send: Send, key: Key, position: Position, aggregate_type: Optional[str],
                 interval: int) -> None:
        self.send, self.key, self.position = send, key, position
        self.aggregate_type, self.interval = aggregate_type, interval

    def push(self, rows: List[Tuple[int, str, Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
        """The push of the rows after this subscriber's position (None: nothing new); moves it on."""
        fresh = [r for r in rows if (r[1], r[0]) > self.position]
        if not fresh:
            return None
        self.position = (fresh[-1][1], fresh[-1][0])
        if self.aggregate_type:
            data = aggregate([(r[1], r[2]) for r in fresh], self.aggregate_type, self.interval)
        else:
            data = [{**{k: v for k, v in r[2].items() if k not in HIDDEN}, "created_at": chrono(r[1])} for r in fresh]
        return {"peer_message": {"peer_id": self.key[0], "msg": self.key[1]}, "data": data}


def parse_request(doc: Any) -> Tuple[str, Key, Optional[Position], Optional[str], int]:
    """``(interest, (peer_id, msg), start position, aggregate_type, aggregate_interval)``."""
    if not isinstance(doc, dict):
        raise FeedError("a request is a JSON object with peer_id, msg and interest")
    for field in ("peer_id", "msg"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise FeedError(f"{field} is required (a string)")
    interest = doc.get("interest")
    if interest not in ("subscribe", "unsubscribe"):
        raise FeedError('interest must be "subscribe" or "unsubscribe"')
    key = (doc["peer_id"], doc["msg"])
    if interest == "unsubscribe":
        return interest, key, None, None, 0
    start = doc.get("start_time")
    try:
        # after every row of that instant: only rows strictly newer than start_time, as the original
        position = (parse_time(start, "start_time") if start else now_utc(), 2**63 - 1)
    except StatskitError as exc:
        raise FeedError(exc.message) from None
    kind = doc.get("aggregate_type")
    if kind is not None and kind not in AGGREGATES:
        raise FeedError(f"aggregate_type must be one of {', '.join(AGGREGATES)}")
    interval = doc.get("aggregate_interval", 1 if kind else 0)
    if kind and (isinstance(interval, bool) or not isinstance(interval, int) or not 0 < interval <= 86400):
        raise FeedError("aggregate_interval must be a number of seconds from 1 to 86400")
    return interest, key, position, kind, interval if kind else 0


class Pair:
    """The poll task of one ``(peer_id, msg)`` and its subscribers."""

    def __init__(self, hub: "FeedHub", key: Key) -> None:
        self.hub, self.key = hub, key
        self.subscriptions: Set[Subscription] = set()
        self.wake = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.subscriptions:
            self.wake.clear()
            oldest = min(s.position for s in self.subscriptions)
            try:
                rows = await loop.run_in_executor(None, self.hub.store.pair_rows, self.key[0], self.key[1],
                                                  oldest, MAX_ROWS)
                self.hub.polls += 1
            except Exception as exc:  # a store that is down: tried again next tick
                log.warning("telemetry feed: cannot read %s/%s: %s", self.key[0], self.key[1], exc)
                rows = []
            for sub in list(self.subscriptions):
                message = sub.push(rows)
                if message is not None:
                    try:
                        await sub.send(message)
                    except Exception:  # its connection is gone: its handler unsubscribes it
                        pass
            if len(rows) == MAX_ROWS:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self.hub.interval)
            except asyncio.TimeoutError:
                pass


class FeedHub:
    """Every subscription of one listener process."""

    def __init__(self, store: TelemetryStore, interval: float = 1.0) -> None:
        self.store, self.interval = store, interval
        self.pairs: Dict[Key, Pair] = {}
        self.polls = 0

    def subscribe(self, send: Send, key: Key, position: Position, aggregate_type: Optional[str] = None,
                  interval: int = 0) -> Subscription:
        sub = Subscription(send, key, position, aggregate_type, interval)
        pair = self.pairs.get(key)
        if pair is None or pair.task.done():
            pair = self.pairs[key] = Pair(self, key)
        pair.subscriptions.add(sub)
        pair.wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        pair = self.pairs.get(sub.key)
        if pair is None:
            return
        pair.subscriptions.discard(sub)
        if not pair.subscriptions:
            del self.pairs[sub.key]
            pair.wake.set()  # its task sees no subscriber and ends

    async def close(self) -> None:
        pairs, self.pairs = list(self.pairs.values()), {}
        for pair in pairs:
            pair.task.cancel()
        await asyncio.gather(*(p.task for p in pairs), return_exceptions=True)
