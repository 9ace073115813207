"""The processing rhythm: ticks from log timestamps, hourly records, D/W/M/Y KPIs, retention,
the yearly KPI on a day change, the one-year cleanup, and restarts that lose or redo nothing."""
from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest

from statskit.kpi.engine import Engine
from statskit.kpi.inputs import Input
from statskit.kpi.service import KpiService
from statskit.kpi.store import SCHEMA
from statskit.state.sqlite import SQLiteDB

from kpi_support import ts


@pytest.fixture
def db(tmp_path):
    database = SQLiteDB(str(tmp_path / "kpi.db"))
    database.ensure_schema(SCHEMA)
    yield database
    database.close()


def visit(engine, db, at, package="Wiki"):
    with db.transaction() as conn:
        engine.feed(conn, at, [Input("home_visit", package), Input("request", package)])
        engine.snapshot(conn)


def kpi(db, kpi_id, value):
    row = db.connection().execute("SELECT kpi_value FROM kpi WHERE kpi_id = ? AND agg_value = ?",
                                  (kpi_id, value)).fetchone()
    return None if row is None else orjson.loads(row[0])["data"]


def records(db):
    return sorted(db.connection().execute(
        "SELECT period_id, indicator_id, value FROM indicator_record ORDER BY period_id, indicator_id"))


def test_an_hour_becomes_records_and_day_week_month_kpis_at_the_next_hour(db):
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
    visit(engine, db, ts(2024, 5, 6, 10, 0, 5))  # first line: sets the clock only
    visit(engine, db, ts(2024, 5, 6, 10, 1, 0))  # new minute: a tick (uptime 1), then the visit
    visit(engine, db, ts(2024, 5, 6, 10, 12, 0), "Books")
    assert records(db) == []  # the hour is still open
    visit(engine, db, ts(2024, 5, 6, 11, 0, 30))  # the next hour closes 10:00
    hour = int(ts(2024, 5, 6, 10))
    assert records(db) == [(hour, 1001, 1), (hour, 1001, 2), (hour, 1004, 3), (hour, 1005, 20), (hour, 1006, 10),
                           (hour, 1006, 10)]
    assert kpi(db, 2001, "2024-05-06") == {"items": [{"package": "Wiki", "visits": 2}, {"package": "Books", "visits": 1}],
                                           "totalVisits": 3}
    assert kpi(db, 2004, "2024 W19") == {"nbMinutesOn": 3}  # ticks 10:01, 10:12 and 11:00 (closing 10:00)
    assert kpi(db, 2003, "2024-05")["totalMinutesActivity"] == 20
    assert kpi(db, 2005, "2024") is None  # the yearly KPI waits for a day change
    # the 11:00 visit is in memory and in the states, not yet a record
    states = db.connection().execute("SELECT period_id FROM indicator_state").fetchall()
    assert {p for p, in states} == {int(ts(2024, 5, 6, 11))}


def test_the_yearly_kpi_is_computed_when_the_day_changes(db):
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
    visit(engine, db, ts(2024, 5, 6, 23, 10))
    visit(engine, db, ts(2024, 5, 7, 0, 5))
    assert kpi(db, 2001, "2024")["totalVisits"] == 1
    assert kpi(db, 2004, "2024") == {"nbMinutesOn": 1}


def test_retention_keeps_seven_days_four_weeks_twelve_months_and_every_year(db):
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
    day = datetime(2023, 1, 1, 12)
    while day <= datetime(2024, 6, 1, 12):  # one visit a day; the last one closes 2024-05-31 12:00
        visit(engine, db, day.timestamp())
        day += timedelta(days=1)
    service = KpiService(db)
    available = {kind: service.aggregation(kind)["valuesAvailable"] for kind in "DWMY"}
    assert available["D"] == [f"2024-05-{d}" for d in range(25, 32)]
    assert available["W"] == ["2024 W19", "2024 W20", "2024 W21", "2024 W22"]
    assert available["M"] == [f"2023-{m:02d}" for m in range(6, 13)] + [f"2024-{m:02d}" for m in range(1, 6)]
    assert available["Y"] == ["2023", "2024"]
    assert kpi(db, 2001, "2023")["totalVisits"] == 365  # the yearly KPI outlives the records it came from
    # records older than a year before the last closed hour were cleaned up, with their dimensions
    oldest = db.connection().execute("SELECT MIN(period_id) FROM indicator_record").fetchone()[0]
    assert oldest == ts(2023, 5, 31, 12)
    assert db.connection().execute("SELECT COUNT(*) FROM indicator_period WHERE timestamp < ?",
                                   (ts(2023, 5, 31, 12),)).fetchone()[0] == 0


def test_a_restart_inside_an_hour_loses_nothing(db):
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
    visit(engine, db, ts(2024, 5, 6, 10, 0))
    visit(engine, db, ts(2024, 5, 6, 10, 30), "Books")
    restarted = Engine()  # a new process: only the database is left
    with db.transaction() as conn:
        restarted.start(conn)
    visit(restarted, db, ts(2024, 5, 6, 10, 40))
    visit(restarted, db, ts(2024, 5, 6, 11, 1))
    assert kpi(db, 2001, "2024-05-06")["totalVisits"] == 3
    assert kpi(db, 2003, "2024-05-06")["totalMinutesActivity"] == 30  # slots 10:00, 10:30, 10:40


def test_a_restart_after_an_hour_was_recorded_reprocesses_nothing(db):
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
    visit(engine, db, ts(2024, 5, 6, 10, 0))
    visit(engine, db, ts(2024, 5, 6, 11, 5))
    before = records(db)
    restarted = Engine()
    with db.transaction() as conn:
        restarted.start(conn)
    visit(restarted, db, ts(2024, 5, 6, 12, 5))
    after = records(db)
    assert after[:len(before)] == before  # 10:00 untouched
    assert {p for p, _, _ in after} == {int(ts(2024, 5, 6, 10)), int(ts(2024, 5, 6, 11))}
    assert kpi(db, 2001, "2024-05-06")["totalVisits"] == 2


def test_inactivity_ticks_follow_the_clock_only_while_the_process_runs(db):
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
    visit(engine, db, ts(2024, 5, 6, 10, 0))
    with db.transaction() as conn:  # no line for a while: the clock ticks 10:01..10:59, then 11:00 closes 10:00
        engine.idle(conn, ts(2024, 5, 6, 11, 0, 20), since=ts(2024, 5, 6, 9))
        engine.snapshot(conn)
    assert kpi(db, 2004, "2024-05-06") == {"nbMinutesOn": 60}
    restarted = Engine()  # off until 15:00: the gap is one tick, not 4 hours of uptime
    with db.transaction() as conn:
        restarted.start(conn)
        restarted.idle(conn, ts(2024, 5, 6, 15, 0, 20), since=ts(2024, 5, 6, 15, 0))
        restarted.idle(conn, ts(2024, 5, 6, 16, 0, 20), since=ts(2024, 5, 6, 15, 0))
    assert kpi(db, 2004, "2024-05-06") == {"nbMinutesOn": 60 + 1 + 60}


def test_a_line_older_than_the_clock_counts_in_the_current_hour(db):
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
    visit(engine, db, ts(2024, 5, 6, 10, 30))
    visit(engine, db, ts(2024, 5, 6, 9, 59))
    visit(engine, db, ts(2024, 5, 6, 11, 0))
    assert kpi(db, 2001, "2024-05-06")["totalVisits"] == 2
    assert {p for p, _, _ in records(db)} == {int(ts(2024, 5, 6, 10))}
