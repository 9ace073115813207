"""The offspot KPI REST API in-process (falcon.testing): the original's paths, JSON and statuses,
with 4xx JSON for every bad parameter, CORS, CSV export, records and /metrics."""
from __future__ import annotations

import csv
import io
import shutil
import time
from datetime import datetime, timedelta

import pytest

from statskit.config import ConfigError, load_settings
from statskit.kpi.engine import Engine
from statskit.kpi.inputs import Input
from statskit.kpi.store import SCHEMA
from statskit.state.sqlite import SQLiteDB

from kpi_support import caddy, write_packages


def settings_for(tmp_path, env=None, **overrides):
    values = {"state.backend": "memory", "sinks.enabled": [], "server.data_dir": str(tmp_path / "data"),
              "kpi.enabled": True, "kpi.logs_dir": str(tmp_path / "logs"),
              "kpi.packages_file": str(write_packages(tmp_path)), "kpi.poll_interval": 0.05}
    values.update(overrides)
    return load_settings(env=env or {}, overrides=values)


def fill(data_dir, start, hours, every=1):
    """Hourly data from ``start``: a visit and a shared file each ``every`` hours."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = SQLiteDB(str(data_dir / "kpi.db"))
    db.ensure_schema(SCHEMA)
    engine = Engine()
    with db.transaction() as conn:
        engine.start(conn)
        for hour in range(0, hours + 1, every):
            at = (start + timedelta(hours=hour, minutes=5)).timestamp()
            package = "Wiki" if hour % 3 else "Books"
            engine.feed(conn, at, [Input("home_visit", package), Input("request", package),
                                   Input("FILE_CREATED", "Shared", 2)])
        engine.snapshot(conn)
    db.close()


START, HOURS, EVERY = datetime(2023, 3, 1), 24 * 427, 5


def expected_visits(first, last):
    """Visits the fill recorded from ``first`` to ``last`` (exclusive); the last hour is still open."""
    return sum(1 for h in range(0, HOURS + 1, EVERY)[:-1] if first <= START + timedelta(hours=h) < last)


@pytest.fixture(scope="module")
def year_db(tmp_path_factory):
    """Fourteen months of data (2023-03-01 .. 2024-05-01), built once."""
    folder = tmp_path_factory.mktemp("year")
    fill(folder, START, HOURS, every=EVERY)
    return folder / "kpi.db"


@pytest.fixture
def year_client(tmp_path, app_client, year_db):
    """The year of data in a fresh data dir, served without tailing."""
    (tmp_path / "data").mkdir()
    shutil.copy(year_db, tmp_path / "data" / "kpi.db")
    return app_client(settings_for(tmp_path, **{"kpi.processing_disabled": True}))


def test_aggregations_are_sorted_by_kind_then_value(year_client):
    aggregations = year_client.simulate_get("/api/v1/aggregations").json["aggregations"]
    kinds = [a["kind"] for a in aggregations]
    assert kinds == sorted(kinds) and set(kinds) == {"D", "W", "M", "Y"}
    assert [a["value"] for a in aggregations if a["kind"] == "Y"] == ["2023", "2024"]
    assert [a["value"] for a in aggregations if a["kind"] == "D"] == [f"2024-04-{d}" for d in range(24, 31)]
    assert len([a for a in aggregations if a["kind"] == "M"]) == 12


def test_one_kind_lists_every_kpi_with_its_values(year_client):
    body = year_client.simulate_get("/api/v1/aggregations/M").json
    assert body["aggKind"] == "M"
    assert body["valuesAvailable"] == [f"2023-{m:02d}" for m in range(5, 13)] + [f"2024-{m:02d}" for m in range(1, 5)]
    assert body["valuesAll"] == ["2024-02", "2024-03", "2024-04"]
    assert [k["kpiId"] for k in body["kpis"]] == [2001, 2003, 2004, 2005]
    popularity = body["kpis"][0]["values"]
    assert [v["aggValue"] for v in popularity] == body["valuesAvailable"]
    april = popularity[-1]["kpiValue"]
    assert set(april) == {"items", "totalVisits"} and april["items"][0].keys() == {"package", "visits"}
    assert april["totalVisits"] == expected_visits(datetime(2024, 4, 1), datetime(2024, 5, 1))
    years = year_client.simulate_get("/api/v1/aggregations/Y").json
    assert years["valuesAll"] == ["2023", "2024"]


def test_a_kpi_value_and_the_originals_404(year_client):
    got = year_client.simulate_get("/api/v1/kpis/2005/values", params={"agg_kind": "W", "agg_value": "2024 W17"})
    assert got.status_code == 200
    created = 2 * expected_visits(datetime(2024, 4, 22), datetime(2024, 4, 29))  # 2024 W17: Monday 22 April
    assert got.json == {"kpiId": 2005, "value": {"filesCreated": created, "filesDeleted": 0}}
    missing = year_client.simulate_get("/api/v1/kpis/2005/values", params={"agg_kind": "D", "agg_value": "2020-01-01"})
    assert (missing.status_code, missing.json) == (404, {"detail": "KPI not found"})
    unknown = year_client.simulate_get("/api/v1/kpis/2002/values", params={"agg_kind": "Y", "agg_value": "2024"})
    assert (unknown.status_code, unknown.json) == (404, {"detail": "KPI not found"})


@pytest.mark.parametrize("path, params", [
    ("/api/v1/aggregations/DX", {}),  # crashed the original with a 500
    ("/api/v1/aggregations/d", {}),
    ("/api/v1/kpis/2001/values", {}),
    ("/api/v1/kpis/2001/values", {"agg_kind": "D"}),
    ("/api/v1/kpis/2001/values", {"agg_kind": "DX", "agg_value": "2024"}),
    ("/api/v1/kpis/abc/values", {"agg_kind": "Y", "agg_value": "2024"}),
    ("/api/v1/export", {}),
    ("/api/v1/export", {"agg_kind": "M", "from": "2024-13"}),
    ("/api/v1/export", {"agg_kind": "M", "kpi_id": "9"}),
    ("/api/v1/export", {"agg_kind": "M", "format": "xml"}),
    ("/api/v1/records", {"since": "yesterday"}),
    ("/api/v1/records", {"limit": "0"}),
    ("/api/v1/records", {"since": "9" * 30}),  # past SQLite's integers
    ("/api/v1/records", {"since": "²"}),
    ("/api/v1/kpis/99999999999999999999999/values", {"agg_kind": "Y", "agg_value": "2024"}),
    ("/api/v1/kpis/²/values", {"agg_kind": "Y", "agg_value": "2024"}),
    ("/api/v1/export", {"agg_kind": "M", "kpi_id": "²"}),
    ("/api/v1/export", {"agg_kind": "W", "to": "2024 W99"}),
])
def test_bad_or_missing_parameters_are_422_json_and_change_nothing(year_client, path, params):
    before = year_client.simulate_get("/api/v1/aggregations").json
    got = year_client.simulate_get(path, params=params)
    assert got.status_code == 422
    assert got.json["detail"][0]["loc"] and got.json["error"] == "unprocessable_entity"
    assert year_client.simulate_get("/api/v1/aggregations").json == before


@pytest.mark.parametrize("value", ["2024-01-01\x00", "' OR 1=1 --", "é" * 5000, "2024-02-30"])
def test_odd_aggregation_values_are_not_found_not_errors(year_client, value):
    got = year_client.simulate_get("/api/v1/kpis/2001/values", params={"agg_kind": "D", "agg_value": value})
    assert (got.status_code, got.json) == (404, {"detail": "KPI not found"})


def test_csv_export_over_a_range_of_periods(year_client):
    got = year_client.simulate_get("/api/v1/export", params={"agg_kind": "M", "from": "2024-01", "to": "2024-02"})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert {r["agg_value"] for r in rows} == {"2024-01", "2024-02"}
    uptime = [r for r in rows if r["measure"] == "nbMinutesOn"]
    assert [(r["kpi_id"], r["kpi"]) for r in uptime] == [("2004", "Uptime")] * 2
    created = {r["agg_value"]: int(r["value"]) for r in rows if r["measure"] == "filesCreated"}
    assert created == {"2024-01": 2 * expected_visits(datetime(2024, 1, 1), datetime(2024, 2, 1)),
                       "2024-02": 2 * expected_visits(datetime(2024, 2, 1), datetime(2024, 3, 1))}
    one = year_client.simulate_get("/api/v1/kpis/2001/values",
                                   params={"agg_kind": "M", "agg_value": "2024-01", "format": "csv"})
    assert one.text.splitlines()[0] == "kpi,agg_kind,agg_value,package,measure,value"
    assert "PackagePopularity,M,2024-01,Wiki,visits," in one.text


def test_records_are_the_hourly_intermediate_format_paged_without_gaps(year_client):
    everything = year_client.simulate_get("/api/v1/records").json["records"]
    assert set(everything[0]) == {"id", "period", "indicatorId", "dimensions", "value"}
    paged, after = [], 0
    for _ in range(len(everything)):  # bounded: at least one record a page
        page = year_client.simulate_get("/api/v1/records", params={"after": after, "limit": 97}).json
        paged += page["records"]
        if page["next"] is None:
            break
        after = page["next"]
    assert paged == everything
    since = everything[-1]["period"]
    assert {r["period"] for r in year_client.simulate_get("/api/v1/records", params={"since": since}).json["records"]} == {since}


def test_docs_openapi_and_the_api_redirect(year_client):
    for path in ("/api", "/api/v1"):
        redirect = year_client.simulate_get(path)
        assert (redirect.status_code, redirect.headers["location"]) == (307, "/api/v1/")
    docs = year_client.simulate_get("/api/v1/")
    assert docs.status_code == 200 and "openapi.json" in docs.text and "//cdn" not in docs.text
    assert "/api/v1/kpis/{kpi_id}/values" in year_client.simulate_get("/api/v1/openapi.json").json["paths"]


def test_cors_from_allowed_origins_split_on_bars(tmp_path, app_client):
    client = app_client(settings_for(tmp_path, env={"ALLOWED_ORIGINS": "http://a.box|http://b.box"},
                                     **{"kpi.processing_disabled": True}))
    allowed = client.simulate_get("/api/v1/aggregations", headers={"Origin": "http://b.box"})
    assert allowed.headers["access-control-allow-origin"] == "http://b.box"
    other = client.simulate_get("/api/v1/aggregations", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.simulate_options("/api/v1/aggregations/D", headers={
        "Origin": "http://a.box", "Access-Control-Request-Method": "GET"})
    assert "GET" in preflight.headers["access-control-allow-methods"]


def test_the_feature_is_off_by_default_and_reads_the_originals_env_names(tmp_path, app_client):
    client = app_client(load_settings(env={}, overrides={"state.backend": "memory", "sinks.enabled": [],
                                                         "server.data_dir": str(tmp_path)}))
    assert client.simulate_get("/api/v1/aggregations").status_code == 404
    settings = load_settings(env={"REVERSE_PROXY_LOGS_LOCATION": "/l", "REVERSE_PROXY_LOGS_PATTERN": "x*.json",
                                  "PACKAGE_CONF_FILE": "/p.yml", "PROCESSING_DISABLED": "TRUE",
                                  "STATSKIT_KPI_ENABLED": "true"})
    kpi = settings.kpi
    assert (kpi.enabled, kpi.logs_dir, kpi.pattern, kpi.packages_file, kpi.processing_disabled) == (
        True, "/l", "x*.json", "/p.yml", True)


def test_an_unknown_log_format_stops_the_start_with_a_clear_error(tmp_path, app_client):
    with pytest.raises(ConfigError, match="log_format.*nginx"):
        app_client(settings_for(tmp_path, **{"kpi.log_format": "nginx"}))


def test_an_unusable_packages_file_stops_the_start_with_a_clear_error(tmp_path, app_client):
    (tmp_path / "empty.yml").write_text("")
    with pytest.raises(ConfigError, match="packages"):
        app_client(settings_for(tmp_path, **{"kpi.packages_file": str(tmp_path / "empty.yml")}))


def test_logs_are_tailed_in_the_background_and_counted_in_metrics(tmp_path, app_client):
    logs = tmp_path / "logs"
    logs.mkdir()
    start = datetime(2024, 5, 6, 10, 0).timestamp()
    (logs / "caddy_access_logs.json").write_bytes(
        b"".join(caddy(start + 60 * i) for i in range(90)) + b"not json\n")
    client = app_client(settings_for(tmp_path))
    deadline = time.monotonic() + 20
    value = None
    while time.monotonic() < deadline:
        got = client.simulate_get("/api/v1/kpis/2001/values", params={"agg_kind": "D", "agg_value": "2024-05-06"})
        if got.status_code == 200:
            value = got.json["value"]
            break
        time.sleep(0.05)
    assert value == {"items": [{"package": "Wikipédia", "visits": 60}], "totalVisits": 60}  # 10:00-10:59 closed
    metrics = client.simulate_get("/metrics").text
    for _ in range(100):  # the batch with the bad line is the same transaction: it is there
        if 'statskit_kpi_log_lines_total{result="not_json"} 1.0' in metrics:
            break
        time.sleep(0.05)
        metrics = client.simulate_get("/metrics").text
    assert 'statskit_kpi_log_lines_total{result="accepted"} 90.0' in metrics
    assert 'statskit_kpi_log_lines_total{result="not_json"} 1.0' in metrics
    assert "statskit_kpi_log_files 1.0" in metrics


def test_the_dashboard_folder_is_served_with_index_html_for_app_paths(tmp_path, app_client):
    ui = tmp_path / "ui"
    (ui / "assets").mkdir(parents=True)
    (ui / "index.html").write_text("<html>dashboard</html>")
    (ui / "assets" / "app.js").write_text("console.log(1)")
    client = app_client(settings_for(tmp_path, env={"UI_LOCATION": str(ui)}, **{"kpi.processing_disabled": True}))
    assert client.simulate_get("/dashboard/assets/app.js").text == "console.log(1)"
    assert client.simulate_get("/dashboard/popularity").text == "<html>dashboard</html>"
    assert client.simulate_get("/dashboard/../secret").status_code == 404
    assert client.simulate_get("/").json["status"] == "ok"  # the health check keeps /


def test_two_apps_on_one_data_dir_tail_once(tmp_path, app_client):
    logs = tmp_path / "logs"
    logs.mkdir()
    start = datetime(2024, 5, 6, 10, 0).timestamp()
    settings = settings_for(tmp_path)
    first, second = app_client(settings), app_client(settings)  # as two gunicorn workers
    (logs / "caddy_access_logs.json").write_bytes(b"".join(caddy(start + 30 * i) for i in range(150)))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and 'result="accepted"} 150.0' not in second.simulate_get("/metrics").text:
        time.sleep(0.05)
    time.sleep(0.3)  # a second tailer would have counted them again by now
    for client in (first, second):
        metrics = client.simulate_get("/metrics").text
        assert 'statskit_kpi_log_lines_total{result="accepted"} 150.0' in metrics
        assert "statskit_kpi_processing_heartbeat_timestamp_seconds 0.0" not in metrics
    got = first.simulate_get("/api/v1/kpis/2001/values", params={"agg_kind": "W", "agg_value": "2024 W19"})
    assert got.json["value"]["totalVisits"] == 120  # 10:00-10:59 closed by the 11:00 line; 11:xx still open
