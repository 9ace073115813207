"""Sessions, durations and counters, in the library (no Falcon): both cache backends."""
import re
import random
from types import SimpleNamespace

import pytest

from grafana_payloads import ADMIN, JDOE, encode, payload
from support import run_threads
from statskit.grafana.metrics import GrafanaMetrics
from statskit.metrics import Scrape, render
from statskit.grafana import decode_payload
from statskit.grafana import DURATION, SESSIONS, SessionRecord, SessionTracker, session_labels
from statskit.grafana.points import session_point
from statskit.state import label_key
from statskit.state.memory import MemoryState
from statskit.grafana.store_records import RecordSessionCache
from statskit.state import open_backend
from statskit.grafana.stores import MemorySessionCache, SQLiteSessionCache, open_session_cache
from statskit.state.sqlite import SQLiteState, database_path


# --------------------------------------------------------------------------- the oracle

class OriginalReceiver:
    """The Go receiver's cache and GetDuration transcribed from the spec: the test oracle."""

    def __init__(self, timeout=0.0):
        self.timeout = timeout
        self.cache = {}

    def process(self, uuid, kind, t, interval, dashboard="d"):
        if dashboard == "new":
            return
        old = self.cache.get(uuid)
        if kind == "start":
            if old is None:
                self.cache[uuid] = dict(start=t, hb=[], end=None, interval=interval)
        elif kind == "end":
            self.cache[uuid] = (dict(start=old["start"], hb=old["hb"], end=t, interval=interval) if old
                                else dict(start=t, hb=[], end=t, interval=interval))
        else:
            self.cache[uuid] = (dict(start=old["start"], hb=old["hb"] + [t], end=None, interval=interval) if old
                                else dict(start=t, hb=[t], end=None, interval=interval))

    def duration(self, uuid):
        s = self.cache[uuid]
        cap = self.timeout
        if s["hb"]:
            if cap == 0:
                cap = s["interval"] * 1.25
            points = sorted(s["hb"] + [s["start"]] + ([s["end"]] if s["end"] is not None else []))
            return float(sum(min(b - a, cap) for a, b in zip(points, points[1:])))
        if s["end"] is None:
            return None
        d = s["end"] - s["start"]
        return float(d if self.timeout == 0 or d < self.timeout else self.timeout)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(params=["memory", "sqlite", "generic", "redis"])
def backend(request, tmp_path):
    """(state, cache factory) for each cache: the tuned memory and SQLite ones, and the generic
    one on a backend's keyed records (what a backend without a tuned cache gets: SQLite's
    records, and a real Redis)."""
    if request.param == "memory":
        state = MemoryState()
    elif request.param == "redis":
        server = request.getfixturevalue("redis_server")
        state = open_backend("redis", str(tmp_path), 0.05, SimpleNamespace(redis_url=server.url, redis_prefix="t"))
    else:
        state = SQLiteState(database_path(str(tmp_path)))
    if request.param == "generic":
        yield state, lambda max_size=0, idle=0.0: RecordSessionCache(state.records, max_size, idle)
    else:
        yield state, lambda max_size=0, idle=0.0: open_session_cache(state, max_size, idle)
    state.close()


def make_tracker(backend, timeout=0.0, max_size=0, idle=0.0, **kwargs):
    state, cache = backend
    return SessionTracker(state, cache(max_size, idle), timeout=timeout, **kwargs)


def feed(tracker, events, uuid="s1", interval=60, now=None, **changes):
    steps = []
    for kind, t in events:
        p = decode_payload(encode(payload(uuid, kind, t, interval=interval, **changes)))
        steps.append(tracker.process(p, now=t if now is None else now))
    return steps


def counter(state, name, labels=None):
    rows = [(lk, v) for n, lk, v in state.counters(name) if n == name]
    if labels is not None:
        rows = [(lk, v) for lk, v in rows if lk == label_key(labels)]
    return sum(v for _, v in rows) if rows else None


# --------------------------------------------------------------------------- duration rules

