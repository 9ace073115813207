"""statskit's own log records as JSON lines on stderr (stdout is for event and session lines)."""
from __future__ import annotations

import json
import logging
import sys
import time


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
