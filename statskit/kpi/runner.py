"""The processing loop: one per data dir, whatever the number of gunicorn workers.

Every worker runs a :class:`Processor` thread that tries an exclusive ``flock`` on
``<data_dir>/kpi.lock`` every ``lock_retry`` seconds; the one holding it tails the logs, the
others only serve reads. The kernel drops the lock when its holder dies (even by SIGKILL), so
another worker takes over within ``lock_retry`` seconds, from the offsets last committed.

A batch (the complete lines of up to one chunk of one file) is one SQLite transaction: the
indicator updates, the current hour's states, the clock, the skip counters and the file's new
offset are committed together, so a crash or power cut never loses or double-counts a line.
"""
from __future__ import annotations

import fcntl
import gc
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional

import orjson

from ..state.sqlite import SQLiteDB
from . import kpis, store
from .engine import Engine
from .indicators import USAGE_INDICATORS
from .events import BATCH as EVENT_BATCH, INBOX_SCHEMA, consume
from .inputs import Fields, Generators, Skipped, parse_fields
from .tailer import LogFile, Tailer, _fingerprint

log = logging.getLogger("statskit.kpi")

LEGACY_STATE = "log_watcher_state.json"


class FileLock:
    """A non-blocking exclusive ``flock`` (released by the kernel when the process dies)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None

    def try_acquire(self) -> bool:
        if self.fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # closing the descriptor releases the flock


class Processor:
    def __init__(self, db: SQLiteDB, tailer: Tailer, generators: Generators, lock_path: str, *,
                 poll_interval: float = 1.0, inactivity: float = 10.0, lock_retry: float = 2.0,
                 legacy_state_dir: str = "", events: bool = False, clock: Callable[[], float] = time.time,
                 parse: Callable[[bytes], Fields] = parse_fields) -> None:
        self.db = db
        self.tailer = tailer
        self.generators = generators
        self.lock = FileLock(lock_path)
        self.poll_interval = poll_interval
        self.inactivity = inactivity
        self.lock_retry = lock_retry
        self.legacy_state_dir = legacy_state_dir
        self.clock = clock
        self.parse = parse  # the log format (raises Skipped for a line to skip)
        self.events = events  # also consume statskit's event inbox (statskit.kpi.events)
        # third-party indicators (statskit.kpi.extensions) come with the generators
        self.kpi_ids = (kpis.KPI_IDS + (kpis.EVENT_KPI_IDS if events else ())
                        + tuple(extra.kpi_id for extra in generators.extra))
        self.usage = USAGE_INDICATORS + tuple(extra.indicator_id for extra in generators.extra if extra.usage)
        self.engine = Engine(self.kpi_ids, self.usage)
        self.started_at = clock()
        self.last_line_at = 0.0
        self.last_idle_at = 0.0
        self.ready = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="statskit-kpi-tailer", daemon=True)
        self._thread.start()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the loop, write the states one last time (SIGTERM/SIGINT) and drop the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is not None and self._thread.is_alive():
            # Still inside a batch: keep the lock (the process exit drops it), so that no other
            # process can tail beside this one; what the batch did is committed or rolled back.
            log.warning("KPI processing still busy at shutdown; its last batch may be rolled back")
            return
        if self.ready:
            try:
                with self.db.transaction() as conn:
                    self.engine.snapshot(conn)
            except sqlite3.Error:
                log.exception("cannot write the KPI states at shutdown")
        self.ready = False
        self.lock.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.ready and not self.acquire():
                    self._stop.wait(self.lock_retry)
                    continue
                busy = self.step()
            except Exception:
                log.exception("KPI processing failed; retrying from the last commit")
                self.ready = False  # reload everything from the database
                busy = False
            if not busy:
                self._stop.wait(self.poll_interval)

    def acquire(self) -> bool:
        """Take the lock and load the committed state; False when another process holds it."""
        if not self.lock.try_acquire():
            return False
        with self.db.transaction() as conn:
            self.tailer.load(conn)
            self._import_legacy(conn)
            if self.events:
                conn.execute(INBOX_SCHEMA)
            self.engine = Engine(self.kpi_ids, self.usage)
            self.engine.start(conn)
        self.started_at = self.clock()
        self.ready = True
        log.info("KPI log processing runs in process %d", os.getpid())
        return True

    # ------------------------------------------------------------------ one round
    def step(self) -> bool:
        """Scan, read every file's new complete lines (a transaction per chunk), then the
        inactivity ticks. True when there may be more to read right away."""
        changed = self.tailer.scan()
        busy = False
        for file in list(self.tailer.files.values()):
            chunk = self.tailer.read(file)
            if chunk is not None:
                self._apply(chunk, changed)
                changed = []
                busy = busy or chunk.more
        if changed or self.tailer.forgotten:
            with self.db.transaction() as conn:
                self.tailer.commit(conn, changed)
        if self.events and self.db.connection().execute("SELECT 1 FROM event_inbox LIMIT 1").fetchone():
            with self.db.transaction() as conn:
                consumed = consume(conn, self.engine)
                self.engine.snapshot(conn)
                store.add_counters(conn, "events", {"consumed": consumed})
            if consumed:
                self.last_line_at = self.clock()
                busy = busy or consumed == EVENT_BATCH
        now = self.clock()
        if now - self.last_line_at >= self.inactivity and now - self.last_idle_at >= self.inactivity:
            self.last_idle_at = now
            with self.db.transaction() as conn:
                self.engine.idle(conn, now, self.started_at)
                self.engine.snapshot(conn)
                self._heartbeat(conn)
        return busy

    def _apply(self, chunk: Any, changed: List[LogFile]) -> None:
        skipped: Counter = Counter()
        skipped["too_long"] = chunk.too_long
        feed, inputs, parse = self.engine.feed_minute, self.generators.inputs_of, self.parse  # (the per-line loop)
        # No cyclic GC inside a batch: parsed lines are acyclic dicts, and the collections their
        # allocations trigger cost about a fifth of the loop.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._apply_lines(chunk, changed, feed, inputs, parse, skipped)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _apply_lines(self, chunk: Any, changed: List[LogFile], feed: Any, inputs: Any, parse: Any,
                     skipped: Counter) -> None:
        too_wide, extra_errors = self.engine.indicators.too_wide, self.generators.extra_errors
        with self.db.transaction() as conn:
            # Consecutive lines of one minute are fed together, counted per request (host, uri,
            # method, status: the generators give the same inputs for the same request), or per
            # line (its bytes: the same bytes give the same inputs) for hosts whose inputs depend
            # on headers, and with third-party indicators, which see every field.
            uncached, per_line = self.generators.uncached, self.generators.per_line
            groups: Dict[Any, list] = {}
            low, high = 1.0, 0.0  # the current minute: low <= ts < high (none yet)
            for raw in chunk.lines:
                try:
                    line = parse(raw)
                except Skipped as exc:
                    skipped[exc.reason] += 1
                    continue
                ts = line[0]
                if not low <= ts < high:
                    if groups:
                        feed(conn, low, groups.values())
                    low = (ts // 60) * 60
                    high, groups = low + 60, {}
                key = raw if per_line or line[1] in uncached else line[1:5]
                group = groups.get(key)
                if group is None:
                    groups[key] = [inputs(line), 1]
                else:
                    group[1] += 1
            if groups:
                feed(conn, low, groups.values())
            accepted = len(chunk.lines) - (sum(skipped.values()) - chunk.too_long)
            self.engine.snapshot(conn)
            chunk.file.offset = chunk.end
            self.tailer.commit(conn, [chunk.file, *[f for f in changed if f is not chunk.file]])
            store.add_counters(conn, "lines_skipped", dict(skipped))
            store.add_counters(conn, "lines", {"accepted": accepted})
            store.add_counters(conn, "inputs_dropped", {"too_wide_usage": self.engine.indicators.too_wide - too_wide,
                                                        "indicator_error": self.generators.extra_errors - extra_errors})
            self._heartbeat(conn)
        if accepted:
            self.last_line_at = self.clock()

    def _heartbeat(self, conn: sqlite3.Connection) -> None:
        store.set_meta(conn, "heartbeat", orjson.dumps({"pid": os.getpid(), "time": self.clock()}).decode())

    def _import_legacy(self, conn: sqlite3.Connection) -> None:
        """The original's ``log_watcher_state.json`` offsets, once, for files still there."""
        if not self.legacy_state_dir or store.get_meta(conn, "legacy_imported"):
            return
        path = os.path.join(self.legacy_state_dir, LEGACY_STATE)
        try:
            with open(path, "rb") as handle:
                pointers = orjson.loads(handle.read()).get("file_pointers") or {}
        except (OSError, orjson.JSONDecodeError, AttributeError):
            return
        imported = []
        for file_path, offset in pointers.items():
            try:
                st = os.stat(file_path)
                if not isinstance(offset, int) or offset < 0 or offset > st.st_size:
                    continue
                if (st.st_dev, st.st_ino) in self.tailer.files:
                    continue
                fp_len, fp_hash = _fingerprint(file_path, 1024)
            except OSError:
                continue
            found = LogFile(st.st_dev, st.st_ino, fp_len, fp_hash, file_path, offset)
            self.tailer.files[(st.st_dev, st.st_ino)] = found
            imported.append(found)
        self.tailer.commit(conn, imported)
        store.set_meta(conn, "legacy_imported", str(len(imported)))
        log.info("imported %d file offsets from %s", len(imported), path)
