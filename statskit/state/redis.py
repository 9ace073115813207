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

Failover: Redis replicates asynchronously, so a replica that Sentinel promotes may lack the last
flushes the old master acknowledged, and the counters would step back. Every flush therefore
also sets the process's own mark (``{tag}:writer:<host>:<pid>:<nonce>``) to its flush number, in
the same MULTI, and reads the previous one: a mark behind the last flush this process made
means Redis lost the flushes after it, and the process sends their increments again (it keeps
its flushes of the last :data:`REPLAY_SECONDS`). A flush's rows and mark replicate in one
transaction, so a flush is either all there or all gone: nothing is counted twice. The mark
also tells, after a flush that failed, whether Redis applied it before the connection broke
(:meth:`RedisState._settle`): then its increments, back in the buffer, are not sent again.
"""
from __future__ import annotations

import secrets
import socket
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Type

from ..errors import RetryableError
from ..labels import decode_labels, encode_labels
from ..process import pid
from .buffered import BufferedCounters, CounterRow
from .redis_blocks import RedisLogs, RedisRecords
from .redis_client import (
    RedisUnavailable,
    connect,
    is_unavailable_reply,
    key_tag,
    retryable,
    transient_errors,
)

REPLAY_SECONDS = 300.0  # how far back a process can send again what a failover lost
REPLAY_ROWS = 200_000   # at most this many rows kept for it (the oldest flushes go first)
MARK_TTL = 7 * 86400    # a writer's mark outlives any replay window, then expires with its process
Flushed = Tuple[int, float, List[CounterRow]]  # flush number, when (monotonic), its rows


class ReplyLost(RedisUnavailable):
    """The connection broke after a script was sent: Redis may or may not have run it."""


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
        self._writer_pid = 0
        self._writer = ""
        self._seq = 0  # this process's last flush that Redis acknowledged
        self._flushed: Deque[Flushed] = deque()
        self._flushed_rows = 0
        self._doubt: Optional[Tuple[int, List[CounterRow]]] = None  # a failed flush: number, rows
        self._own_conn: Optional[Any] = None  # run_serially()'s connection, of process _own_pid
        self._own_pid = 0
        self._own_lock = threading.Lock()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Redis errors that mean "down or busy" become RetryableError (a 503, or a retry)."""
        try:
            yield
        except Exception as exc:
            if self.is_transient(exc) and not isinstance(exc, RetryableError):
                raise retryable(exc) from exc
            raise

    def run_serially(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``script`` (a registered Script) on this process's own connection: for a caller whose
        calls queue anyway (the one-shot posts' GroupCall). A client call checks a connection out
        of the pool and back, and records its timings: 80 us of CPU a call here, where this takes
        45. Call it under :meth:`guard`. A connection that Redis closed meanwhile is replaced
        before sending; after any error but a plain error reply the connection is dropped (the
        next call connects again, to the current master under Sentinel). A failure after the
        script was sent raises :class:`ReplyLost`: Redis may have run it."""
        from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

        if self._own_pid != pid():  # a forked child: its own lock and connection (not the parent's)
            self._own_lock, self._own_conn, self._own_pid = threading.Lock(), None, pid()
        with self._own_lock:
            conn = self._own_conn
            if conn is None:
                conn = self._own_conn = self.client.connection_pool.make_connection()
            sent = False
            try:
                if conn.can_read():  # Redis closed it (a restart, an idle timeout): a new one
                    conn.disconnect()
                conn.connect()  # a no-op once connected; a Sentinel's connection asks for the master here
                conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                sent = True
                try:
                    return conn.read_response()
                except NoScriptError:  # a Redis restarted or flushed since: load it, once
                    sent = False
                    conn.send_command("SCRIPT", "LOAD", script.script)
                    conn.read_response()
                    conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    sent = True
                    return conn.read_response()
            except ResponseError as exc:
                if "READONLY" in str(exc) and not isinstance(exc, ReadOnlyError):
                    # Redis 6 reports a script's write on a replica as a generic script error
                    conn.disconnect()
                    raise ReadOnlyError(str(exc)) from exc
                if self.is_transient(exc):
                    conn.disconnect()  # NOREPLICAS, a demoted master: ask again on a new connection
                raise
            except BaseException as exc:
                conn.disconnect()  # a half-read reply would be the next call's answer
                if sent and self.is_transient(exc):
                    raise ReplyLost(f"redis unavailable after the script was sent: {exc}") from exc
                raise

    def _before_flush(self) -> None:
        # Under the base class's flush lock (one flush at a time: flush numbers in commit order).
        self._settle()

    def _write(self, rows: List[CounterRow]) -> None:
        try:
            lost = self._send(rows)
        except Exception:
            self._doubt = (self._seq + 1, rows)  # flush() puts them back; the next _settle() decides
            raise
        if lost:
            try:
                self._send(lost)
            except Exception:
                # This flush is stored (so it must not be put back): the lost rows wait in
                # the buffer for the next one instead.
                self._doubt = (self._seq + 1, lost)
                self._requeue(lost)

    def _settle(self) -> None:
        """After a flush that failed, its rows are back in the buffer. If it failed after Redis
        applied it (the connection broke before the answer came), the mark says so: its rows
        are taken out of the buffer again instead of being counted twice."""
        if self._doubt is None or self._writer_pid != pid():
            return
        seq, doubt = self._doubt
        with self.guard():
            stored = self.client.get(self._writer)
        self._doubt = None
        if stored is None or int(stored) != seq:
            return  # it never landed: the next flush sends it (again)
        self._remember(seq, doubt, seq)
        self._seq = seq
        with self._lock:
            for name, lk, value in doubt:
                left = self._pending.get((name, lk), 0.0) - value
                if left > 1e-9:
                    self._pending[(name, lk)] = left
                else:
                    self._pending.pop((name, lk), None)

    def _send(self, rows: List[CounterRow]) -> List[CounterRow]:
        """One MULTI/EXEC: ``rows`` and this process's mark; returns the rows of this process's
        earlier flushes that the mark shows Redis has lost (a failover, a restart without AOF)."""
        mark = self._own_writer()
        seq = self._seq + 1
        with self.guard():
            pipe = self.client.pipeline(transaction=True)
            pipe.get(mark)
            for name in {name for name, _, _ in rows}:
                pipe.sadd(self.names_key, name)
            for name, lk, value in rows:
                pipe.hincrbyfloat(self._counter_key(name), encode_labels(lk), value)
            pipe.set(mark, seq, ex=MARK_TTL)
            previous = pipe.execute()[0]
        lost = self._remember(seq, rows, int(previous) if previous is not None else 0)
        self._seq = seq
        return lost

    def process_key(self, kind: str) -> str:
        """A new key of this process alone (``{tag}:<kind>:<host>:<pid>:<nonce>``): a mark that
        tells which of its writes Redis has (the counter flushes', the one-shot batches')."""
        return f"{self.tag}:{kind}:{socket.gethostname()}:{pid()}:{secrets.token_hex(4)}"

    def _own_writer(self) -> str:
        if self._writer_pid != pid():  # a forked worker writes (and replays) its own flushes only
            self._writer_pid = pid()
            self._writer = self.process_key("writer")
            self._seq, self._flushed, self._flushed_rows, self._doubt = 0, deque(), 0, None
        return self._writer

    def _remember(self, seq: int, rows: List[CounterRow], previous: int) -> List[CounterRow]:
        now = time.monotonic()
        flushed = self._flushed
        while flushed and (flushed[0][1] < now - REPLAY_SECONDS or self._flushed_rows > REPLAY_ROWS):
            self._flushed_rows -= len(flushed.popleft()[2])
        lost: Dict[Tuple[str, Any], float] = {}
        while flushed and previous < self._seq and flushed[-1][0] > previous:
            _, _, gone = flushed.pop()  # acknowledged by a master whose successor never got it
            self._flushed_rows -= len(gone)
            for name, lk, value in gone:
                lost[(name, lk)] = lost.get((name, lk), 0.0) + value
        flushed.append((seq, now, rows))
        self._flushed_rows += len(rows)
        return [(name, lk, value) for (name, lk), value in lost.items()]

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
            # Sorted by stored text, as SQLite's ORDER BY: bytes compare at C speed, where the
            # decoded label tuples cost several times more to sort.
            rows += [(name, decode_labels(labels.decode()), float(value)) for labels, value in sorted(fields.items())]
        return rows

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self._transient) or is_unavailable_reply(exc) or super().is_transient(exc)

    def close(self) -> None:
        try:
            super().close()
            if self._writer_pid == pid() and self._seq:
                try:  # nothing of this process is left to send again
                    self.client.delete(self._writer)
                except Exception as exc:
                    if not self.is_transient(exc):
                        raise  # (Redis away: the mark expires by itself)
        finally:
            if self._own_conn is not None and self._own_pid == pid():
                self._own_conn.disconnect()
            self.client.close()


def open_redis(data_dir: str, flush_interval: float = 1.0, options: Optional[Any] = None) -> RedisState:
    """The Redis backend from ``[state]`` (``redis_url``, ``redis_prefix``, ``sentinels``,
    ``sentinel_service``)."""
    url = getattr(options, "redis_url", "") or "redis://127.0.0.1:6379/0"
    sentinels: Sequence[str] = getattr(options, "sentinels", None) or ()
    client = connect(url, sentinels, getattr(options, "sentinel_service", "") or "mymaster")
    return RedisState(client, getattr(options, "redis_prefix", "") or "statskit", flush_interval)
