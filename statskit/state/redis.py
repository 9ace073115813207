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

class RedisState(BufferedCounters):
    name = "redis"

    def __init__(self, client: Any, prefix: str = "statskit", flush_interval: float = 1.0) -> None:
        super().__init__(flush_interval)
        self.client = client
        self.tag = key_tag(prefix)
        self.names_key = f"{self.tag}:counter-names"
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
            for name in {name for name, _, _ in rows}:
                pipe.sadd(self.names_key, name)
            for name, lk, value in rows:
                pipe.hincrbyfloat(self._counter_key(name), encode_labels(lk), value)
            pipe.execute()

    def _counter_key(self, name: str) -> str:
        # One hash per counter name (fields: label sets): a scrape reads only the families it asks.
        return f"{self.tag}:c:{name}"

    def _read(self, prefix: str) -> List[CounterRow]:
        with self.guard():
            names = sorted(n for n in (m.decode() for m in self.client.smembers(self.names_key)) if n.startswith(prefix))
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._counter_key(name))
            hashes = pipe.execute() if names else []
        rows: List[CounterRow] = []
        for name, fields in zip(names, hashes):
            rows += sorted((name, decode_labels(labels.decode()), float(value)) for labels, value in fields.items())
        return rows

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