@pytest.mark.parametrize("events, timeout, expected", [
    ([("start", 0), ("heartbeat", 60), ("heartbeat", 120), ("end", 150)], 0, 150.0),
    ([("start", 0), ("heartbeat", 60), ("heartbeat", 300)], 0, 135.0),        # 240 s gap capped at 75
    ([("start", 0), ("heartbeat", 60), ("heartbeat", 300)], 90, 150.0),       # --session-timeout 90s
    ([("start", 0), ("end", 4000)], 0, 4000.0),                               # no heartbeats: not capped...
    ([("start", 0), ("end", 4000)], 900, 900.0),                              # ...unless a timeout is set
    ([("start", 0)], 0, None),                                                # start only: no duration yet
    ([("heartbeat", 10), ("heartbeat", 70)], 0, 60.0),                        # no start: starts at the first
    ([("end", 50)], 0, 0.0),                                                  # a lone end
    ([("start", 0), ("start", 500), ("heartbeat", 60)], 0, 60.0),             # a repeated start is ignored
    ([("start", 100), ("end", 40)], 0, 0.0),                                  # end before start: 0, no crash
    ([("start", 0), ("heartbeat", 60), ("end", 100), ("heartbeat", 160)], 0, 135.0),  # reopened: 60 + 75
])
def test_duration_follows_the_original(backend, events, timeout, expected):
    state, _ = backend
    tracker = make_tracker(backend, timeout)
    feed(tracker, events)
    assert counter(state, DURATION) == expected
    assert counter(state, SESSIONS) == 1.0


def test_heartbeat_interval_zero_and_no_timeout_credits_nothing(backend):
    state, _ = backend
    feed(make_tracker(backend), [("start", 0), ("heartbeat", 60), ("end", 90)], interval=0)
    assert counter(state, DURATION) == 0.0


def test_unsaved_dashboard_and_unknown_type(backend):
    state, _ = backend
    tracker = make_tracker(backend)
    steps = feed(tracker, [("start", 0), ("heartbeat", 60)], uuid="new-dash", **{"dashboard.uid": "new"})
    assert all(s.ignored for s in steps) and state.counters("grafana_analytics_") == []
    steps = feed(tracker, [("start", 0), ("bogus", 60), ("", 90)])  # unknown types are heartbeats
    assert [s.kind for s in steps] == ["start", "heartbeat", "heartbeat"]
    assert counter(state, DURATION) == 90.0


def random_session(rng):
    """A session in time order: maybe a start, heartbeats, ends, heartbeats after ends, repeated starts."""
    t = rng.randint(0, 10**9)
    events = [("start", t)] if rng.random() < 0.8 else []
    for _ in range(rng.randint(0, 14)):
        t += rng.choice([0, 1, 30, 59, 60, 61, 74, 75, 76, 150, 4000])
        events.append((rng.choices(["heartbeat", "end", "start"], [8, 2, 1])[0], t))
    return events


@pytest.mark.parametrize("timeout", [0.0, 45.0, 600.0])
def test_in_order_sessions_match_the_original_exactly(backend, timeout):
    """For every session sent in time order, the duration counter is the largest duration the
    original would have shown at any moment (its own value only ever dropped or stayed)."""
    rng = random.Random(int(timeout) + 7)
    state, _ = backend
    tracker = make_tracker(backend, timeout)
    oracle = OriginalReceiver(timeout)
    expected = {}
    for n in range(60):
        uuid, interval = f"s{n}", rng.choice([0, 10, 60])
        for kind, t in random_session(rng):
            oracle.process(uuid, kind, t, interval)
            p = decode_payload(encode(payload(uuid, kind, t, interval=interval, **{"dashboard.uid": uuid})))
            tracker.process(p, now=1.0)
            d = oracle.duration(uuid)
            if d is not None:
                expected[uuid] = max(expected.get(uuid, 0.0), d)
    got = {dict(lk)["dashboard_uid"]: v for n, lk, v in state.counters(DURATION) if n == DURATION}
    assert got == expected
    assert counter(state, SESSIONS) == len(oracle.cache)


