"""Third-party indicators and log formats through entry points: a real distribution (a package and
its ``.dist-info`` with ``entry_points.txt``, as pip installs one) on ``sys.path``, found by
importlib.metadata, configured by name in ``[kpi]``, tailed by the real processing thread and
served by ``/api/v1``; unknown or broken plugins stop the start with a clear error."""
from __future__ import annotations

import csv
import io
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from statskit.config import ConfigError

from test_kpi_api import settings_for

PLUGIN = '''
from statskit.kpi.extensions import Indicator
from statskit.kpi.inputs import Skipped


def parse_tsv(raw):
    """ts, host, uri, method, status: tab-separated."""
    if raw == b"explode":
        raise RuntimeError("a bug in the format")
    parts = raw.decode("utf-8").split("\\t")
    if len(parts) != 5 or not parts[4].isdigit():
        raise Skipped("not_handled_request")
    return float(parts[0]), parts[1], parts[2], parts[3], int(parts[4]), {}


def status_class(line):
    if line.uri == "/boom":
        raise RuntimeError("a bug in the plugin")
    return [(f"{line.status // 100}xx", line.method)]


STATUS = Indicator(1500, "StatusClass", status_class, 2500, "StatusClasses")


def active_hosts():  # a factory is accepted too
    return Indicator(1501, "HostActivity", lambda line: [line.host], 2501, "HostMinutes", usage=True,
                     compute=lambda sums: {"hosts": {dim[0]: value for dim, value in sorted(sums.items())}})
'''
ENTRY_POINTS = """\
[statskit.kpi.indicators]
status-classes = statskit_kpi_demo:STATUS
host-minutes = statskit_kpi_demo:active_hosts
broken = statskit_kpi_demo_missing:NOTHING
clashing = statskit_kpi_demo:STATUS

[statskit.kpi.log_formats]
tsv = statskit_kpi_demo:parse_tsv
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """``statskit-kpi-demo`` 0.1 installed in a site folder put on ``sys.path``."""
    site = tmp_path / "site"
    (site / "statskit_kpi_demo").mkdir(parents=True)
    (site / "statskit_kpi_demo" / "__init__.py").write_text(PLUGIN)
    info = site / "statskit_kpi_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: statskit-kpi-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "RECORD").write_text("")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("statskit_kpi_demo", None)  # each test imports its own copy
    yield site
    sys.modules.pop("statskit_kpi_demo", None)


def tsv(at: datetime, host: str = "kiwix.box.test", uri: str = "/", method: str = "GET", status: int = 200) -> bytes:
    return f"{at.timestamp()}\t{host}\t{uri}\t{method}\t{status}\n".encode()


def wait_for(client, kpi_id: int, kind: str, value: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.simulate_get(f"/api/v1/kpis/{kpi_id}/values", params={"agg_kind": kind, "agg_value": value})
        if got.status_code == 200:
            return got.json["value"]
        time.sleep(0.05)
    return None


def test_a_third_party_log_format_and_indicators_become_kpis(installed, tmp_path, app_client):
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [tsv(datetime(2024, 5, 6, 10, m)) for m in range(0, 30)]  # 10:00-10:29, 2xx GET
    lines += [tsv(datetime(2024, 5, 6, 10, 40), uri="/x", method="POST", status=404)] * 3
    lines += [tsv(datetime(2024, 5, 6, 10, 45), host="fm.box.test", status=500), b"not a tsv line\n",
              tsv(datetime(2024, 5, 6, 10, 50), uri="/boom"),  # the plugin raises: counted, line kept
              b"explode\n", b"1e300\tkiwix.box.test\t/\tGET\t200\n",  # format errors: skipped, counted
              tsv(datetime(2024, 5, 6, 11, 1))]  # closes 10:00
    (logs / "access.tsv").write_bytes(b"".join(lines))
    client = app_client(settings_for(tmp_path, **{"kpi.log_format": "tsv", "kpi.pattern": "*.tsv",
                                                  "kpi.indicators": ["status-classes", "host-minutes"]}))

    assert wait_for(client, 2500, "D", "2024-05-06") == {
        "items": [{"dimension": ["2xx", "GET"], "value": 30}, {"dimension": ["4xx", "POST"], "value": 3},
                  {"dimension": ["5xx", "GET"], "value": 1}], "total": 34}
    # usage: 10-minute slots from each host's first minute: kiwix 10:00-10:29, 10:40, 10:50 (5), fm 10:45 (1)
    assert wait_for(client, 2501, "D", "2024-05-06") == {"hosts": {"fm.box.test": 10, "kiwix.box.test": 50}}
    days = client.simulate_get("/api/v1/aggregations/D").json
    assert [k["kpiId"] for k in days["kpis"]] == [2001, 2003, 2004, 2005, 2500, 2501]
    export = client.simulate_get("/api/v1/export", params={"agg_kind": "D", "kpi_id": "2500"})
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["kpi"], r["package"], r["measure"], r["value"]) for r in rows] == [
        ("StatusClasses", "2xx/GET", "value", "30"), ("StatusClasses", "4xx/POST", "value", "3"),
        ("StatusClasses", "5xx/GET", "value", "1"), ("StatusClasses", "", "total", "34")]
    records = client.simulate_get("/api/v1/records").json["records"]
    assert {"indicatorId": 1500, "dimensions": ["4xx", "POST"], "value": 3} in [
        {k: r[k] for k in ("indicatorId", "dimensions", "value")} for r in records]
    metrics = client.simulate_get("/metrics").text.splitlines()
    lines_by_result = {"accepted": 36, "not_handled_request": 1, "format_error": 1, "bad_timestamp": 1}
    for result, count in lines_by_result.items():
        assert f'statskit_kpi_log_lines_total{{result="{result}"}} {count}.0' in metrics
    assert 'statskit_kpi_inputs_dropped_total{reason="indicator_error"} 1.0' in metrics


@pytest.mark.parametrize("option, value, message", [
    ("kpi.indicators", ["devices"], r"\[kpi\] indicators: unknown KPI indicator 'devices': installed: "
                                    r"broken, clashing, host-minutes, status-classes; .*'statskit.kpi.indicators'"),
    ("kpi.indicators", ["broken"], r"'broken' \(statskit.kpi.indicators entry point statskit_kpi_demo_missing:"
                                   r"NOTHING\) does not load: ModuleNotFoundError"),
    ("kpi.indicators", ["status-classes", "clashing"], "use the same id"),
    ("kpi.log_format", "nginx", r"\[kpi\] log_format: unknown log format 'nginx': installed: caddy, tsv"),
])
def test_an_unknown_or_broken_plugin_stops_the_start_with_a_clear_error(installed, tmp_path, app_client,
                                                                         option, value, message):
    with pytest.raises(ConfigError, match=message):
        app_client(settings_for(tmp_path, **{option: value}))


def test_without_the_distribution_the_names_are_unknown(tmp_path, app_client):
    with pytest.raises(ConfigError, match="unknown KPI indicator 'status-classes': installed: none"):
        app_client(settings_for(tmp_path, **{"kpi.indicators": ["status-classes"]}))


def test_ids_outside_the_third_party_ranges_are_refused(installed: Path, tmp_path, app_client):
    (installed / "statskit_kpi_demo" / "__init__.py").write_text(
        PLUGIN.replace("Indicator(1500,", "Indicator(1001,"))  # PackageHomeVisit's id
    with pytest.raises(ConfigError, match="ids must be in 1500-1999"):
        app_client(settings_for(tmp_path, **{"kpi.indicators": ["status-classes"]}))
