"""The KPI REST API through real gunicorn (2 workers) on a Caddy log spanning more than a year
(2023-11-20 .. 2025-01-02, across two new years): D/W/M retention (7 days, 4 weeks, 12 months),
every year kept, and yearly KPIs still whole after the one-year cleanup removed their records.

The expected values are computed here from the lines written, with the calendar (``date``,
ISO weeks), not with statskit's period code."""
from __future__ import annotations

import re
import time
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Callable, Dict, List

import pytest
import requests

from gunicorn_server import StatskitServer

from kpi_support import caddy, write_packages

pytestmark = pytest.mark.e2e

START, END, STEP = datetime(2023, 11, 20, 0, 7), datetime(2025, 1, 2, 16, 0), timedelta(hours=7)
VISIT = {"host": "kiwix.box.test", "uri": "/content/wikipedia_fr_all/"}  # a home visit of Wikipédia
UPLOAD = {"host": "edupi.box.test", "uri": "/api/documents/", "method": "POST", "status": 201}  # Shared
LABELS: Dict[str, Callable[[datetime], str]] = {
    "D": lambda t: t.date().isoformat(), "W": lambda t: "%04d W%02d" % t.isocalendar()[:2],
    "M": lambda t: t.strftime("%Y-%m"), "Y": lambda t: str(t.year)}


def moments() -> List[datetime]:
    found, at = [], START
    while at <= END:
        found.append(at)
        at += STEP
    return found


def log_lines(times: List[datetime]) -> bytes:
    """Each moment a home visit; every third one also an upload to the shared-files app."""
    out = []
    for n, at in enumerate(times):
        out.append(caddy(at.timestamp(), **VISIT))
        if n % 3 == 0:
            out.append(caddy(at.timestamp(), **UPLOAD))
    return b"".join(out)


def accepted(server) -> int:
    found = re.search(r'^statskit_kpi_log_lines_total\{result="accepted"\} (\S+)$',
                      requests.get(server.url + "/metrics", timeout=10).text, re.M)
    return int(float(found.group(1))) if found else 0


def get(server, path: str, **params: str):
    """The same answer from every worker (new connections spread over them)."""
    answers = [requests.get(server.url + path, params=params, timeout=10) for _ in range(4)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies)
    return bodies[0]


@pytest.fixture(scope="module")
def year_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("year-e2e")
    logs = folder / "logs"
    logs.mkdir()
    times = moments()
    half = len(times) // 2
    log = logs / "caddy_access_logs.json"
    log.write_bytes(log_lines(times[:half]))  # there at start: read first
    env = {"STATSKIT_KPI_ENABLED": "true", "REVERSE_PROXY_LOGS_LOCATION": str(logs),
           "PACKAGE_CONF_FILE": str(write_packages(folder)), "STATSKIT_KPI_POLL_INTERVAL": "0.1",
           # ticks from the log's timestamps only: the wall clock (years later) closes nothing
           "STATSKIT_KPI_INACTIVITY": "1d"}
    with StatskitServer(folder / "data", workers=2, env=env) as server:
        with open(log, "ab") as handle:  # the rest while it runs
            handle.write(log_lines(times[half:]))
        total = len(times) + len(times[::3])
        deadline = time.monotonic() + 60
        while accepted(server) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        assert accepted(server) == total
        yield server, times


def expected(times: List[datetime]) -> Dict[str, Dict[str, Counter]]:
    """Per kind and label: visits, uploads and 10-minute activity slots of the closed hours
    (the last line's hour is still open). Y, as the original, is recomputed when the day
    changes: the current year holds the days before the last line's (its earlier lines are
    on that day too, so no day change since)."""
    open_hour = times[-1].replace(minute=0)
    assert times[-2].date() == times[-1].date()
    found: Dict[str, Dict[str, Counter]] = {kind: {} for kind in LABELS}
    for n, at in enumerate(times):
        if at >= open_hour:
            continue
        for kind, label in LABELS.items():
            if kind == "Y" and at.date() == times[-1].date():
                continue
            count = found[kind].setdefault(label(at), Counter())
            count["visits"] += 1
            count["uploads"] += n % 3 == 0
            count["minutes"] += 10  # both lines of a moment share its slot; one moment an hour
    return found


def test_retention_and_values_through_gunicorn(year_server):
    server, times = year_server
    want = expected(times)
    last = times[-1].date()
    days = [(last - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert days[0] == "2024-12-27" and days[-1] == "2025-01-02"
    weeks = ["2024 W50", "2024 W51", "2024 W52", "2025 W01"]  # 2024-12-30 is in 2025 W01 (ISO)
    months = [f"2024-{m:02d}" for m in range(2, 13)] + ["2025-01"]
    kept = {"D": days, "W": weeks, "M": months, "Y": ["2023", "2024", "2025"]}

    listing = get(server, "/api/v1/aggregations")["aggregations"]
    assert listing == [{"kind": kind, "value": value} for kind in ("D", "M", "W", "Y") for value in kept[kind]]
    for kind, values in kept.items():
        body = get(server, f"/api/v1/aggregations/{kind}")
        assert body["aggKind"] == kind and body["valuesAvailable"] == values
        assert body["valuesAll"] == (values if kind == "Y" else values[-{"D": 7, "W": 4, "M": 3}[kind]:])
        by_kpi = {k["kpiId"]: {v["aggValue"]: v["kpiValue"] for v in k["values"]} for k in body["kpis"]}
        assert sorted(by_kpi) == [2001, 2003, 2004, 2005]
        for value in values:
            counts = want[kind][value]
            assert by_kpi[2001][value] == {"items": [{"package": "Wikipédia", "visits": counts["visits"]}],
                                           "totalVisits": counts["visits"]}, (kind, value)
            assert by_kpi[2003][value]["totalMinutesActivity"] == counts["minutes"], (kind, value)
            assert by_kpi[2005][value] == {"filesCreated": counts["uploads"], "filesDeleted": 0}, (kind, value)


def test_years_stay_whole_after_their_records_are_cleaned_up(year_server):
    server, times = year_server
    want = expected(times)["Y"]
    records = get(server, "/api/v1/records", limit="10000")["records"]
    oldest = datetime.fromtimestamp(min(r["period"] for r in records))
    assert oldest.date() >= date(2024, 1, 2)  # a year before the last closed hour: 2023 is gone
    for year, visits in (("2023", want["2023"]["visits"]), ("2024", want["2024"]["visits"])):
        value = get(server, "/api/v1/kpis/2001/values", agg_kind="Y", agg_value=year)["value"]
        assert value["totalVisits"] == visits
    assert want["2023"]["visits"] == sum(1 for t in times if t.year == 2023)  # every 2023 line, though
    assert want["2024"]["visits"] == sum(1 for t in times if t.year == 2024)  # its records are gone
    shared = get(server, "/api/v1/kpis/2005/values", agg_kind="Y", agg_value="2023")["value"]
    assert shared == {"filesCreated": want["2023"]["uploads"], "filesDeleted": 0}
    # a period past retention is the original's 404
    gone = requests.get(server.url + "/api/v1/kpis/2001/values", params={"agg_kind": "M", "agg_value": "2024-01"},
                        timeout=10)
    assert (gone.status_code, gone.json()) == (404, {"detail": "KPI not found"})