def panel_session(rng):
    """A session as the panel sends it: a start, heartbeats, an end; maybe reopened after it."""
    t = rng.randint(0, 10**9)
    events = [("start", t)]
    for _ in range(rng.randint(1, 3)):
        for _ in range(rng.randint(2, 8)):
            t += rng.choice([1, 30, 60, 61, 74, 76, 150, 4000])
            events.append(("heartbeat", t))
        t += rng.choice([0, 5, 59, 100])
        events.append(("end", t))
    return events


@pytest.mark.parametrize("events, timeout, durations, credited", [
    # issue 9: a heartbeat after an end reopens the session whatever its time, as the original
    ([("start", 1000), ("end", 1100), ("heartbeat", 1050)], 0, [None, 100.0, 50.0], 100.0),
    ([("start", 1000), ("end", 1100), ("heartbeat", 1150)], 0, [None, 100.0, 75.0], 100.0),
    # the heartbeat splits the capped gap to the end: the original then forgot the end (85)
    ([("start", 1000), ("heartbeat", 1010), ("end", 1200), ("heartbeat", 1100)], 0,
     [None, 10.0, 85.0, 85.0], 85.0),
    # an end older than the latest heartbeat is a point among the others (not ignored)
    ([("start", 0), ("heartbeat", 10), ("heartbeat", 200), ("end", 100)], 0, [None, 10.0, 85.0, 160.0], 160.0),
    # a start for a known session is ignored...
    ([("start", 0), ("heartbeat", 60), ("start", 10), ("heartbeat", 100)], 0, [None, 60.0, 60.0, 100.0], 100.0),
    # ...except one older than every point of a session without a start (deliberate: the original
    # ignored it and gave [0, 0, 60]): a first payload overtaken by its first heartbeat
    ([("heartbeat", 100), ("start", 40), ("heartbeat", 160)], 0, [0.0, 60.0, 120.0], 120.0),
    # the latest end wins, also an earlier one
    ([("start", 0), ("end", 500), ("end", 300)], 0, [None, 500.0, 300.0], 500.0),
    ([("start", 0), ("heartbeat", 60), ("end", 120), ("end", 90)], 0, [None, 60.0, 120.0, 90.0], 120.0),
])
def test_payloads_apply_in_arrival_order_as_the_original(backend, events, timeout, durations, credited):
    """Each payload's duration is the original's at that moment (its cache applied payloads in
    arrival order); the counter holds the largest of them, as a counter never goes down."""
    state, _ = backend
    steps = feed(make_tracker(backend, timeout), events)
    assert [s.duration for s in steps[1:]] == durations[1:]
    assert counter(state, DURATION) == credited


@pytest.mark.parametrize("timeout", [0.0, 45.0])
def test_out_of_order_arrivals_match_the_original_exactly(backend, timeout):
    """Payloads that arrive out of time order (a neighbour swapped in transit, or two workers'
    batches applied in either order) get the original's result for that arrival order, payload
    by payload, with the counter at the largest duration it showed."""
    rng = random.Random(int(timeout) + 11)
    state, _ = backend
    tracker = make_tracker(backend, timeout)
    oracle = OriginalReceiver(timeout)
    expected = {}
    for n in range(120):
        uuid, interval = f"s{n}", rng.choice([0, 10, 60])
        events = panel_session(rng) if n % 2 else random_session(rng)
        i = 0
        while i < len(events) - 1:
            # (a start is never delayed: a late start is taken, a deliberate difference tested above)
            if rng.random() < 0.5 and events[i][0] != "start":
                events[i], events[i + 1] = events[i + 1], events[i]
                i += 1  # each payload moves one place at most
            i += 1
        for kind, t in events:
            oracle.process(uuid, kind, t, interval)
            p = decode_payload(encode(payload(uuid, kind, t, interval=interval, **{"dashboard.uid": uuid})))
            step = tracker.process(p, now=1.0)
            d = oracle.duration(uuid)
            if d is not None and d < 0:
                d = 0.0  # an end before its start: the original crashed on the negative amount
            assert step.duration == d, (uuid, events, kind, t)
            if d is not None:
                expected[uuid] = max(expected.get(uuid, 0.0), d)
    got = {dict(lk)["dashboard_uid"]: v for n, lk, v in state.counters(DURATION) if n == DURATION}
    assert got == expected
    assert counter(state, SESSIONS) == len(oracle.cache)


