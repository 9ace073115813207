"""One log line per event on stdout, JSON by default or logfmt, for Loki/promtail and friends.

Lines are written with ``os.write`` in chunks of at most ``PIPE_BUF`` bytes that end on a line
boundary: the kernel keeps such writes to a pipe whole, so the lines of several gunicorn workers
sharing one stdout never tear into each other.
"""
from __future__ import annotations

import os
import select
from typing import Any, List, Optional, Sequence

from ..events import Event, format_time
from ..logfmt import encode_line
from ..worker import BatchWorker

PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


def json_line(event: Event) -> str:
    return '{"msg":"event",' + event.to_json()[1:]


def logfmt_line(event: Event) -> str:
    pairs: List[tuple] = [("msg", "event"), ("event_id", event.id), ("time", format_time(event.time_ns)),
                          ("measurement", event.measurement)]
    pairs.extend(event.tags.items())
    pairs.extend(event.fields.items())
    # Field names are validated ([A-Za-z0-9_.-]) so no key is ever dropped by encode_line.
    return encode_line(pairs) or ""


class StdoutSink:
    """In the server, lines are written from the durable event log by a relay (at most
    ``flush_interval`` apart, one ``write`` per batch; after a crash, lines not yet confirmed are
    written again). Given events directly (``emit``, a library pipeline without a log), lines
    are formatted in the call and written by a background thread: one ``write`` per batch, not
    per request (a system call costs as much as the rest of a small request). A full queue
    writes inline rather than drop."""

    name = "stdout"
    relay_batch = 2000  # fed from the durable log (statskit.sinks.relay): lines per write at most

    def __init__(self, fmt: str = "json", fd: int = 1, flush_interval: float = 0.05) -> None:
        if fmt not in ("json", "logfmt"):
            raise ValueError(f"[stdout] format must be json or logfmt, not {fmt!r}")
        self.format_line = json_line if fmt == "json" else logfmt_line
        self.fd = fd
        self.relay_interval = flush_interval
        self.writer = BatchWorker(self._write, max_queue=100_000, batch_size=2000, max_latency=flush_interval,
                                  max_retries=3, name="statskit-stdout-writer")

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "StdoutSink":
        return cls(settings.stdout.format)

    def prepare(self, events: Sequence[Event]) -> List[str]:
        return [self.format_line(e) for e in events]

    def send(self, lines: List[str]) -> None:
        write_lines(self.fd, lines)

    def emit(self, events: Sequence[Event]) -> None:
        lines = [self.format_line(e) for e in events]
        taken = self.writer.submit_many(lines)
        if taken < len(lines):
            self._write(lines[taken:])

    def _write(self, lines: List[str]) -> None:
        write_lines(self.fd, lines)

    def flush(self, timeout: Optional[float] = None) -> None:
        self.writer.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        self.writer.close(timeout)


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
