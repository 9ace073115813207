"""The processing rhythm: log lines drive minute ticks, ticks roll hours into records and KPIs.

Every call takes an open write transaction (``conn``); the caller ends it with
:meth:`Engine.snapshot` and commits it together with the file offsets of the lines it
applied, so the database always holds a consistent point.

    >>> from statskit.state.sqlite import SQLiteDB
    >>> import tempfile, os
    >>> db = SQLiteDB(os.path.join(tempfile.mkdtemp(), "kpi.db")); db.ensure_schema(SCHEMA)
    >>> engine = Engine()
    >>> with db.transaction() as conn:
    ...     engine.start(conn)
    ...     engine.feed(conn, 3600 * 24 * 400 + 10.0, [Input(REQUEST, "Wikipedia")])
    ...     engine.tick(conn, (3600 * 24 * 400 + 3600) // 60)    # the next hour: records, then KPIs
    ...     engine.snapshot(conn)
    True
    >>> sorted(kind for kind, in db.connection().execute("SELECT DISTINCT agg_kind FROM kpi"))
    ['D', 'M', 'W']
"""
from __future__ import annotations

import sqlite3
from typing import Iterable, Optional, Sequence, Tuple

from . import kpis, periods, store
from .indicators import USAGE_INDICATORS, Indicators
from .inputs import CLOCK_TICK, REQUEST, Input  # noqa: F401  (REQUEST: doctest)
from .store import SCHEMA, Writer, as_local, hour_start  # noqa: F401  (SCHEMA: doctest)

MINUTE = 60
#: Bound on the inactivity loop's minute-by-minute catch-up (a clock jump).
MAX_FORCED_TICKS = 1440