def test_a_long_session_keeps_a_bounded_record(backend):
    state, _ = backend
    tracker = make_tracker(backend)
    feed(tracker, [("start", 0)] + [("heartbeat", 60 * i) for i in range(1, 2001)])
    record = tracker.cache.get("s1")
    assert len(record.window) <= 4 and record.heartbeats == 2000
    assert counter(state, DURATION) == 2000 * 60.0


def test_late_heartbeat_older_than_the_window_adds_nothing_and_never_subtracts(backend):
    state, _ = backend
    tracker = make_tracker(backend)
    feed(tracker, [("start", 0)] + [("heartbeat", 60 * i) for i in range(1, 11)])
    feed(tracker, [("heartbeat", 90), ("end", 300)])  # a straggler, then an end older than the last heartbeat
    assert counter(state, DURATION) == 600.0


# --------------------------------------------------------------------------- counters and labels

def test_labels_are_the_originals_and_user_labels_can_be_dropped():
    p = decode_payload(encode(payload()))
    assert dict(session_labels(p)) == JDOE
    assert dict(session_labels(p, user_metrics=False)) == {k: v for k, v in JDOE.items()
                                                          if k not in ("user_login", "user_name")}
    admin = decode_payload(encode(payload(base="05_start_admin_absolute_range")))
    assert dict(session_labels(admin)) == ADMIN


def test_a_session_stays_under_its_first_labels(backend):
    state, _ = backend
    tracker = make_tracker(backend)
    feed(tracker, [("start", 0), ("heartbeat", 60)])
    feed(tracker, [("heartbeat", 120), ("end", 150)], **{"dashboard.name": "Renamed", "user.lightTheme": True})
    rows = state.counters("grafana_analytics_")
    assert {dict(lk)["dashboard_name"] for _, lk, _ in rows} == {"Kubernetes / Cluster Overview"}
    assert counter(state, DURATION, JDOE) == 150.0 and counter(state, SESSIONS, JDOE) == 1.0


def test_size_eviction_forgets_finished_sessions_first_and_keeps_counters(backend):
    state, _ = backend
    tracker = make_tracker(backend, max_size=10)
    for n in range(10):
        kinds = [("start", 0), ("heartbeat", 60)] + ([("end", 90)] if n % 2 else [])
        feed(tracker, kinds, uuid=f"s{n}", now=float(n))
    feed(tracker, [("start", 0)], uuid="s10", now=20.0)  # 11 > 10: trimmed to 99% (9)
    kept = {f"s{n}" for n in range(11) if tracker.cache.get(f"s{n}") is not None}
    assert len(tracker.cache) == 9 and {"s1", "s3"} & kept == set()  # the two oldest finished went
    assert {"s0", "s2", "s4", "s10"} <= kept
    assert counter(state, SESSIONS) == 11.0 and counter(state, DURATION) == 10 * 60.0 + 5 * 30.0
    for n in range(200):  # never more than max_size, and counters only grow
        feed(tracker, [("heartbeat", 100)], uuid=f"x{n}", now=30.0 + n)
        assert len(tracker.cache) <= 10
    assert counter(state, SESSIONS) == 211.0


def test_idle_sessions_are_forgotten_and_a_late_payload_starts_a_new_one(backend):
    state, _ = backend
    tracker = make_tracker(backend, idle=60.0)
    feed(tracker, [("start", 0), ("heartbeat", 60)], uuid="old", now=1000.0)
    feed(tracker, [("start", 0)], uuid="recent", now=1150.0)
    feed(tracker, [("start", 0)], uuid="trigger", now=1300.0)
    assert tracker.cache.get("old") is None and tracker.cache.get("trigger") is not None
    feed(tracker, [("heartbeat", 120)], uuid="old", now=1301.0)  # as after the original's flush
    assert counter(state, SESSIONS) == 4.0 and counter(state, DURATION) == 60.0


