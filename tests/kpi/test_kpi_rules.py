"""The spec's rules, one by one: labels, periods, retention, usage slots, packages, generators, KPIs."""
from __future__ import annotations

from datetime import datetime

import pytest

from statskit.kpi import kpis, periods
from statskit.kpi.indicators import Indicators, TooWideUsage, UsageRecorder
from statskit.kpi.inputs import Generators, Input, Skipped, parse_line
from statskit.kpi.packages import PackagesError, load_packages, parse_packages

from kpi_support import caddy, write_packages


# ---------------------------------------------------------------- labels and periods
@pytest.mark.parametrize("moment, expected", [
    (datetime(2024, 12, 30, 10), ["2024-12-30", "2025 W01", "2024-12", "2024"]),  # the original said 2024 W01
    (datetime(2021, 1, 3, 23), ["2021-01-03", "2020 W53", "2021-01", "2021"]),
    (datetime(2024, 5, 6, 0), ["2024-05-06", "2024 W19", "2024-05", "2024"]),
])
def test_labels_use_the_iso_year_for_weeks(moment, expected):
    assert [periods.label(kind, moment) for kind in periods.KINDS] == expected


def test_period_ranges_cover_whole_hours_stop_inclusive():
    assert periods.period_range("D", "2024-02-29") == (datetime(2024, 2, 29), datetime(2024, 2, 29, 23))
    assert periods.period_range("M", "2024-12") == (datetime(2024, 12, 1), datetime(2024, 12, 31, 23))
    assert periods.period_range("Y", "2023") == (datetime(2023, 1, 1), datetime(2023, 12, 31, 23))
    assert periods.period_range("W", "2020 W53") == (datetime(2020, 12, 28), datetime(2021, 1, 3, 23))


@pytest.mark.parametrize("kind, value", [("DX", "2024"), ("d", "2024-01-01"), ("D", "2024-13-01"),
                                         ("W", "2024 W54"), ("M", "2024-1"), ("Y", "24"), ("D", "")])
def test_bad_kinds_and_values_are_refused(kind, value):
    with pytest.raises(periods.BadPeriod):
        periods.first_day(kind, value)


def test_retention_and_values_all():
    assert periods.oldest_kept("D", "2024-03-02") == "2024-02-25"  # 7 days
    assert periods.oldest_kept("W", "2025 W01") == "2024 W50"  # 4 weeks
    assert periods.oldest_kept("M", "2024-03") == "2023-04"  # 12 months
    assert periods.oldest_kept("Y", "2024") == ""  # all
    assert periods.values_all("D", ["2024-03-01"]) == [f"2024-02-{d}" for d in (24, 25, 26, 27, 28, 29)] + ["2024-03-01"]
    assert periods.values_all("W", ["2025 W02"]) == ["2024 W51", "2024 W52", "2025 W01", "2025 W02"]
    assert periods.values_all("Y", []) == []


# ---------------------------------------------------------------- usage recorder
def test_usage_slots_are_ten_minutes_aligned_on_the_first_input():
    usage = UsageRecorder()
    for minute in (1005, 1009, 1014, 1015, 1064):  # r = 0, 4, 9, 10, 59
        usage.add(minute)
    assert usage.state() == "1005,1015,1055"
    assert usage.value() == 30


def test_usage_past_sixty_minutes_goes_to_the_last_slot_and_past_62_is_dropped():
    usage = UsageRecorder()
    usage.add(0)
    usage.add(61)  # r >= 60: slot m0 + 50
    assert usage.state() == "0,50"
    usage.add(62)
    with pytest.raises(TooWideUsage):
        usage.add(63)
    assert usage.value() == 20


def test_usage_value_is_at_most_sixty():
    usage = UsageRecorder()
    for minute in range(0, 60):
        usage.add(minute)
    assert usage.value() == 60


def test_too_wide_inputs_are_counted_not_fatal():
    indicators = Indicators()
    indicators.apply(Input("request", "A"), 0)
    indicators.apply(Input("request", "A"), 100)
    assert indicators.too_wide == 2  # overall and per package
    assert [(i, d, v) for i, d, v, _ in indicators.rows()] == [(1005, (), 10), (1006, ("A",), 10)]


# ---------------------------------------------------------------- packages.yml
def test_packages_warnings_come_in_the_originals_order():
    conf = parse_packages({"packages": [
        {"title": "no url"},                               # missing url first, even without a kind
        {"url": "//a.test/", "kind": "files"},             # then missing title
        {"url": "http://a.test/", "title": "T1"},          # then unsupported URL (checked before kind)
        {"url": "//a.test/", "title": "T2"},               # then missing kind
        {"url": "//a.test/wiki", "title": "T3", "kind": "zim"},  # then unsupported ZIM URL
        {"url": "//a.test/", "title": "T4", "kind": "video"},    # then unsupported kind
        {"url": "//ok.test/", "title": "OK", "kind": "files"}]})
    assert [w.split(":")[0] for w in conf.warnings] == [
        "Package with no URL", "Package with no title", "Package with unsupported URL",
        "Package with unsupported kind", "Package with unsupported ZIM URL", "Package with unsupported kind"]
    assert [p.title for p in conf.packages] == ["OK"]


