"""statskit on Redis Sentinel (a real master, replica and three sentinels: tests/servers_sentinel.py)
through a failover: the master SIGKILLed, the replica promoted, statskit following it by itself.

The failovers here lose writes on the Redis side on purpose: the replica is cut off before the
master's last flushes (:meth:`SentinelSet.cut_replica`), as happens when a replica lags, so the
promoted one lacks what the old master acknowledged. statskit must still never show a counter
lower than before, and must count every increment it acknowledged.
"""
from __future__ import annotations

import re
import time
from types import SimpleNamespace
from typing import Dict, List

import pytest

import support
from grafana_payloads import EXAMPLES_DURATION, JDOE, example_bytes, value_of
from servers import HOST, ReplyCutter
from servers_sentinel import wait_until
from statskit.errors import RetryableError
from statskit.state import open_backend

pytestmark = pytest.mark.e2e

ACCEPTED = re.compile(r'^statskit_events_accepted_total\{event="failover",measurement="analytics"\} (\S+)$', re.M)
SAMPLE = re.compile(r"^(\w+_(?:total|event_count)(?:\{[^}]*\})?) (\S+)$", re.M)
ONESHOT = re.compile(r'^events_to_metrics\{n="(\d+)",type="failover"\} ', re.M)
PAYLOADS = ["01_start", "02_heartbeat", "03_heartbeat_unfocused", "04_end"]
PANEL = {"Content-Type": "text/plain;charset=UTF-8"}


def sentinel_options(url, sentinels=(), prefix="failover"):
    return SimpleNamespace(redis_url=url, redis_prefix=prefix, sentinels=list(sentinels), sentinel_service="mymaster")


def accepted(text: str) -> float:
    match = ACCEPTED.search(text)
    return float(match.group(1)) if match else 0.0


def totals(text: str) -> Dict[str, float]:
    """Every ``*_total`` sample of an exposition, by series."""
    return {series: float(value) for series, value in SAMPLE.findall(text)}


def test_a_flush_a_failover_lost_is_sent_again_and_nothing_is_counted_twice(tmp_path, redis_sentinel):
    rs = redis_sentinel
    a = open_backend("redis", str(tmp_path), 3600, sentinel_options(rs.url()))
    b = open_backend("redis", str(tmp_path), 3600, sentinel_options(rs.url()))  # another host
    a.incr("statskit_failover", {}, 1)
    b.incr("statskit_failover", {}, 10)
    a.flush()
    b.flush()
    rs.wait_replicated()                                 # the replica has those 11
    rs.cut_replica()
    a.incr("statskit_failover", {}, 2)                    # acknowledged by the master alone
    a.flush()
    assert a.counters("statskit_failover") == [("statskit_failover", (), 13.0)]
    old = rs.kill_master()
    a.incr("statskit_failover", {}, 4)                    # counted while there is no master
    with pytest.raises(RetryableError):                   # what needs Redis now: a 503
        a.records.update("t", ["k"], lambda cur: ({"k": b"v"}, None))
    new = rs.wait_for_failover(old)
    assert new.execute("HGET", "{failover}:c:statskit_failover", "[]") == "11"  # Redis lost the 2
    deadline = time.monotonic() + 30
    while True:  # until the client follows the new master (redis-py asks the sentinels again)
        try:
            rows = a.counters("statskit_failover")
            break
        except RetryableError:
            assert time.monotonic() < deadline, "statskit did not follow the new master"
            time.sleep(0.1)
    assert rows == [("statskit_failover", (), 17.0)]      # 11 + the lost 2, sent again, + 4
    b.incr("statskit_failover", {}, 100)                  # b lost nothing: sends nothing again
    b.flush()
    assert b.counters("statskit_failover") == [("statskit_failover", (), 117.0)]
    a.close()
    b.close()


def test_a_master_refusing_writes_without_replicas_is_a_503_and_keeps_the_increments(tmp_path, redis_server):
    backend = open_backend("redis", str(tmp_path), 3600, sentinel_options(redis_server.url, prefix="norep"))
    redis_server.execute("CONFIG", "SET", "min-replicas-to-write", "1")  # and it has none
    backend.incr("statskit_norep", {}, 3)
    with pytest.raises(RetryableError, match="NOREPLICAS"):
        backend.flush()
    redis_server.execute("CONFIG", "SET", "min-replicas-to-write", "0")
    assert backend.counters("statskit_norep") == [("statskit_norep", (), 3.0)]
    backend.close()