class Engine:
    """Indicators of the current hour, the current period and the last tick minute."""

    def __init__(self, kpi_ids: Sequence[int] = kpis.KPI_IDS, usage: Sequence[int] = USAGE_INDICATORS) -> None:
        self.kpi_ids = tuple(kpi_ids)
        self.usage = tuple(usage)  # the indicators counting 10-minute slots
        self.indicators = Indicators(self.usage)
        self.period: Optional[int] = None  # epoch of the current hour's start
        self.last_tick: Optional[int] = None  # minutes since the epoch
        self.writer = Writer()
        self.resumed = False  # last_tick came from the database: the box may have been off since
        self.kpi_updates = 0

    # ------------------------------------------------------------------ start
    def start(self, conn: sqlite3.Connection) -> None:
        """Restore the current hour's states and clock, then recompute the last period's KPIs."""
        self.indicators = Indicators(self.usage)
        self.writer.forget_dimensions()
        saved_period, saved_tick = store.get_meta(conn, "period"), store.get_meta(conn, "last_tick")
        last_record = store.last_record_period(conn)
        if saved_period is not None:
            self.period = int(saved_period)
        elif last_record is not None:  # the original's rule: the hour after the last records
            self.period = hour_start(last_record + 3600 + 1800)
        else:
            self.period = store.last_state_period(conn)
        if self.period is not None and (last_record is None or self.period > last_record):
            self.indicators.restore(store.states_of(conn, self.period))
        self.last_tick = int(saved_tick) if saved_tick is not None else None
        self.resumed = self.last_tick is not None
        if last_record is not None:
            self._kpis(conn, last_record, ("D", "W", "M", "Y"))

    # ------------------------------------------------------------------ lines
    def feed(self, conn: sqlite3.Connection, ts: float, inputs: Sequence[Input]) -> None:
        """One accepted line at ``ts``: a tick first when its minute is new, then its inputs."""
        self.feed_minute(conn, ts, ((inputs, 1),))

    def feed_minute(self, conn: sqlite3.Connection, ts: float, groups: Iterable[Tuple[Sequence[Input], int]]) -> None:
        """Consecutive lines of the minute of ``ts`` (the first one's): each group of inputs with
        the number of lines that gave it. The same as feeding them one by one, faster."""
        minute = int(ts // MINUTE)
        if self.period is None:
            self.period = hour_start(ts)
        if self.last_tick is None:
            self.last_tick = minute  # the first line after start only sets the clock
        elif minute > self.last_tick:
            self.tick(conn, minute)
        # A line older than the last tick (clock set back, an old file found late) is counted
        # in the current hour rather than rewinding the clock.
        apply = self.indicators.apply
        for inputs, times in groups:
            for item in inputs:
                apply(item, minute, times)

    def idle(self, conn: sqlite3.Connection, now: float, since: float) -> None:
        """The inactivity loop: ticks minute by minute up to ``now``, but only over the time this
        process has been running (``since``); one tick covers the gap before it."""
        if self.last_tick is None:
            return
        now_minute = int(now // MINUTE)
        if now_minute <= self.last_tick:
            return
        known_on = int(since // MINUTE)
        if self.resumed or self.last_tick + 1 < known_on or now_minute - self.last_tick > MAX_FORCED_TICKS:
            # The box may have been off in between: one tick, not one per minute of the gap.
            self.tick(conn, min(max(self.last_tick + 1, known_on, now_minute - MAX_FORCED_TICKS), now_minute))
        for minute in range(self.last_tick + 1, now_minute + 1):
            self.tick(conn, minute)

    # ------------------------------------------------------------------ ticks
    def tick(self, conn: sqlite3.Connection, minute: int) -> bool:
        """One minute tick; True when an hour was closed."""
        self.resumed = False
        self.last_tick = minute
        self.indicators.apply(Input(CLOCK_TICK), minute)
        hour = hour_start(minute * MINUTE)
        if self.period is None or not self.indicators.has_data():
            self.period = hour
            return False
        if hour == self.period:
            # The original wrote the states here, every minute. They are written by snapshot(),
            # which every caller runs before its transaction commits: the same states reach the
            # disk at the same commit, without rewriting them once per minute of a log being
            # caught up on.
            return False
        conn.execute("DELETE FROM indicator_state")
        finished = self.period
        self.writer.write(conn, "indicator_record", finished, self.indicators.rows())
        self.indicators.clear()
        self.period = hour
        kinds = ("D", "W", "M") + (("Y",) if as_local(finished).date() != as_local(hour).date() else ())
        if self._kpis(conn, finished, kinds):
            self.writer.cleanup(conn, finished)
        return True

    def snapshot(self, conn: sqlite3.Connection) -> None:
        """Write the current hour's states and the clock (with every batch, and at shutdown)."""
        conn.execute("DELETE FROM indicator_state")
        if self.period is not None and self.indicators.has_data():
            self.writer.write(conn, "indicator_state", self.period, self.indicators.rows())
        store.set_meta(conn, "period", None if self.period is None else str(self.period))
        store.set_meta(conn, "last_tick", None if self.last_tick is None else str(self.last_tick))

    # ------------------------------------------------------------------ KPIs
    def _kpis(self, conn: sqlite3.Connection, period: int, kinds: Sequence[str]) -> bool:
        """Recompute every KPI of ``kinds`` for the aggregations holding ``period``; drop values
        past retention. True when anything was written."""
        moment = as_local(period)
        changed = False
        for kind in kinds:
            value = periods.label(kind, moment)
            start, stop = periods.period_range(kind, value)
            found = store.sums(conn, store.epoch(start), store.epoch(stop))
            for kpi_id in self.kpi_ids:
                store.put_kpi(conn, kpi_id, kind, value, kpis.envelope(kpi_id, kpis.compute(kpi_id, found)))
                changed = True
            oldest = periods.oldest_kept(kind, value)
            if oldest:
                conn.execute("DELETE FROM kpi WHERE agg_kind = ? AND agg_value < ?", (kind, oldest))
        self.kpi_updates += changed
        return changed
