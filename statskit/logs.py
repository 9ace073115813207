"""statskit's own log records as JSON lines on stderr (stdout is for event and session lines)."""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Callable, Dict


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info") -> None:
    """Send the ``statskit`` loggers to stderr as JSON, once."""
    logger = logging.getLogger("statskit")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_statskit", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        handler._statskit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


class RateLimit:
    """At most one log line per key every ``interval`` seconds, for what a client can repeat
    at will (a refused scraper, a malformed frame): the log must not become the outage.

        >>> limit = RateLimit(60.0, clock=iter([0.0, 1.0, 61.0]).__next__)
        >>> limit.allow("prom-a"), limit.allow("prom-a"), limit.allow("prom-a")
        (True, False, True)

    ``suppressed(key)`` says how many lines were held back since the last one allowed.
    """

    def __init__(self, interval: float, max_keys: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        self._last: Dict[str, float] = {}
        self._held: Dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str = "") -> bool:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            if len(self._last) >= self.max_keys:  # bounded: many keys only cost a few extra lines
                self._last.clear()
            self._last[key] = now
            return True

    def suppressed(self, key: str = "") -> int:
        """Lines held back for ``key`` since the last call (and resets the count)."""
        with self._lock:
            return self._held.pop(key, 0)
