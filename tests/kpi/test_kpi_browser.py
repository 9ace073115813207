"""The KPI dashboard in a real headless Chromium against a real statskit-server (gunicorn) over
the sample data set (dashboard_sample.py): what a user sees, read from the DOM and compared with
what the API returns; no console error, exception or CSP violation on any page.

The README's screenshots are taken here: ``UPDATE_SCREENSHOTS=1`` writes them to
``docs/dashboard.png`` and ``docs/dashboard-phone.png`` (otherwise to the test's temp dir).
Without ``chromium`` the tests skip, and fail under CI=true (``make_real_server``).
"""
from __future__ import annotations

import math
import os
import struct
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests

from browser import Chromium, Page
from conftest import make_real_server
from gunicorn_server import StatskitServer
from statskit.kpi.periods import period_range

from dashboard_sample import NO_SHARED_FILES, write_sample

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
TILES = ("tile-uptime", "tile-usage", "tile-popularity", "tile-files")

# Everything a user reads on the page, in one round trip.
SNAPSHOT = """(() => {
  const visible = el => !!el && el.checkVisibility();
  const text = (root, name) => { const el = root.querySelector('[data-field="' + name + '"]'); return visible(el) ? el.textContent : null; };
  const tiles = {};
  for (const tile of document.querySelectorAll('.tile')) {
    const fields = {};
    for (const el of tile.querySelectorAll('[data-field]')) if (!el.matches('ol, tbody')) fields[el.dataset.field] = text(tile, el.dataset.field);
    tiles[tile.id] = {
      nodata: visible(tile.querySelector('.nodata')), fields: fields,
      bars: [...tile.querySelectorAll('ol li')].filter(visible).map(li => [li.querySelector('.name').textContent, li.querySelector('.num').textContent, getComputedStyle(li.querySelector('.swatch')).backgroundColor]),
      rows: [...tile.querySelectorAll('tbody tr')].filter(visible).map(tr => [...tr.cells].map(td => td.textContent)),
      chart: (() => { const c = tile.querySelector('canvas'); const chart = c && visible(c) && Chart.getChart(c); return chart ? {type: chart.config.type, labels: chart.data.labels, data: chart.data.datasets.map(d => d.data), colours: chart.data.datasets[0].backgroundColor} : null; })(),
    };
  }
  const csv = document.getElementById('csv');
  return {label: document.getElementById('period-label').textContent, kind: document.querySelector('[aria-pressed="true"]').dataset.kind,
          prev: !document.getElementById('prev').disabled, next: !document.getElementById('next').disabled,
          csv: visible(csv) ? {href: csv.href, download: csv.hasAttribute('download')} : null,
          error: visible(document.getElementById('error')), tiles: tiles};
})()"""


# ------------------------------------------------------------------ what the page should show
def fixed1(x: float) -> str:
    """JavaScript's ``x.toFixed(1)``: the exact binary value, halves away from zero."""
    return str(Decimal(x).quantize(Decimal("0.1"), ROUND_HALF_UP))


def js_round(x: float) -> int:
    return math.floor(x + 0.5)  # Math.round


def hours(minutes: int) -> str:
    return fixed1(minutes / 60)


def period_minutes(kind: str, value: str) -> int:
    start, stop = period_range(kind, value)  # first and last hour start
    return int((stop - start).total_seconds()) // 60 + 60


def values_of(agg: Dict[str, Any]) -> Dict[int, Dict[str, Any]]:
    return {k["kpiId"]: {v["aggValue"]: v["kpiValue"] for v in k["values"]} for k in agg["kpis"]}