@pytest.mark.parametrize("generic", [False, True], ids=["sqlite", "generic"])
def test_two_workers_on_one_database_make_one_session(tmp_path, generic):
    """Two SQLite states on one file (two gunicorn workers): a session's payloads alternate
    between them, concurrently with other sessions, and nothing is lost or doubled."""
    path = database_path(str(tmp_path))
    workers = [SQLiteState(path), SQLiteState(path)]
    trackers = [SessionTracker(s, RecordSessionCache(s.records) if generic else SQLiteSessionCache(s.db))
                for s in workers]
    feed(trackers[0], [("start", 0)], uuid="shared")
    feed(trackers[1], [("heartbeat", 60)], uuid="shared")
    feed(trackers[0], [("heartbeat", 120)], uuid="shared")
    feed(trackers[1], [("end", 150)], uuid="shared")
    errors = []

    def hammer(tracker, first):
        try:
            for i in range(150):
                feed(tracker, [("heartbeat", 1000 + 2 * i + first)], uuid="busy")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(hammer, [(t, i) for i, t in enumerate(trackers)])
    assert not errors
    for state in workers:
        state.flush()
    assert trackers[0].cache.get("busy").heartbeats == 300  # no lost update
    assert counter(workers[0], SESSIONS) == 2.0
    assert counter(workers[0], DURATION) == 150.0 + 299.0  # gaps under the cap: last - first
    for state in workers:
        state.close()


def test_sessions_and_counters_survive_a_restart(tmp_path):
    path = database_path(str(tmp_path))
    state = SQLiteState(path)
    feed(SessionTracker(state, SQLiteSessionCache(state.db)), [("start", 0), ("heartbeat", 60)])
    state.close()
    state = SQLiteState(path)
    tracker = SessionTracker(state, SQLiteSessionCache(state.db))
    feed(tracker, [("heartbeat", 120), ("end", 130)])
    assert counter(state, SESSIONS) == 1.0 and counter(state, DURATION) == 130.0
    state.close()


def test_memory_cache_record_is_small_and_round_trips():
    cache = MemorySessionCache()
    record = SessionRecord(tuple(JDOE.items()), True, 5, 1, (3, 4, 5, 9), None, 7, 12.5, 20.0, 60, 1.5)
    cache.apply([("u", lambda old: (record, None))], now=0.0)
    assert cache.get("u") == record
    assert len(cache._sessions["u"]) == 65 + 4 * 8
    cache.apply([("3f2b9c1e-7d4a-4e55-9a0b-2c6d8e1f4a77", lambda old: (record, None))], now=0.0)
    assert bytes.fromhex("3f2b9c1e7d4a4e559a0b2c6d8e1f4a77") in cache._sessions  # 16 bytes, not 36 characters
    assert cache.get("3F2B9C1E-7D4A-4E55-9A0B-2C6D8E1F4A77") is None  # another uuid for the original too


def test_submitted_payloads_are_applied_in_batches(backend):
    state, _ = backend
    tracker = make_tracker(backend)
    for kind, t in [("start", 0), ("heartbeat", 60), ("end", 100)]:
        tracker.submit(decode_payload(encode(payload("s1", kind, t))))
    assert tracker.flush(5.0)
    assert counter(state, DURATION) == 100.0
    tracker.close(5.0)


# --------------------------------------------------------------------------- /metrics families

def scrape(state, user_metrics=True, consume=True):
    body, _ = render([GrafanaMetrics(state, user_metrics)], Scrape("127.0.0.1", consume=consume))
    return body.decode()