@pytest.mark.parametrize("text", ["", "foo: bar\n"])
def test_an_empty_packages_file_or_one_without_packages_is_fatal(tmp_path, text):
    path = tmp_path / "packages.yml"
    path.write_text(text)
    with pytest.raises(PackagesError):
        load_packages(str(path))


# ---------------------------------------------------------------- lines and generators
@pytest.fixture
def generators(tmp_path):
    return Generators(load_packages(str(write_packages(tmp_path))).packages)


def inputs(generators, **kw):
    return [(i.kind, i.package, i.count) for i in generators.inputs(parse_line(caddy(1.0, **kw)))]


def test_zim_home_and_pages(generators):
    assert inputs(generators) == [("home_visit", "Wikipédia", 1), ("request", "Wikipédia", 1)]
    assert inputs(generators, uri="/content/wikipedia_fr_all") == [("home_visit", "Wikipédia", 1),
                                                                    ("request", "Wikipédia", 1)]
    assert inputs(generators, uri="/content/wikipedia_fr_all/A/Paris") == [("request", "Wikipédia", 1)]
    assert inputs(generators, uri="/content/gutenberg_en/A/x") == [("request", "Gutenberg", 1)]
    assert inputs(generators, uri="/content/other_zim/") == []
    assert inputs(generators, host="KIWIX.box.test") == []  # hosts match exactly


def test_files_and_apps(generators):
    assert inputs(generators, host="files.box.test", uri="/") == [("request", "Files", 1), ("home_visit", "Files", 1)]
    assert inputs(generators, host="files.box.test", uri="/a.pdf") == [("request", "Files", 1)]
    assert inputs(generators, host="chat.box.test", uri="/") == [("request", "Chat", 1)]  # apps: no home visit


def test_edupi_and_file_manager_shared_files(generators):
    edupi = dict(host="edupi.box.test")
    assert inputs(generators, method="POST", status=201, uri="/api/documents/", **edupi) == [
        ("request", "Shared", 1), ("FILE_CREATED", "Shared", 1)]
    assert inputs(generators, method="DELETE", status=204, uri="/api/documents/12", **edupi) == [
        ("request", "Shared", 1), ("FILE_DELETED", "Shared", 1)]
    assert inputs(generators, method="POST", status=400, uri="/api/documents/", **edupi) == [("request", "Shared", 1)]
    fm = inputs(generators, host="fm.box.test", uri="/api", method="POST",
                headers={"X-Tfm-Files-Added": ["3"], "X-Tfm-Files-Deleted": ["0"]})
    assert fm == [("request", "Manager", 1), ("FILE_CREATED", "Manager", 3)]


@pytest.mark.parametrize("raw, reason", [
    (b"not json", "not_json"),
    (b'{"level":"info","msg":"handled request"}', "not_handled_request"),
    (caddy(1.0, level="error"), "not_handled_request"),
    (caddy(1.0, msg="received request"), "not_handled_request"),
    (caddy(1.0, status="abc"), "not_handled_request"),
    (caddy(1.0, resp_headers=None), "not_handled_request"),
    (caddy(1.0, ts="yesterday"), "not_handled_request"),
    (b"[1, 2]", "not_handled_request"),
    (caddy(1e300), "bad_timestamp"),  # once an OverflowError that stopped the processing for good
    (caddy(-5.0), "bad_timestamp"),
    (caddy(32503680000), "bad_timestamp"),  # the year 3000
])
def test_lines_that_are_not_handled_requests_are_skipped_with_a_reason(raw, reason):
    with pytest.raises(Skipped) as info:
        parse_line(raw.rstrip(b"\n"))
    assert info.value.reason == reason


def test_a_string_status_is_accepted_as_in_the_original():
    assert parse_line(caddy(5.5, status="200").rstrip()).status == 200


# ---------------------------------------------------------------- KPIs
def test_top_ten_by_value_then_name_and_totals_over_everything():
    sums = {(1001, (f"p{i:02d}",)): i % 4 + 1 for i in range(15)}
    value = kpis.compute(kpis.POPULARITY, sums)
    assert len(value["items"]) == 10
    assert value["items"][:3] == [{"package": "p03", "visits": 4}, {"package": "p07", "visits": 4},
                                  {"package": "p11", "visits": 4}]
    assert value["totalVisits"] == sum(sums.values())


def test_total_usage_uses_the_overall_indicator_and_shared_files_both_counts():
    sums = {(1006, ("A",)): 30, (1006, ("B",)): 20, (1005, ()): 40}
    assert kpis.compute(kpis.TOTAL_USAGE, sums) == {
        "items": [{"package": "A", "minutesActivity": 30}, {"package": "B", "minutesActivity": 20}],
        "totalMinutesActivity": 40}
    assert kpis.compute(kpis.SHARED_FILES, {}) == {"filesCreated": 0, "filesDeleted": 0}
    assert kpis.compute(kpis.UPTIME_KPI, {}) == {"nbMinutesOn": 0}
