"""One-shot events in the library: parsing rules, exactly-once queues (memory and SQLite), rendering."""
import math
import multiprocessing
import os
import re
import sqlite3

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statskit.errors import TooLarge, ValidationError
from statskit.metrics import Scrape, render
from statskit_server.peer import check_scraper_name
from statskit.oneshot import (DROPPED, EVENT_COUNT, REFUSED, OneShot, QueueLimits, Reporter,
                              open_queue, parse_event, parse_form, parse_value, series_key)
from statskit.state import open_backend, sum_by
from statskit.state.memory import MemoryState
from statskit.oneshot.store_memory import MemoryQueue
from statskit.oneshot.store_records import RecordsQueue
from statskit.oneshot.store_sqlite import SQLiteQueue
from statskit.state.sqlite import SQLiteState

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


# --------------------------------------------------------------------------- parsing


def test_form_pairs_decode_like_a_browser_form():
    assert parse_form(b"type=deploy&a+b=x%2Fy&&flag") == [("type", "deploy"), ("a b", "x/y"), ("flag", "")]
    assert parse_form("caf%C3%A9=%C3%A9t%C3%A9".encode()) == [("café", "été")]


@pytest.mark.parametrize("raw, message", [
    (b"a=%zz", "invalid URL escape '%zz'"),
    (b"a=1%", "invalid URL escape '%'"),
    (b"a=b;c=d", "semicolon"),
    (b"a=%ff%fe", "not valid UTF-8"),
])
def test_malformed_forms_are_refused_with_the_reason(raw, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_form(raw)


@pytest.mark.parametrize("text, expected", [
    ("2.5", 2.5), ("-1e3", -1000.0), ("1_000", 1000.0), (".5", 0.5), ("1.", 1.0), ("+7", 7.0),
    ("0x1p-2", 0.25), ("0X1.8P1", 3.0), ("Inf", math.inf), ("+inf", math.inf), ("-Infinity", -math.inf),
    ("1e-400", 0.0),
])
def test_values_go_parsefloat_accepts(text, expected):
    assert parse_value(text) == expected


def test_nan_is_a_value():
    assert math.isnan(parse_value("NaN")) and math.isnan(parse_value("nan"))


@pytest.mark.parametrize("text", ["", " 1", "1 ", "abc", "1e400", "-1e400", "1__0", "_1", "1_", "0x1", "+NaN",
                                  "1,5", "\u0661", "0x", "e5", "1e", "2.5.1", "1" * 300,
                                  "0x1p1024", "-0x1p99999"])
def test_values_that_are_not_numbers_are_refused(text):
    with pytest.raises(ValidationError) as info:
        parse_value(text)
    assert info.value.field == "value"


def test_labels_are_sorted_and_spaces_in_names_become_underscores():
    event = parse_event([("type", "deploy"), ("my service", "api"), ("value", "2.5")])
    assert event.labels == (("my_service", "api"), ("type", "deploy")) and event.value == 2.5
    assert event.series == 'events_to_metrics{my_service="api",type="deploy"}'
    assert parse_event([]).value == 1.0 and parse_event([]).series == "events_to_metrics{}"


@pytest.mark.parametrize("pairs, reason", [
    ([("1abc", "x")], "not a valid Prometheus label name"),
    ([("a-b", "x")], "not a valid Prometheus label name"),
    ([("é", "x")], "not a valid Prometheus label name"),
    ([("__name__", "x")], "reserves"),
    ([("", "x")], "empty name"),
    ([("a", "")], "empty value"),
    ([("a", " x")], "white space"),
    ([("a", "x\u00a0")], "white space"),
    ([("a", "x\x00y")], "control character"),
    ([("a", "1"), ("a", "2")], "given twice"),
    ([("a b", "1"), ("a_b", "2")], "given twice"),
    ([("value", "1"), ("value", "2")], "given twice"),
    ([("value", "many")], "not a number"),
])
def test_events_that_cannot_be_represented_say_why(pairs, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_event(pairs)


def test_quotes_backslashes_and_newlines_are_escaped_not_refused():
    event = parse_event([("msg", 'say "hi"\\\nbye')])
    assert event.series == 'events_to_metrics{msg="say \\"hi\\"\\\\\\nbye"}'


def test_token_is_never_a_label_and_identical_repeats_are_fine():
    event = parse_event([("token", "secret"), ("a", "1"), ("a", "1"), ("value", "3"), ("value", "3")])
    assert event.labels == (("a", "1"),) and event.value == 3.0


def test_oversized_label_sets_are_too_large():
    with pytest.raises(TooLarge):
        parse_event([("big", "x" * 2000)], max_bytes=1000)


@pytest.mark.parametrize("name", ["prom-a", "prom_b.example.org:9090", "p@1/2"])
def test_scraper_names(name):
    assert check_scraper_name(name) == name


@pytest.mark.parametrize("name", ["10.0.0.1", "::1", "-x", "a b", "x" * 200, ""])
def test_scraper_names_that_could_impersonate_or_are_malformed(name):
    with pytest.raises(ValidationError):
        check_scraper_name(name)


# --------------------------------------------------------------------------- queues

LIMITS = QueueLimits(max_scrapers=3, max_pending=5, scraper_timeout=60.0, maintain_every=4)


@pytest.fixture(params=["memory", "sqlite", "generic", "redis"])
def make_queue(request, tmp_path):
    """Each queue: the tuned memory and SQLite ones, and the generic one on a backend's keyed
    records and numbered log (what a backend without a tuned queue gets), also on a real Redis."""
    states = []
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None  # torn down last

    def make(limits=LIMITS, path=None):
        if request.param == "memory":
            state = MemoryState()
            queue = MemoryQueue(limits, Reporter(state))
        elif request.param == "generic":
            state = SQLiteState(str(path or tmp_path / "state.db"))
            queue = RecordsQueue(state.records, state.logs, limits, Reporter(state))
        elif request.param == "redis":  # the generic queue on a real Redis
            state = open_backend("redis", str(tmp_path), 0.05, SimpleNamespace(redis_url=server.url, redis_prefix="t"))
            queue = open_queue(state, limits, Reporter(state))
        else:
            state = SQLiteState(str(path or tmp_path / "state.db"))
            queue = SQLiteQueue(state.db, limits, Reporter(state))
        states.append(state)
        return queue, state

    yield make
    for state in states:
        state.close()


def values(result):
    return [d.value for d in result.deliveries]


def test_a_new_scraper_gets_only_events_posted_after_its_first_scrape(make_queue):
    queue, _ = make_queue()
    queue.post('{"a":"1"}', 1.0, 1000)
    first = queue.scrape("A", 2000)
    assert first.status == "new" and first.deliveries == []
    queue.post('{"a":"2"}', 2.0, 3000)
    assert values(queue.scrape("A", 4000)) == [2.0]
    assert values(queue.scrape("A", 5000)) == []


def test_each_scraper_gets_each_event_once(make_queue):
    queue, _ = make_queue()
    queue.scrape("A", 1000)
    queue.scrape("B", 1000)
    for i in range(3):
        queue.post(f'{{"n":"{i}"}}', float(i), 2000 + i)
    assert values(queue.scrape("A", 3000)) == [0.0, 1.0, 2.0]
    queue.post('{"n":"9"}', 9.0, 3500)
    assert values(queue.scrape("B", 4000)) == [0.0, 1.0, 2.0, 9.0]
    assert values(queue.scrape("A", 5000)) == [9.0]
    assert values(queue.scrape("A", 6000)) == values(queue.scrape("B", 6000)) == []


def test_same_series_twice_goes_out_in_consecutive_scrapes(make_queue):
    # Prometheus keeps one sample per series per scrape: overwriting (the original) lost events.
    queue, _ = make_queue()
    queue.scrape("A", 1000)
    queue.post('{"t":"x"}', 1.0, 2000)
    queue.post('{"t":"y"}', 5.0, 2001)
    queue.post('{"t":"x"}', 2.0, 2002)
    queue.post('{"t":"y"}', 6.0, 2003)
    queue.post('{"t":"z"}', 7.0, 2004)
    first = queue.scrape("A", 3000)
    assert values(first) == [1.0, 5.0, 7.0] and first.pending == {"A": 5}
    second = queue.scrape("A", 4000)
    assert values(second) == [2.0, 6.0] and second.pending == {"A": 2}
    assert values(queue.scrape("A", 5000)) == []


def test_same_millisecond_events_of_a_series_get_increasing_timestamps(make_queue):
    queue, _ = make_queue()
    queue.scrape("A", 1000)
    queue.scrape("B", 1000)
    for value in (1.0, 2.0, 3.0):
        queue.post('{"t":"x"}', value, 5000)
    stamps = {"A": [], "B": []}
    for now in (6000, 7000, 8000):
        for scraper in stamps:
            stamps[scraper] += [d.time_ms for d in queue.scrape(scraper, now).deliveries]
    assert stamps["A"] == stamps["B"] == [5000, 5001, 5002]


def test_peek_neither_consumes_nor_registers(make_queue):
    queue, _ = make_queue()
    queue.scrape("A", 1000)
    queue.post('{"a":"1"}', 1.0, 1500)
    peek = queue.scrape("A", 2000, consume=False)
    assert peek.status == "peek" and values(peek) == [1.0]
    assert queue.scrape("stranger", 2000, consume=False).deliveries == []
    assert values(queue.scrape("A", 3000)) == [1.0]
    assert set(queue.scrape("A", 4000).pending) == {"A"}  # the stranger was never registered


def test_backlog_over_max_pending_drops_the_oldest_and_counts_them(make_queue):
    queue, state = make_queue()
    queue.scrape("A", 1000)
    for i in range(8):
        queue.post(f'{{"n":"{i}"}}', float(i), 2000 + i)
    result = queue.scrape("A", 3000)
    assert values(result) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert sum_by(state.counters(DROPPED), DROPPED) == 3


def test_posts_from_many_threads_at_once_are_each_delivered_once_in_series_order(make_queue):
    # The threads of a gthread worker post at once (SQLite: they share group commits): every
    # event once, with its own stamp, and a series' events in the order of their times.
    import threading
    queue, _ = make_queue(QueueLimits(max_scrapers=3, max_pending=10_000, scraper_timeout=60.0))
    queue.scrape("prom-a", 1000)
    threads = [threading.Thread(target=lambda n=n: [queue.post(f'{{"s":"{i % 3}"}}', float(n * 100 + i), 1001)
                                                   for i in range(30)]) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    queue.flush(5.0)
    got = []
    for t in range(2000, 2200):  # one event per series per scrape
        result = queue.scrape("prom-a", t)
        if not result.deliveries:
            break
        got += result.deliveries
    assert sorted(d.value for d in got) == sorted(float(n * 100 + i) for n in range(8) for i in range(30))
    for series in ('{"s":"0"}', '{"s":"1"}', '{"s":"2"}'):
        times = [d.time_ms for d in got if d.key == series]
        assert len(times) == 80 and len(set(times)) == 80
        if type(queue) is not RecordsQueue:  # the generic queue may number a series out of time order
            assert times == sorted(times)


def test_events_stay_bounded_when_a_scraper_stops_scraping(make_queue):
    queue, state = make_queue()
    queue.scrape("A", 1000)
    for i in range(40):
        queue.post(f'{{"n":"{i}"}}', float(i), 2000 + i)
    # Clean-ups run every maintain_every=4 posts: never more than max_pending + 4 held.
    assert queue.stored() <= LIMITS.max_pending + LIMITS.maintain_every
    assert values(queue.scrape("A", 3000)) == [35.0, 36.0, 37.0, 38.0, 39.0]
    assert sum_by(state.counters(DROPPED), DROPPED) == 35
    assert queue.stored() == 0  # everyone has them now


def test_max_scrapers_refuses_newcomers_and_keeps_the_tracked_ones(make_queue):
    queue, state = make_queue()
    for name in "ABC":
        queue.scrape(name, 1000)
    refused = queue.scrape("D", 1000)
    assert refused.status == "refused" and set(refused.pending) == {"A", "B", "C"}
    queue.post('{"a":"1"}', 1.0, 2000)
    assert queue.scrape("D", 3000).deliveries == []
    assert all(values(queue.scrape(name, 3000)) == [1.0] for name in "ABC")
    assert sum_by(state.counters(REFUSED), REFUSED) == 2


def test_silent_scrapers_are_forgotten_and_their_slot_freed(make_queue):
    queue, state = make_queue()
    for name in "ABC":
        queue.scrape(name, 1000)
    queue.post('{"a":"1"}', 1.0, 2000)
    for now in (30_000, 59_000, 90_000):  # A and B keep scraping, C went away at t=1 s
        queue.scrape("A", now)
        queue.scrape("B", now)
    assert queue.scrape("D", 91_000).status == "new"  # C's slot
    assert sum_by(state.counters(DROPPED), DROPPED) == 1  # C's pending event
    # C coming back is a new scraper (refused now: A, B, D fill the slots).
    back = queue.scrape("C", 92_000)
    assert back.status == "refused" and set(back.pending) == {"A", "B", "D"}


def test_backfill_lets_a_new_scraper_have_recent_events(make_queue):
    queue, _ = make_queue(QueueLimits(max_pending=5, backfill=10.0))
    queue.post('{"a":"old"}', 1.0, 1000)
    queue.post('{"a":"recent"}', 2.0, 15_000)
    queue.post('{"a":"newer"}', 3.0, 16_000)
    first = queue.scrape("A", 20_000)
    assert first.status == "new" and values(first) == [2.0, 3.0]
    assert values(queue.scrape("B", 21_000)) == [2.0, 3.0]
    assert values(queue.scrape("C", 40_000)) == []  # now out of the window


def test_backfill_never_exceeds_max_pending(make_queue):
    queue, _ = make_queue(QueueLimits(max_pending=3, backfill=100.0, maintain_every=1000))
    for i in range(6):
        queue.post(f'{{"n":"{i}"}}', float(i), 1000 + i)
    assert values(queue.scrape("A", 2000)) == [3.0, 4.0, 5.0]


def test_nan_and_infinities_come_back(make_queue):
    queue, _ = make_queue()
    queue.scrape("A", 1000)
    for i, value in enumerate((math.nan, math.inf, -math.inf)):
        queue.post(f'{{"n":"{i}"}}', value, 2000)
    got = values(queue.scrape("A", 3000))
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf]


# --------------------------------------------------------------------------- SQLite: workers, restarts


SCENARIOS = {
    "distinct-one-value": [("a", "1", 1000), ("b", "1", 1001), ("c", "1", 1000)],
    "own-values": [("a", "1", 1000), ("b", "2.5", 1001), ("c", "1", 1002)],
    "a-series-twice": [("a", "1", 1000), ("b", "1", 1001), ("a", "1", 1002)],
    "nan": [("a", "NaN", 1000), ("b", "NaN", 1001)],
    "older-than-the-scraper": [("a", "1", 500), ("b", "1", 1001)],
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_queue_hands_out_what_the_memory_queue_does(make_queue, scenario):
    # The SQLite queue reads the common case (distinct series, one value) in bulk and the
    # rest row by row; what a scraper gets, scrape after scrape, must not depend on that.
    def deliveries(queue):
        queue.scrape("prom-a", 900)
        for key, value, time_ms in SCENARIOS[scenario]:
            queue.post(series_key([("n", key)]), parse_value(value), time_ms)
        queue.flush(5.0)
        return [[(d.time_ms, d.key, repr(d.value)) for d in queue.scrape("prom-a", 1100 + i).deliveries]
                for i in range(3)]

    queue, _ = make_queue()
    assert deliveries(queue) == deliveries(MemoryQueue(LIMITS, Reporter(MemoryState())))


def test_a_series_twice_far_into_a_backlog_still_waits_for_the_next_scrape(tmp_path):
    # The SQLite queue looks for a repeated series among the first 256 events before reading
    # in bulk; one repeated only later is found in the bulk read, and the rows decide.
    limits = QueueLimits(max_pending=1000)
    state = SQLiteState(str(tmp_path / "state.db"))
    sqlite, memory = SQLiteQueue(state.db, limits, Reporter(state)), MemoryQueue(limits, Reporter(MemoryState()))
    got = {}
    for name, queue in (("sqlite", sqlite), ("memory", memory)):
        queue.scrape("prom-a", 900)
        for i in range(300):
            queue.post(series_key([("n", str(i))]), 1.0, 1000 + i)
        queue.post(series_key([("n", "0")]), 1.0, 2000)
        queue.flush(5.0)
        got[name] = [[(d.time_ms, d.key) for d in queue.scrape("prom-a", 3000 + i).deliveries] for i in range(3)]
    assert [len(d) for d in got["sqlite"]] == [300, 1, 0]
    assert got["sqlite"] == got["memory"]
    state.close()


def test_sqlite_queue_is_shared_by_stores_on_the_same_file_and_survives_reopening(tmp_path):
    path = str(tmp_path / "state.db")
    one, two = SQLiteState(path), SQLiteState(path)
    q1, q2 = SQLiteQueue(one.db, LIMITS, Reporter(one)), SQLiteQueue(two.db, LIMITS, Reporter(two))
    q1.scrape("A", 1000)
    q2.post('{"a":"1"}', 1.0, 2000)
    q1.post('{"a":"2"}', 2.0, 2001)
    q1.flush(5.0)  # posts are group-committed: what a worker's writer does within 50 ms
    assert sorted(values(q2.scrape("A", 3000))) == [1.0, 2.0]
    assert values(q1.scrape("A", 4000)) == []
    q1.post('{"a":"3"}', 3.0, 5000)
    q1.close(5.0)  # a graceful stop commits what is buffered
    one.close()
    two.close()
    reopened = SQLiteState(path)
    assert values(SQLiteQueue(reopened.db, LIMITS, Reporter(reopened)).scrape("A", 6000)) == [3.0]
    reopened.close()


def test_a_series_committed_out_of_order_by_two_workers_still_gets_increasing_times(tmp_path):
    path = str(tmp_path / "state.db")
    one, two = SQLiteState(path), SQLiteState(path)
    q1, q2 = SQLiteQueue(one.db, LIMITS, Reporter(one)), SQLiteQueue(two.db, LIMITS, Reporter(two))
    q1.scrape("A", 1000)
    # Worker one stamped its request first (5100) but commits it after worker two's later one
    # (posts are durable, so the commit order is the order posts return in).
    q2.post('{"t":"x"}', 2.0, 5120)
    q1.post('{"t":"x"}', 1.0, 5100)
    got = [(d.value, d.time_ms) for now in (6000, 7000) for d in q1.scrape("A", now).deliveries]
    # Prometheus drops a sample older than the series' last one: the late commit goes after it.
    assert got == [(2.0, 5120), (1.0, 5121)]
    one.close()
    two.close()


def _open_queue(path, generic):
    state = SQLiteState(path)
    limits = QueueLimits(max_pending=100_000)
    if generic:
        return state, RecordsQueue(state.records, state.logs, limits, Reporter(state))
    return state, SQLiteQueue(state.db, limits, Reporter(state))


def _scrape_worker(path, scraper, rounds, out, generic=False):
    state, queue = _open_queue(path, generic)
    seen = []
    for i in range(rounds):
        seen += [d.seq for d in queue.scrape(scraper, 10_000 + i).deliveries]
    out.put((scraper, seen))


def _post_worker(path, count, generic=False):
    state, queue = _open_queue(path, generic)
    for i in range(count):
        queue.post(f'{{"n":"{i % 7}","p":"{os.getpid()}"}}', float(i), 5000 + i)
    queue.close(10.0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("generic", [False, True], ids=["sqlite", "generic"])
def test_concurrent_processes_deliver_each_event_exactly_once_per_scraper(tmp_path, generic):
    path = str(tmp_path / "state.db")
    state, queue = _open_queue(path, generic)
    queue.scrape("A", 1000)
    queue.scrape("B", 1000)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    posters = [ctx.Process(target=_post_worker, args=(path, 150, generic)) for _ in range(2)]
    scrapers = [ctx.Process(target=_scrape_worker, args=(path, name, 60, out, generic)) for name in "AAB"]
    for proc in posters + scrapers:
        proc.start()
    got = {"A": [], "B": []}
    for _ in scrapers:
        name, seqs = out.get(timeout=60)
        got[name] += seqs
    for proc in posters + scrapers:
        proc.join(30)
    # Whatever the scrapers missed while the posters ran, they get now, and only that.
    for name in got:
        got[name] += [d.seq for _ in range(100) for d in queue.scrape(name, 20_000).deliveries]
    for seqs in got.values():
        assert len(seqs) == len(set(seqs)) == 300
    state.close()


# --------------------------------------------------------------------------- rendering


@pytest.fixture
def oneshot():
    state = MemoryState()
    return OneShot(open_queue(state, LIMITS), state)


def test_rendered_scrape_shows_the_original_families(oneshot):
    render([oneshot], Scrape("prom-a", time=1000.0))
    render([oneshot], Scrape("prom-b", time=1000.0))
    oneshot.post([("type", "deploy"), ("value", "2.5")], now=1001.0)
    body = render([oneshot], Scrape("prom-a", time=1002.0))[0].decode()
    assert 'events_to_metrics{type="deploy"} 2.5\n' in body
    assert "# TYPE events_to_metrics_event_count untyped\nevents_to_metrics_event_count 1.0\n" in body
    assert 'events_to_metrics_scraper_counts{scraper="prom-a"} 1.0' in body
    assert 'events_to_metrics_scraper_counts{scraper="prom-b"} 1.0' in body
    again = render([oneshot], Scrape("prom-a", time=1003.0))[0].decode()
    assert "events_to_metrics{" not in again and "events_to_metrics_event_count 1.0" in again


def test_openmetrics_rendering_keeps_the_original_sample_names(oneshot):
    render([oneshot], Scrape("prom-a", time=1000.0))
    oneshot.post([("type", "deploy")], now=1001.0)
    body = render([oneshot], Scrape("prom-a", time=1002.0), OPENMETRICS)[0].decode()
    assert "events_to_metrics_event_count 1.0\n" in body and 'events_to_metrics{type="deploy"} 1.0\n' in body
    assert body.endswith("# EOF\n")


@pytest.mark.parametrize("accept, stamp", [(None, " 1700000000001\n"), (OPENMETRICS, " 1700000000.0015")])
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_explicit_timestamps_are_the_event_millisecond_in_both_formats(kind, accept, stamp, tmp_path):
    state = MemoryState() if kind == "memory" else SQLiteState(str(tmp_path / "state.db"))
    oneshot = OneShot(open_queue(state, LIMITS), state, explicit_timestamps=True)
    render([oneshot], Scrape("prom-a", time=1_699_999_999.0))
    oneshot.post([("type", "deploy")], now=1_700_000_000.001)
    oneshot.post([("type", "release")], now=1_700_000_000.002)  # (two series, one value: read in bulk)
    body = render([oneshot], Scrape("prom-a", time=1_700_000_001.0), accept)[0].decode()
    assert re.search(r'events_to_metrics\{type="deploy"\} 1\.0' + re.escape(stamp), body), body
    later = stamp.replace("0001", "0002").replace("0015", "0025")
    assert re.search(r'events_to_metrics\{type="release"\} 1\.0' + re.escape(later), body), body
    # 1.0015 s: OpenMetrics readers (Prometheus: int64(ts * 1000)) land on the event's ms exactly.
    assert int(float("1700000000.0015") * 1000) == 1700000000001


ESCAPED = ['plain', 'x{', '{":"}', 'a","b', 'back\\slash', 'new\nline', 'tab\there', 'é ünï', ',', ':']
UNESCAPED = ['plain', 'x{', '}{', '{}', 'a,b', 'k:v', '=', 'é ünï', '-', '0']  # nothing JSON escapes
ODD = [',', ':', ',,', ',x', 'x,', '":"']  # values the two replaces could take for structure


@pytest.mark.parametrize("values", [ESCAPED, UNESCAPED, ODD, [","], [":"]],
                         ids=["escapes", "no-escapes", "odd", "comma", "colon"])
@pytest.mark.parametrize("one_value", [False, True], ids=["own-values", "one-value"])
@pytest.mark.parametrize("accept", [None, OPENMETRICS])
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_event_lines_are_what_prometheus_client_renders_for_awkward_labels(kind, accept, one_value, values, tmp_path):
    # The scrape renders its lines from the stored series keys (fast paths: no JSON escape in
    # any key; one value for all, which the SQLite queue reads in bulk); each must be byte for
    # byte the library's, escapes, unicode and braces included.
    from prometheus_client.core import Metric
    from statskit.exposition import encode
    state = MemoryState() if kind == "memory" else SQLiteState(str(tmp_path / "state.db"))
    oneshot = OneShot(open_queue(state, QueueLimits(max_pending=100)), state)
    render([oneshot], Scrape("prom-a", time=1000.0))
    numbers = [2.5 if one_value else i + 0.5 for i in range(len(values))]
    for i, value in enumerate(values):
        oneshot.post([("a", value), ("n", str(i)), ("z", value), ("value", str(numbers[i]))], now=1001.0)
    body = render([oneshot], Scrape("prom-a", time=1002.0), accept)[0].decode()
    expected = Metric("events_to_metrics", "x", "gauge")
    for i, value in enumerate(values):
        expected.add_sample("events_to_metrics", {"a": value, "n": str(i), "z": value}, numbers[i])  # first and last
    lines = [line for line in encode([expected], openmetrics=accept is not None).decode().splitlines()
             if line.startswith("events_to_metrics{")]
    assert len(lines) == len(values)
    for line in lines:
        assert line + "\n" in body
    assert body.count("\nevents_to_metrics{") == len(values)


@pytest.mark.parametrize("value", ["1", "0", "-0", "NaN", "+Inf"])
def test_events_of_one_value_render_every_line_with_it_an_event_without_labels_too(value):
    state = MemoryState()
    oneshot = OneShot(open_queue(state, QueueLimits(max_pending=100)), state)
    render([oneshot], Scrape("prom-a", time=1000.0))
    for pairs in ([("n", "1")], [], [("n", "2"), ("z", "x")]):
        oneshot.post(pairs + [("value", value)], now=1001.0)
    body = render([oneshot], Scrape("prom-a", time=1002.0))[0].decode()
    text = {"1": "1.0", "0": "0.0", "-0": "-0.0", "NaN": "NaN", "+Inf": "+Inf"}[value]
    lines = [line for line in body.splitlines() if line.startswith("events_to_metrics ") or
             line.startswith("events_to_metrics{")]
    assert lines == [f'events_to_metrics{{n="1"}} {text}', f"events_to_metrics {text}",
                     f'events_to_metrics{{n="2",z="x"}} {text}']


def test_drops_and_refusals_are_counters(oneshot):
    for name in ("a", "b", "c", "d"):
        render([oneshot], Scrape(name, time=1000.0))
    for i in range(7):
        oneshot.post([("n", str(i))], now=1001.0)
    body = render([oneshot], Scrape("a", time=1002.0))[0].decode()
    # Counted per scraper: a, b and c each lost the two oldest.
    assert 'events_to_metrics_dropped_total{reason="max_pending"} 6.0' in body
    assert "events_to_metrics_scrapers_refused_total 1.0" in body
    assert sum_by(oneshot.state.counters(EVENT_COUNT), EVENT_COUNT) == 7


def test_head_scrape_renders_without_consuming(oneshot):
    render([oneshot], Scrape("prom-a", time=1000.0))
    oneshot.post([("type", "deploy")], now=1001.0)
    assert b"events_to_metrics{" in render([oneshot], Scrape("prom-a", consume=False, time=1002.0))[0]
    assert b"events_to_metrics{" in render([oneshot], Scrape("prom-a", time=1003.0))[0]
    assert b"events_to_metrics{" not in render([oneshot], Scrape("prom-a", time=1004.0))[0]


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError, match="max_pending"):
        QueueLimits(max_pending=0)


def test_a_failing_queue_leaves_the_rest_of_the_scrape_and_loses_nothing(tmp_path, monkeypatch):
    state = SQLiteState(str(tmp_path / "state.db"))
    oneshot = OneShot(open_queue(state, LIMITS), state)
    render([oneshot], Scrape("prom-a", time=1000.0))
    oneshot.post([("type", "deploy")], now=1001.0)

    def broken_disk(*args):  # fails after the cursor moved, inside the scrape's transaction
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteQueue, "_gc", broken_disk)
        body = render([oneshot], Scrape("prom-a", time=1002.0))[0].decode()
    assert "events_to_metrics_event_count 1.0" in body and "events_to_metrics{" not in body
    assert 'events_to_metrics{type="deploy"} 1.0' in render([oneshot], Scrape("prom-a", time=1003.0))[0].decode()
    state.close()


def test_zero_and_negative_zero_keep_their_own_text_in_one_scrape():
    # 0.0 == -0.0, so a cache keyed by value would hand one the other's text.
    state = MemoryState()
    oneshot = OneShot(open_queue(state, QueueLimits(max_pending=100)), state)
    render([oneshot], Scrape("prom-a", time=1000.0))
    for i, value in enumerate(["0", "-0.0", "0", "-0"]):
        oneshot.post([("n", str(i)), ("value", value)], now=1001.0)
    body = render([oneshot], Scrape("prom-a", time=1002.0))[0].decode()
    for i, text in enumerate(["0.0", "-0.0", "0.0", "-0.0"]):  # as prometheus_client writes them
        assert f'events_to_metrics{{n="{i}"}} {text}\n' in body, body


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 5)), max_size=12), st.integers(0, 6))
def test_a_plan_is_the_same_whether_or_not_every_row_is_the_first_of_its_series(events, since):
    # plan_delivery answers the common case (no ahead, every row the first of its series,
    # none older than since) without its loop; an ahead seq at or below the cursor changes
    # nothing but forces the loop, so both must give the same plan.
    from statskit.oneshot.queue import Delivery
    from statskit.oneshot.store_common import plan_delivery
    rows = [Delivery(10 + i, time_ms, key, 1.0) for i, (key, time_ms) in enumerate(events)]
    fast, loop = plan_delivery(list(rows), 9, set(), since), plan_delivery(list(rows), 9, {9}, since)
    assert (fast.deliveries, fast.cursor, fast.ahead) == (loop.deliveries, loop.cursor, loop.ahead)