def test_families_are_the_originals_and_empty_ones_are_left_out():
    state = MemoryState()
    text = scrape(state)
    assert "grafana_analytics_sessions_total" not in text
    assert "grafana_analytics_up 1.0" in text and "grafana_analytics_exporter_scrapes_total 1.0" in text
    assert 'grafana_analytics_build_info{branch="",goversion="python' in text
    tracker = SessionTracker(state, MemorySessionCache())
    feed(tracker, [("start", 0)])
    text = scrape(state)
    assert "# HELP grafana_analytics_sessions_total Number of sessions." in text
    assert "grafana_analytics_sessions_duration_seconds_total" not in text  # start only, as the original
    assert "grafana_analytics_exporter_scrapes_total 2.0" in text
    scrape(state, consume=False)  # a HEAD is not counted
    feed(tracker, [("heartbeat", 1)])
    text = scrape(state)
    assert "# HELP grafana_analytics_sessions_duration_seconds_total Duration of sessions." in text
    assert "grafana_analytics_exporter_scrapes_total 3.0" in text


def test_user_labels_dropped_at_render_time_sum_the_series():
    state = MemoryState()
    feed(SessionTracker(state, MemorySessionCache()), [("start", 0), ("heartbeat", 30)], uuid="a")
    feed(SessionTracker(state, MemorySessionCache()), [("start", 0), ("heartbeat", 40)], uuid="b",
         **{"user.login": "other", "user.name": "Other"})
    text = scrape(state, user_metrics=False)
    lines = [l for l in text.splitlines() if l.startswith("grafana_analytics_sessions")]
    assert len(lines) == 2 and "user_login" not in text
    assert lines[0].endswith(" 70.0") and lines[1].endswith(" 2.0")


def test_an_unreadable_state_says_up_0_and_counts_a_failure():
    class Broken(MemoryState):
        def counters(self, prefix=""):
            if prefix == "grafana_analytics_":
                raise OSError("disk gone")
            return super().counters(prefix)

    state = Broken()
    text = scrape(state)
    assert "grafana_analytics_up 0.0" in text
    assert sum(v for n, _, v in MemoryState.counters(state, "grafana_analytics_exporter_query_failures")) == 1.0


# --------------------------------------------------------------------------- InfluxDB points

def test_session_point_tags_and_fields():
    state = MemoryState()
    tracker = SessionTracker(state, MemorySessionCache())
    feed(tracker, [("start", 0)])
    p = decode_payload(encode(payload("s1", "heartbeat", 60)))
    step = tracker.process(p, now=60.0)
    point = session_point(p, step, time_ns=123)
    assert point.measurement == "grafana_sessions" and point.time_ns == 123
    assert point.tags == {"dashboard_uid": "k8s-cluster-ov", "dashboard_name": "Kubernetes / Cluster Overview",
                          "user_role": "editor", "user_theme": "dark", "grafana_host": "grafana.example.com:",
                          "grafana_env": "production", "type": "heartbeat", "user_login": "jdoe",
                          "user_name": "Jane Doe"}
    assert point.fields["session"] == "s1" and point.fields["duration_seconds"] == 60.0
    assert point.fields["delta_seconds"] == 60.0 and point.fields["has_focus"] is True
    assert point.fields["ended"] is False and point.fields["var_namespace"] == "kube-system,monitoring"
    assert point.fields["time_from"] == "now-6h" and point.fields["var_interval"] == ""
    private = session_point(p, step, user_metrics=False, variables=False)
    assert "user_login" not in private.tags and not any(k.startswith("var_") for k in private.fields)


def test_points_go_only_to_the_given_sinks_and_a_failing_sink_breaks_nothing():
    class Collect:
        name = "influxdb"

        def __init__(self):
            self.events = []

        def emit(self, events):
            self.events.extend(events)

    class Failing:
        name = "influxdb"

        def emit(self, events):
            raise OSError("down")

    good = Collect()
    state = MemoryState()
    tracker = SessionTracker(state, MemorySessionCache(), point_sinks=[Failing(), good])
    feed(tracker, [("start", 0), ("heartbeat", 60), ("end", 90)])
    feed(tracker, [("start", 0)], uuid="unsaved", **{"dashboard.uid": "new"})
    assert [e.tags["type"] for e in good.events] == ["start", "heartbeat", "end"]
    assert good.events[-1].fields["ended"] is True and good.events[-1].fields["duration_seconds"] == 90.0
    assert sum(v for _, _, v in state.counters("statskit_sink_errors")) == 3.0