@pytest.mark.parametrize("form", ["url", "sentinels"])
def test_statskit_on_sentinel_follows_a_failover_without_restart_and_counters_never_go_down(
        tmp_path, redis_sentinel, app_client, form):
    rs = redis_sentinel
    if form == "url":  # redis+sentinel://127.0.0.1:S1,127.0.0.1:S2/mymaster (two of the three)
        state = {"state__redis_url": f"redis+sentinel://{','.join(rs.sentinel_addresses()[:2])}/mymaster"}
    else:              # [state] sentinels, redis_url naming the db
        state = {"state__redis_url": f"redis://{HOST}/0", "state__sentinels": rs.sentinel_addresses()}
    client = app_client(support.make_settings(tmp_path / "host", state__backend="redis", state__redis_prefix=form,
                                              state__flush_interval=0.2, sinks__enabled=["sqlite", "prometheus"], **state))
    auth = support.auth_header()

    def post_event(i: int) -> int:
        return client.simulate_post("/log/event", json={"uid": f"u{i}", "event": "failover"}, headers=auth).status_code

    for i in range(10):
        assert post_event(i) == 200
    scrape = client.simulate_get("/metrics")
    assert scrape.status_code == 200 and accepted(scrape.text) == 10
    rs.wait_replicated()
    rs.cut_replica()                     # from here the master acknowledges what the replica never gets
    for i in range(10, 15):
        assert post_event(i) == 200
    scrape = client.simulate_get("/metrics")
    assert accepted(scrape.text) == 15   # flushed to the master alone
    seen: List[Dict[str, float]] = [totals(scrape.text)]
    old = rs.kill_master()

    statuses: Dict[str, List[int]] = {"event": [], "oneshot": [], "write": [], "metrics": []}
    retry_after: List[str] = []
    delivered: List[str] = []  # one-shot events handed to this scraper (127.0.0.1), in order
    deadline = time.monotonic() + 60
    for i in range(15, 3000):  # bounded in count and time: until /metrics answers again
        statuses["event"].append(post_event(i))
        statuses["oneshot"].append(client.simulate_post("/event", query_string=f"type=failover&n={i}").status_code)
        if i - 15 < len(PAYLOADS):  # a Grafana session whose payloads all come during the switch
            statuses["write"].append(client.simulate_post("/write", body=example_bytes(PAYLOADS[i - 15]),
                                                          headers=PANEL).status_code)
        scrape = client.simulate_get("/metrics")
        statuses["metrics"].append(scrape.status_code)
        if scrape.status_code == 503:
            retry_after.append(scrape.headers.get("Retry-After", ""))
        elif scrape.status_code == 200:
            seen.append(totals(scrape.text))
            delivered += ONESHOT.findall(scrape.text)
            if len(seen) > 3 and rs.sentinels[0].master_port_seen() != old.port:
                break
        assert time.monotonic() < deadline, f"no failover within 60 s: {statuses['metrics'][-5:]}"
        time.sleep(0.02)
    rs.wait_for_failover(old)

    acknowledged = 15 + statuses["event"].count(200)
    assert set(statuses["event"]) == {200}, statuses["event"]    # appending never waits for Redis
    assert set(statuses["oneshot"]) == {200}, statuses["oneshot"]  # spooled until Redis is back
    assert set(statuses["write"]) == {201}, statuses["write"]        # journaled until Redis is back
    assert set(statuses["metrics"]) <= {200, 503} and 503 in statuses["metrics"], statuses["metrics"]
    assert retry_after and all(r.isdigit() for r in retry_after), retry_after
    posted = [str(i) for i, status in enumerate(statuses["oneshot"], 15) if status == 200]

    def caught_up() -> str:  # the spool and the journal drain once the new master answers
        scrape = client.simulate_get("/metrics")
        assert scrape.status_code == 200, scrape.text
        text = scrape.text
        seen.append(totals(text))
        delivered.extend(ONESHOT.findall(text))
        session_done = value_of(text, "grafana_analytics_sessions_duration_seconds_total", JDOE) == EXAMPLES_DURATION
        return text if session_done and len(delivered) >= len(posted) else ""
    final = wait_until(caught_up, "one-shot events delivered and the Grafana session counted")
    assert accepted(final) == acknowledged                      # nothing lost, nothing twice
    assert sorted(delivered, key=int) == posted                 # each one-shot event once
    assert value_of(final, "grafana_analytics_sessions_total", JDOE) == 1.0
    for earlier, later in zip(seen, seen[1:]):  # no scrape ever shows a counter lower than before
        dropped = {k: (v, later.get(k)) for k, v in earlier.items() if later.get(k, 0.0) < v}
        assert not dropped, dropped


def test_a_flush_whose_answer_was_lost_after_redis_applied_it_is_not_counted_twice(tmp_path, redis_server):
    cutter = ReplyCutter(redis_server.port)
    try:
        backend = open_backend("redis", str(tmp_path), 3600, sentinel_options(f"redis://{HOST}:{cutter.port}/0",
                                                                               prefix="cut"))
        backend.incr("statskit_cut", {}, 2)
        backend.flush()
        cutter.armed.set()
        backend.incr("statskit_cut", {}, 3)
        with pytest.raises(RetryableError):  # the connection broke: statskit cannot tell yet
            backend.flush()
        assert redis_server.execute("HGET", "{cut}:c:statskit_cut", "[]") == "5"  # yet Redis applied it
        backend.incr("statskit_cut", {}, 4)
        assert backend.counters("statskit_cut") == [("statskit_cut", (), 9.0)]  # the 3 once, not twice
        backend.close()
    finally:
        cutter.close()