def expected_tiles(agg: Dict[str, Any], value: str) -> Dict[str, Any]:
    """Per tile: None for "No data", else its fields and bars (name, number) as the API implies."""
    kind, found = agg["aggKind"], values_of(agg)
    uptime, usage = found.get(2004, {}).get(value), found.get(2003, {}).get(value)
    popularity, files = found.get(2001, {}).get(value), found.get(2005, {}).get(value)
    minutes = period_minutes(kind, value)
    return {
        "tile-uptime": uptime and ({"uptime-percent": fixed1(min(uptime["nbMinutesOn"], minutes) * 100 / minutes) + " %",
                                    "uptime-hours": hours(uptime["nbMinutesOn"]),
                                    "uptime-period-hours": str(minutes // 60)}, []),
        "tile-usage": usage and ({"usage-hours": hours(usage["totalMinutesActivity"])},
                                 [[i["package"], hours(i["minutesActivity"]) + " h"] for i in usage["items"][:6]]),
        "tile-popularity": popularity and (
            {"popularity-total": str(popularity["totalVisits"])},
            [[i["package"], f"{js_round(i['visits'] * 100 / popularity['totalVisits'])} %"] for i in popularity["items"][:5]]),
        "tile-files": files and ({"files-created": str(files["filesCreated"]), "files-deleted": str(files["filesDeleted"])}, []),
    }


def shown_tiles(snapshot: Dict[str, Any]) -> Dict[str, Any]:
    """The same, read from the page: a tile showing "No data" shows nothing else."""
    shown = {}
    for name in TILES:
        tile = snapshot["tiles"][name]
        if tile["nodata"]:
            assert all(v is None for v in tile["fields"].values()) and not tile["bars"] and tile["chart"] is None, tile
            shown[name] = None
        else:
            shown[name] = (tile["fields"], [bar[:2] for bar in tile["bars"]])
    return shown


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


# ------------------------------------------------------------------ fixtures and page helpers
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("dashboard") / "data"
    write_sample(data)
    env = {"STATSKIT_KPI_ENABLED": "true", "PROCESSING_DISABLED": "true",
           "STATSKIT_KPI_DASHBOARD_AT_ROOT": "true"}
    with StatskitServer(data, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = make_real_server(lambda: Chromium(tmp_path_factory.mktemp("chromium")))
    with chromium:
        yield chromium


@pytest.fixture(scope="module")
def api(server):
    found: Dict[str, Any] = {}

    def aggregation(kind: str) -> Dict[str, Any]:
        if kind not in found:
            found[kind] = requests.get(f"{server.url}/api/v1/aggregations/{kind}", timeout=10).json()
        return found[kind]

    return aggregation


@pytest.fixture
def page(browser):
    tab = browser.page(1280, 800)
    yield tab
    tab.close()


def renders(page: Page) -> int:
    return page.evaluate("Number(document.body.dataset.renders || 0)")


def wait_ready(page: Page, condition: str) -> Dict[str, Any]:
    try:
        page.wait_for(condition)
    except TimeoutError as exc:  # say why: a script error is the usual reason
        raise AssertionError(f"{exc}; page errors: {page.errors()}") from None
    return page.evaluate(SNAPSHOT)


def open_page(page: Page, url: str) -> Dict[str, Any]:
    page.goto(url)
    return wait_ready(page, "document.body.dataset.state === 'ready'")


def act(page: Page, script: str) -> Dict[str, Any]:
    """Do what a user does (a click), wait for the view it draws, and read it."""
    before = renders(page)
    page.evaluate(script)
    return wait_ready(page, f"Number(document.body.dataset.renders || 0) > {before} && document.body.dataset.state === 'ready'")


def click(selector: str) -> str:
    return f"document.querySelector({selector!r}).click()"


# ------------------------------------------------------------------ the tests
def test_the_latest_day_shows_the_numbers_the_api_returns(page, server, api):
    days = api("D")
    latest = days["valuesAvailable"][-1]
    shown = open_page(page, server.url + "/dashboard/")
    assert (shown["kind"], shown["label"], shown["prev"], shown["next"]) == ("D", f"Day {latest}", True, False)
    assert shown_tiles(shown) == expected_tiles(days, latest)
    assert all(shown_tiles(shown).values())  # the sample's latest day has every KPI
    uptime = shown["tiles"]["tile-uptime"]["chart"]
    assert uptime["type"] == "doughnut" and sum(uptime["data"][0]) == period_minutes("D", latest)
    files = shown["tiles"]["tile-files"]["chart"]
    assert files["type"] == "line" and files["labels"] == days["valuesAll"]
    created = {v: values_of(days)[2005].get(v, {}).get("filesCreated", 0) for v in days["valuesAll"]}
    assert files["data"][0] == [created[v] for v in days["valuesAll"]]
    assert not shown["error"]
    assert page.errors() == []


def test_prev_and_next_walk_through_every_available_day(page, server, api):
    days = api("D")
    shown = open_page(page, server.url + "/dashboard/")
    seen = [shown["label"]]
    while shown["prev"]:
        shown = act(page, click("#prev"))
        seen.append(shown["label"])
        value = shown["label"].split(" ", 1)[1]
        assert shown_tiles(shown) == expected_tiles(days, value), value
        if value == NO_SHARED_FILES:  # one KPI missing: its tile says so, the others still show
            assert shown_tiles(shown)["tile-files"] is None and shown_tiles(shown)["tile-uptime"] is not None
    assert seen == [f"Day {v}" for v in reversed(days["valuesAvailable"])]
    assert shown["next"] and not shown["prev"]  # at the earliest day
    shown = act(page, click("#next"))
    assert shown["label"] == f"Day {days['valuesAvailable'][1]}" and shown["prev"]
    assert page.errors() == []


def test_weeks_and_months_start_at_the_latest_and_a_kind_without_values_shows_no_data(page, server, api):
    open_page(page, server.url + "/dashboard/")
    for kind, name in (("W", "Week"), ("M", "Month")):
        agg = api(kind)
        shown = act(page, click(f'[data-kind="{kind}"]'))
        latest = agg["valuesAvailable"][-1]
        assert (shown["kind"], shown["label"], shown["next"]) == (kind, f"{name} {latest}", False)
        assert shown_tiles(shown) == expected_tiles(agg, latest)
    assert api("Y")["valuesAvailable"] == []  # the sample has no yearly value yet (offspot #101)
    shown = act(page, click('[data-kind="Y"]'))
    assert shown["label"] == "No year yet" and not shown["prev"] and not shown["next"]
    assert shown_tiles(shown) == dict.fromkeys(TILES)
    assert shown["csv"] is None and not shown["error"]
    assert page.errors() == []


def test_detail_pages_show_bar_charts_with_one_colour_per_package(page, server, api):
    days = api("D")
    latest = days["valuesAvailable"][-1]
    dashboard = open_page(page, server.url + "/dashboard/")
    swatches = {name: colour for tile in ("tile-usage", "tile-popularity")
                for name, _, colour in dashboard["tiles"][tile]["bars"]}

    popularity = values_of(days)[2001][latest]
    shown = act(page, click('nav a[data-view="popularity"]'))
    detail = shown["tiles"]["detail-popularity"]
    assert detail["rows"] == [[i["package"], str(i["visits"]), str(js_round(i["visits"] * 100 / popularity["totalVisits"]))]
                              for i in popularity["items"]]
    assert detail["chart"]["type"] == "bar"
    assert detail["chart"]["labels"] == [i["package"] for i in popularity["items"]]
    assert detail["chart"]["data"] == [[i["visits"] for i in popularity["items"]]]
    colours = dict(zip(detail["chart"]["labels"], detail["chart"]["colours"]))
    assert len(set(colours.values())) == len(colours)  # no two packages alike
    assert all(rgb(colours[name]) == colour for name, colour in swatches.items() if name in colours)

    usage = values_of(days)[2003][latest]
    shown = act(page, click('nav a[data-view="usage"]'))
    detail = shown["tiles"]["detail-usage"]
    assert detail["fields"]["summary"] == f"{hours(usage['totalMinutesActivity'])} h of activity (all packages)"
    assert detail["chart"]["data"] == [[float(hours(i["minutesActivity"])) for i in usage["items"]]]
    total = usage["totalMinutesActivity"]
    assert detail["rows"] == [[i["package"], hours(i["minutesActivity"]), str(js_round(i["minutesActivity"] * 100 / total))]
                              for i in usage["items"]]
    assert all(dict(zip(detail["chart"]["labels"], detail["chart"]["colours"]))[name] == colour
               for name, colour in colours.items())  # the same colours on the other page

    shown = act(page, click('[data-kind="M"]'))  # and in another kind
    detail = shown["tiles"]["detail-usage"]
    assert shown["label"] == f"Month {api('M')['valuesAvailable'][-1]}"
    assert all(colours[name] == colour for name, colour in zip(detail["chart"]["labels"], detail["chart"]["colours"]))
    shown = act(page, click('[data-kind="Y"]'))  # no yearly value: "No data", no script error
    assert shown["tiles"]["detail-usage"]["nodata"] and shown["tiles"]["detail-usage"]["chart"] is None
    assert page.errors() == []


def test_the_csv_download_is_the_export_of_the_shown_period(page, server, api):
    latest = api("D")["valuesAvailable"][-1]
    shown = open_page(page, server.url + "/dashboard/")
    assert shown["csv"]["download"]
    fetched = page.evaluate(f"fetch({shown['csv']['href']!r}).then(r => r.text())")
    assert fetched == requests.get(shown["csv"]["href"], timeout=10).text
    lines = fetched.splitlines()
    assert lines[0] == "kpi_id,kpi,agg_kind,agg_value,package,measure,value"
    assert {line.split(",")[0] for line in lines[1:]} == {"2001", "2003", "2004", "2005"}
    assert all(f",D,{latest}," in line for line in lines[1:])

    shown = act(page, click('nav a[data-view="popularity"]'))
    fetched = page.evaluate(f"fetch({shown['csv']['href']!r}).then(r => r.text())")
    assert {line.split(",")[0] for line in fetched.splitlines()[1:]} == {"2001"}
    assert page.errors() == []


def test_at_root_a_browser_gets_the_dashboard(page, server, api):
    days = api("D")
    shown = open_page(page, server.url + "/")
    assert shown_tiles(shown) == expected_tiles(days, days["valuesAvailable"][-1])
    assert requests.get(server.url + "/", timeout=10).json()["status"] == "ok"  # JSON clients unchanged
    assert page.errors() == []


def test_an_unreachable_api_shows_an_error_and_no_script_error(page, server):
    """The phone lost the hotspot's network after loading the page: said, and nothing breaks."""
    page.send("Network.enable")
    page.send("Network.setBlockedURLs", urls=["*/api/v1/*"])
    page.goto(server.url + "/dashboard/")
    page.wait_for("document.body.dataset.state === 'error'")
    shown = page.evaluate(SNAPSHOT)
    assert shown["error"] and shown["tiles"] == {} and shown["csv"] is None
    assert page.evaluate("document.getElementById('error').textContent").startswith("Could not load the KPIs")
    # no exception or console error (a Chromium may log the blocked loads themselves)
    assert [e for e in page.errors() if not e.startswith("log: Failed to load resource")] == []


def png_size(path: Path) -> List[int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return list(struct.unpack(">II", head[16:24]))


def boxes(page: Page) -> List[Dict[str, float]]:
    return page.evaluate("[...document.querySelectorAll('.tile')].map(t => { const r = t.getBoundingClientRect(); "
                         "return {left: r.left, right: r.right, top: r.top}; })")


def test_a_phone_gets_one_column_a_desktop_a_row_and_both_are_screenshotted(browser, server, tmp_path):
    out = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    phone = browser.page(360, 740, mobile=True)
    try:
        open_page(phone, server.url + "/dashboard/")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 360  # nothing to scroll sideways
        tiles = boxes(phone)
        assert len(tiles) == 4 and len({t["left"] for t in tiles}) == 1  # stacked
        assert all(0 <= t["left"] and t["right"] <= 360 for t in tiles)
        assert phone.evaluate("document.getElementById('next').getBoundingClientRect().right") <= 360
        assert png_size(phone.screenshot(out / "dashboard-phone.png"))[0] == 360
        assert phone.errors() == []
    finally:
        phone.close()
    desktop = browser.page(1200, 800)
    try:
        open_page(desktop, server.url + "/dashboard/")
        tiles = boxes(desktop)
        assert len({t["top"] for t in tiles}) == 1 and len({t["left"] for t in tiles}) == 4  # one row
        assert png_size(desktop.screenshot(out / "dashboard.png", until="main"))[0] == 1200
        assert desktop.errors() == []
    finally:
        desktop.close()
    if out != DOCS:
        assert (DOCS / "dashboard.png").exists(), "README's screenshot: run once with UPDATE_SCREENSHOTS=1"