# --------------------------------------------------------------------------- failures

def test_a_payload_that_breaks_its_batch_costs_only_itself():
    class Poisoned(MemorySessionCache):
        def apply(self, changes, now):
            if any(uuid == "poison" for uuid, _ in changes):
                raise RuntimeError("a bug")
            return super().apply(changes, now)

    state = MemoryState()
    tracker = SessionTracker(state, Poisoned(), max_latency=0.5)  # all five land in one batch
    for uuid in ["a", "b", "poison", "c", "d"]:
        tracker.submit(decode_payload(encode(payload(uuid, "start", 0))))
    assert tracker.flush(5.0)
    assert counter(state, SESSIONS) == 4.0
    assert sum(v for _, _, v in state.counters("statskit_sink_dropped")) == 1.0
    tracker.close(1.0)


def test_a_failing_log_write_neither_loses_nor_doubles_counts():
    from statskit.grafana.sessionlog import SessionLog

    def broken(lines):
        raise BrokenPipeError("stdout is gone")

    state = MemoryState()
    tracker = SessionTracker(state, MemorySessionCache(), log=SessionLog(write=broken))
    for kind, t in [("start", 0), ("heartbeat", 60)]:
        tracker.submit(decode_payload(encode(payload("s1", kind, t))))
    assert tracker.flush(5.0)
    assert counter(state, SESSIONS) == 1.0 and counter(state, DURATION) == 60.0
    assert sum(v for _, _, v in state.counters("statskit_sink_errors")) >= 1.0
    tracker.close(1.0)


def test_an_overlong_uuid_is_kept_as_a_digest(backend):
    state, _ = backend
    tracker = make_tracker(backend)
    feed(tracker, [("start", 0), ("heartbeat", 60)], uuid="x" * 100_000)
    feed(tracker, [("start", 0)], uuid="x" * 99_999 + "y")  # another session
    assert tracker.cache.get("x" * 100_000) is None and len(tracker.cache) == 2
    assert counter(state, SESSIONS) == 2.0 and counter(state, DURATION) == 60.0


@pytest.mark.parametrize("accept", [None, "application/openmetrics-text; version=1.0.0"])
def test_session_families_parse_back_with_awkward_label_values(accept):
    """Dashboard and user names with quotes, backslashes, newlines and non-ASCII come back
    exactly from the exposition text (rendered by statskit's fast path)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    state = MemoryState()
    tracker = SessionTracker(state, MemorySessionCache())
    names = ['say "hi"', "back\\slash", "two\nlines", "ünïcödé ✓"]
    for i, name in enumerate(names):
        feed(tracker, [("start", 0), ("heartbeat", 60)], uuid=f"s{i}", **{"dashboard.name": name})
    body, _ = render([GrafanaMetrics(state)], Scrape("t"), accept)
    parse = parse_om if accept else parse_text
    got = {s.labels["dashboard_name"]: s.value for f in parse(body.decode()) for s in f.samples
           if s.name == "grafana_analytics_sessions_duration_seconds_total"}
    assert got == {name: 60.0 for name in names}


def test_session_series_are_sorted_by_label_values_as_client_golang_sorts_them():
    # "ann" before "ann b" before "ann\"": by the values, not by the escaped text (where the
    # closing quote of "ann" would sort after the space of "ann b").
    state = MemoryState()
    tracker = SessionTracker(state, MemorySessionCache())
    logins = ['ann"', "bob", "ann b", "ann", "Zed"]
    for i, login in enumerate(logins):
        feed(tracker, [("start", 0)], uuid=f"s{i}", **{"user.login": login})
    for _ in range(2):  # the second scrape renders from the label texts cached by the first
        lines = [line for line in scrape(state).splitlines() if line.startswith("grafana_analytics_sessions_total")]
        got = [re.search(r'user_login="((?:[^"\\]|\\.)*)"', line).group(1).replace('\\"', '"') for line in lines]
        assert got == sorted(logins)
