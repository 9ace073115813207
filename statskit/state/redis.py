"""The Redis backend (``[state] backend = redis``): several statskit hosts behind a load balancer
share counters, Grafana sessions and one-shot queues.

Counters are buffered per process (as with SQLite) and flushed with one MULTI/EXEC round trip
at most ``flush_interval`` apart; while Redis is down they stay in the buffer and go out when it
is back. Keyed records and numbered logs (:mod:`statskit.state.protocols`) carry the features'
generic stores; every key starts with the deployment's hash tag (``{statskit}:...``), so the
keys of one deployment sit in one Redis Cluster slot and its atomic steps may span them.

An error of a Redis that is down, loading or failing over is raised as
:class:`~statskit.state.redis_client.RedisUnavailable` (a :class:`~statskit.errors.RetryableError`):
background work retries it, a request that needs Redis right now answers 503.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Type

from ..labels import decode_labels, encode_labels
from .buffered import BufferedCounters, CounterRow
from .redis_blocks import RedisLogs, RedisRecords
from .redis_client import connect, key_tag, retryable, transient_errors

_SEP = "\x1f"  # between a counter's name and its labels' text in the hash field


class RedisState(BufferedCounters):
    name = "redis"

    def __init__(self, client: Any, prefix: str = "statskit", flush_interval: float = 1.0) -> None:
        super().__init__(flush_interval)
        self.client = client
        self.tag = key_tag(prefix)
        self.counters_key = f"{self.tag}:counters"
        self._transient: Tuple[Type[BaseException], ...] = transient_errors()
        self.records = RedisRecords(client, self.tag, self.guard)
        self.logs = RedisLogs(client, self.tag, self.guard)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Redis errors that mean "down or busy" become RetryableError (a 503, or a retry)."""
        try:
            yield
        except self._transient as exc:
            raise retryable(exc) from exc

    def _write(self, rows: List[CounterRow]) -> None:
        with self.guard():
            pipe = self.client.pipeline(transaction=True)
            for name, lk, value in rows:
                pipe.hincrbyfloat(self.counters_key, name + _SEP + encode_labels(lk), value)
            pipe.execute()

    def _read(self, prefix: str) -> List[CounterRow]:
        with self.guard():
            fields = self.client.hgetall(self.counters_key)
        rows = []
        for field, value in fields.items():
            name, _, labels = field.decode().partition(_SEP)
            if name.startswith(prefix):
                rows.append((name, decode_labels(labels), float(value)))
        return sorted(rows, key=lambda r: (r[0], r[1]))

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self._transient) or super().is_transient(exc)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.client.close()


def open_redis(data_dir: str, flush_interval: float = 1.0, options: Optional[Any] = None) -> RedisState:
    """The Redis backend from ``[state]`` (``redis_url``, ``redis_prefix``, ``sentinels``,
    ``sentinel_service``)."""
    url = getattr(options, "redis_url", "") or "redis://127.0.0.1:6379/0"
    sentinels: Sequence[str] = getattr(options, "sentinels", None) or ()
    client = connect(url, sentinels, getattr(options, "sentinel_service", "") or "mymaster")
    return RedisState(client, getattr(options, "redis_prefix", "") or "statskit", flush_interval)
