"""One log line per event on stdout, JSON by default or logfmt, for Loki/promtail and friends.

Lines are written with ``os.write`` in chunks of at most ``PIPE_BUF`` bytes that end on a line
boundary: the kernel keeps such writes to a pipe whole, so the lines of several gunicorn workers
sharing one stdout never tear into each other.
"""
from __future__ import annotations

import json
import os
import select
from typing import Any, List, Optional, Sequence

from ..events import Event, format_time
from ..logfmt import encode_line

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


def json_line(event: Event) -> str:
    return _dumps({"msg": "event", **event.to_dict()})


def logfmt_line(event: Event) -> str:
    pairs: List[tuple] = [("msg", "event"), ("event_id", event.id), ("time", format_time(event.time_ns)),
                          ("measurement", event.measurement)]
    pairs.extend(event.tags.items())
    pairs.extend(event.fields.items())
    # Field names are validated ([A-Za-z0-9_.-]) so no key is ever dropped by encode_line.
    return encode_line(pairs) or ""


class StdoutSink:
    name = "stdout"

    def __init__(self, fmt: str = "json", fd: int = 1) -> None:
        if fmt not in ("json", "logfmt"):
            raise ValueError(f"[stdout] format must be json or logfmt, not {fmt!r}")
        self.format_line = json_line if fmt == "json" else logfmt_line
        self.fd = fd

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "StdoutSink":
        return cls(settings.stdout.format)

    def emit(self, events: Sequence[Event]) -> None:
        write_lines(self.fd, [self.format_line(e) for e in events])

    def flush(self, timeout: Optional[float] = None) -> None:
        pass  # nothing is buffered in the process

    def close(self, timeout: Optional[float] = None) -> None:
        pass


def write_lines(fd: int, lines: Sequence[str]) -> None:
    """Write ``lines`` (without newlines) so that no write larger than PIPE_BUF splits a line."""
    chunk: List[bytes] = []
    size = 0
    for line in lines:
        data = line.encode("utf-8", "replace") + b"\n"
        if size and size + len(data) > PIPE_BUF:
            _write_all(fd, b"".join(chunk))
            chunk, size = [], 0
        chunk.append(data)
        size += len(data)
    if chunk:
        _write_all(fd, b"".join(chunk))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
