"""InfluxDB: batched, retried writes that never fail or slow a request.

Two APIs, chosen by ``[influxdb] api``:

* ``v2``: InfluxDB 2.x/3.x (and servers speaking its write API) through influxdb-client's
  synchronous write call, with ``token``, ``org`` and ``bucket``. Its own batching WriteApi is
  not used: its ``flush()`` is a no-op and batches are lost on close.
* ``v1``: InfluxDB 1.x ``POST /write?db=&rp=&precision=ns`` with ``database``,
  ``retention_policy``, ``username`` and ``password`` (HTTP basic auth). The database is created
  when the server answers 404 "database not found", then the write is retried, as stats-service did.

Event to point (:mod:`statskit.sinks.lineprotocol`), one point per event:

==============  ==========================================================================
measurement     ``event.measurement``: ``TABLE_NAME`` (default ``analytics``) for ``{uid, event}``
                events, a point's own ``measurement`` otherwise
tags            ``event.tags``: ``uid``, ``event`` and the client's ``tags`` (empty values skipped)
fields          ``event.fields`` with their JSON types (string, integer ``123i``, float, boolean),
                plus ``event_id`` as a **string field**, never a tag (unbounded cardinality)
time            ``event.time_ns``, written with precision ns; events of one batch that share a
                series and a time are moved on by 1 ns each, or InfluxDB would keep only the last
==============  ==========================================================================

Writing, in the server: the sink is fed from the durable event log (:mod:`statskit.sinks.relay`):
``prepare`` formats a batch of at most ``batch_size`` events read after the sink's cursor,
``send`` writes it, and the cursor moves once InfluxDB has it; an outage leaves the events in
the log (bounded by ``[sinks] max_backlog``) and they go out, in order, once it is back.

Writing, given events directly (a library pipeline without a log): ``emit`` only formats lines and queues them on a :class:`~statskit.worker.BatchWorker`
(``batch_size`` lines or ``flush_interval`` seconds per write, at most ``max_buffer`` lines
waiting). Connection errors, timeouts, 5xx and 429 (``Retry-After`` honoured) are retried with
backoff for as long as it takes; an outage only fills the buffer, and past ``max_buffer`` the
newest lines are dropped. Other 4xx answers are permanent: a batch refused whole with 400/413/422
is split in halves to find the points at fault (one field written as an integer by one client and
as a float by another makes InfluxDB 1.x refuse the whole batch); a "partial write" drops only
what InfluxDB reports. Metrics: ``statskit_sink_written_total{sink="influxdb"}`` (points stored),
``statskit_sink_dropped_total{sink="influxdb", reason}`` (``buffer_full``, ``rejected`` or
``shutdown``), ``statskit_sink_errors_total{sink="influxdb"}`` (failed write attempts). Drops and
failures are logged with the server's message, at most one line per ``LOG_INTERVAL`` seconds each
(with counts), and what is still unlogged at close.

Reading (``read_events``, v1 only): :meth:`InfluxDBSink.get` and :meth:`InfluxDBSink.query`
read ``TABLE_NAME`` with InfluxQL. v2 servers are read with Flux, which statskit does not speak
(and VictoriaMetrics, the v2 test server, has none): there they find nothing. ``Pipeline.get``
asks the SQLite sink first when it is enabled; InfluxDB is the fallback.

Nothing connects before the first write (the gunicorn master builds and closes a pipeline
before forking); every process opens its own connections.

    >>> from statskit.state.memory import MemoryState
    >>> sink = InfluxDBSink(V1Writer("http://127.0.0.1:8086", "stats"), MemoryState())  # connects lazily
    >>> sink.close(0)
    True
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import orjson

from ..events import Event, id_time
from ..worker import BatchWorker, RetryableError
from .influxdb_http import Rejected, V1Writer, V2Writer
from .influxql import InfluxQLReader
from .lineprotocol import stored_line, to_line, to_lines

__all__ = ["InfluxDBSink", "Rejected", "V1Writer", "V2Writer"]

log = logging.getLogger("statskit.sinks.influxdb")

LOG_INTERVAL = 10.0  # seconds between two log lines about drops (or about failed writes)
SPLIT_STATUSES = (400, 413, 422)  # a batch refused whole for what some of its points hold
MAX_WRITES_PER_BATCH = 64  # splitting a batch stops here: a 400 for every point must not cost 2n writes


class _RateLimitedLog:
    """One log line per ``interval`` seconds at most, carrying the counts of what it held back."""

    def __init__(self, level: int, interval: float) -> None:
        self.level, self.interval = level, interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._counts: Dict[str, int] = {}
        self._message = ""

    def add(self, key: str, n: int, message: str = "", now: bool = False) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n
            self._message = message or self._message
        self.emit(force=now)

    def emit(self, force: bool = False) -> None:
        """Log what is held if the interval has passed (or ``force``)."""
        with self._lock:
            clock = time.monotonic()
            if not self._counts or (clock < self._next and not force):
                return
            self._next = clock + self.interval
            counts, message, self._counts, self._message = self._counts, self._message, {}, ""
        summary = ", ".join(f"{n} {key}" for key, n in counts.items())
        log.log(self.level, "InfluxDB sink: %s%s", summary, f"; last error: {message}" if message else "")


class InfluxDBSink:
    """Events to InfluxDB as points, written in the background (see the module docstring)."""

    name = "influxdb"

    def __init__(self, writer: Any, state: Any, *, batch_size: int = 5000, flush_interval: float = 1.0,
                 max_buffer: int = 200_000, table_name: str = "analytics", read_events: bool = True,
                 log_interval: float = LOG_INTERVAL) -> None:
        self.writer = writer
        self.state = state
        self.table_name = table_name
        self.flush_interval = flush_interval
        # Reads need InfluxQL: InfluxDB 1.x only.
        self.reader = InfluxQLReader(writer, table_name) if read_events and isinstance(writer, V1Writer) else None
        self.worker = BatchWorker(self._send, max_queue=max_buffer, batch_size=batch_size, max_latency=flush_interval,
                                  max_retries=None, backoff=0.5, max_backoff=30.0, on_drop=self._worker_dropped,
                                  name="statskit-influxdb-writer")
        self._drops = _RateLimitedLog(logging.ERROR, log_interval)
        self._failures = _RateLimitedLog(logging.WARNING, log_interval)
        self._failing = False
        self._closed = False
        self._abandoned = False  # close() has counted the in-flight batch as dropped

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "InfluxDBSink":
        cfg = settings.influxdb
        if cfg.api == "v1":
            writer: Any = V1Writer(cfg.url, cfg.database, cfg.retention_policy, cfg.username, cfg.password, cfg.timeout)
        elif cfg.api == "v2":
            writer = V2Writer(cfg.url, cfg.token, cfg.org, cfg.bucket, cfg.timeout)
        else:
            raise ValueError(f"[influxdb] api must be v1 or v2, not {cfg.api!r}")
        return cls(writer, state, batch_size=cfg.batch_size, flush_interval=cfg.flush_interval,
                   max_buffer=cfg.max_buffer, table_name=cfg.table_name, read_events=cfg.read_events)

    # -- fed from the durable log (statskit.sinks.relay; the server's way) ---------------------

    @property
    def relay_batch(self) -> int:
        return self.worker.batch_size

    @property
    def relay_interval(self) -> float:
        return self.flush_interval

    def prepare(self, events: Sequence[Event]) -> List[str]:
        """Lines for ``events`` as stored: their times are already distinct per series
        (``Pipeline.ingest``), so a batch sent again writes the same points."""
        return [to_line(e) for e in events]

    def prepare_stored(self, rows: Sequence[Tuple[int, int, str]]) -> List[str]:
        """The same lines as :meth:`prepare`, from the log's rows as stored (``(seq, time_ns,
        JSON)``): a row decoded into a dict is formatted at once, with no Event in between."""
        loads = orjson.loads
        return [stored_line(loads(data), time_ns) for _, time_ns, data in rows]

    def send(self, batch: List[str]) -> None:
        """Write ``batch`` now (RetryableError while InfluxDB is down: the relay retries)."""
        self._send(batch)

    # -- writing from the request (a library pipeline without a durable log) -----------------

    def emit(self, events: Sequence[Event]) -> None:
        """Format and queue; never waits for InfluxDB. Lines past ``max_buffer`` are dropped."""
        lines = to_lines(events)
        taken = self.worker.submit_many(lines)
        if taken < len(lines):
            self._dropped(len(lines) - taken, "shutdown" if self._closed else "buffer_full")

    def _send(self, batch: List[str]) -> None:
        """Write one batch (BatchWorker's ``send``), splitting it when InfluxDB refuses it whole.

        On a transient failure the lines already written or given up are removed from ``batch``
        before RetryableError goes up: BatchWorker retries this same list, so they are neither
        written nor counted twice."""
        stack: List[Tuple[int, int]] = [(0, len(batch))]
        writes = 0
        while stack:
            lo, hi = stack.pop()  # left halves first, so everything before ``lo`` is done
            writes += 1
            try:
                self.writer.write("\n".join(batch[lo:hi]).encode("utf-8"))
            except RetryableError as exc:
                del batch[:lo]
                self._failed(exc)
                raise
            except Rejected as exc:
                if exc.dropped is not None:  # partial write: the rest is stored
                    dropped = min(exc.dropped, hi - lo)
                    self._written(hi - lo - dropped)
                    self._given_up(dropped, "rejected", str(exc))
                elif hi - lo > 1 and exc.status in SPLIT_STATUSES and writes + len(stack) < MAX_WRITES_PER_BATCH:
                    mid = (lo + hi) // 2
                    stack += [(mid, hi), (lo, mid)]
                else:
                    self._given_up(hi - lo, "rejected", str(exc))
            except Exception as exc:  # a bug, not InfluxDB: drop rather than wedge the queue, and say why
                self._given_up(hi - lo, "rejected", f"{exc.__class__.__name__}: {exc}")
            else:
                self._written(hi - lo)
        self._drops.emit()

    def _written(self, n: int) -> None:
        if self._abandoned:
            return
        if self._failing:
            self._failing = False
            self._failures.emit(force=True)
            log.warning("InfluxDB writes work again")
        if n:
            self.state.incr("statskit_sink_written", {"sink": self.name}, n)

    def _failed(self, exc: RetryableError) -> None:
        self._failing = True
        self.state.incr("statskit_sink_errors", {"sink": self.name}, 1)
        self._failures.add("failed writes (retrying)", 1, f"{exc} ({len(self.worker)} points waiting)")

    def _worker_dropped(self, lines: List[str], reason: str) -> None:
        # BatchWorker gives up lines only at close()/kill() ("shutdown"): _send handles the rest.
        self._given_up(len(lines), reason, now=reason == "shutdown")

    def _given_up(self, n: int, reason: str, message: str = "", now: bool = False) -> None:
        """A drop decided in the writer thread: not counted again once close() counted its batch."""
        if not self._abandoned:
            self._dropped(n, reason, message, now)

    def _dropped(self, n: int, reason: str, message: str = "", now: bool = False) -> None:
        if n <= 0:
            return
        self.state.incr("statskit_sink_dropped", {"sink": self.name, "reason": reason}, n)
        self._drops.add(f"points dropped ({reason})", n, message, now=now)

    # -- reading (v1) ----------------------------------------------------------------------

    def get(self, event_id: str) -> Optional[Event]:
        """The event stored under ``event_id`` in ``TABLE_NAME``, or None.

        v1 only: for v2 (and with ``read_events`` off) this is always None, since v2 servers
        are read with Flux. Points sent with their own measurement are not looked up (their ids
        are never returned to clients). An id minted moments ago may still wait in another
        worker's buffer: it is looked up again after one ``flush_interval``."""
        if self.reader is None:
            return None
        self._settle()
        found = self.reader.lookup(event_id)
        created = id_time(event_id)
        if found is None and created is not None:
            wait = created + self.flush_interval + 0.25 - time.time()
            if 0 < wait <= self.flush_interval + 0.25:
                time.sleep(wait)
                found = self.reader.lookup(event_id)
        return found

    def query(self, uid: Optional[str] = None, event: Optional[str] = None, since_ns: Optional[int] = None,
              until_ns: Optional[int] = None, limit: int = 100) -> List[Event]:
        """Events of ``TABLE_NAME``, newest first (v1 only; [] otherwise)."""
        if self.reader is None:
            return []
        self._settle()
        return self.reader.query(uid=uid, event=event, since_ns=since_ns, until_ns=until_ns, limit=limit)

    def _settle(self) -> None:
        """Write this process's own buffered events before reading (bounded; skipped during an
        outage, when it could only wait)."""
        if len(self.worker) and not self._failing:
            self.worker.flush(1.0)

    # -- life cycle ------------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Write what is buffered, for at most ``timeout`` seconds; False if some is left."""
        return self.worker.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush for at most ``timeout`` seconds, then drop (count and log) what is left."""
        self._closed = True
        drained = self.worker.close(timeout)
        if not drained:
            # A batch between two retries is given up by the writer thread once it wakes: give
            # it that moment, so the drop is counted before the process exits. One stuck in a
            # request is counted here, and whatever that request does later is not counted again.
            self.worker.flush(0.1)
            stuck, self._abandoned = len(self.worker), True
            if stuck:
                self.state.incr("statskit_sink_dropped", {"sink": self.name, "reason": "shutdown"}, stuck)
                self._drops.add("points dropped (shutdown)", stuck)
        self._failures.emit(force=True)
        self._drops.emit(force=True)
        self.writer.close()
        return drained

