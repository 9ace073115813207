"""Several statskit hosts on one Redis act as one: two statskit-server processes (2 gunicorn
workers each, their own data dirs and ports) and a real redis-server."""
from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from grafana_payloads import JDOE, example_bytes, value_of
from gunicorn_server import StatskitServer
from servers import Redis
from conftest import start_real_server
from support import until

pytestmark = pytest.mark.e2e

PANEL = {"Content-Type": "text/plain;charset=UTF-8"}
DURATION = "grafana_analytics_sessions_duration_seconds_total"
SESSIONS = "grafana_analytics_sessions_total"


def hosts(tmp_path, redis, prefix="e2e"):
    # --threads 1 (sync workers): POST /write is applied by each worker's journal thread up to
    # 50 ms after its answer, so with threaded workers a session's later payload posted to the
    # other worker overtakes the earlier one more often (seen under load).
    args = ["--state", "redis", "--redis-url", redis.url, "--sinks", "sqlite,prometheus", "--threads", "1"]
    env = {"STATSKIT_REDIS_PREFIX": prefix}
    return [StatskitServer(tmp_path / f"host-{i}", workers=2, args=args, env=env) for i in "ab"]


def accepted(text: str, event: str) -> float:
    match = re.search(r'statskit_events_accepted_total\{event="%s",measurement="analytics"\} (\S+)' % event, text)
    return float(match.group(1)) if match else 0.0


def oneshot_samples(host, scraper):
    text = requests.get(host.url + "/metrics", params={"scraper": scraper}, timeout=10).text
    return re.findall(r"^events_to_metrics\{.*\} \S+$", text, re.M)


def test_two_hosts_share_counters_sessions_and_one_shot_queues(tmp_path, redis_server):
    a, b = hosts(tmp_path, redis_server)
    with a, b:
        for i in range(20):
            host = (a, b)[i % 2]
            resp = requests.post(host.url + "/log/event", json={"uid": f"u{i}", "event": "multi"},
                                 headers=host.headers(), timeout=10)
            assert resp.status_code == 200
        # Every host, every worker: the same counts once the buffers are flushed (1 s).
        until(lambda: all(accepted(requests.get(h.url + "/metrics", timeout=10).text, "multi") == 20
                          for h in (a, b, a, b, a, b, a, b, a, b)), "same counts on both hosts")

        # The four payloads of one dashboard view, alternately to the two hosts: one session.
        for i, name in enumerate(["01_start", "02_heartbeat", "03_heartbeat_unfocused", "04_end"]):
            host = (a, b)[i % 2]
            assert requests.post(host.url + "/write", data=example_bytes(name), headers=PANEL,
                                 timeout=10).status_code == 201
            time.sleep(0.2)  # the panel sends them a heartbeat apart; keep their order
        text = until(lambda: (lambda t: t if value_of(t, DURATION, JDOE) == 166.0 else None)(
            requests.get(b.url + "/metrics", timeout=10).text), "one session of 166 s")  # 900 - 734
        assert value_of(text, SESSIONS, JDOE) == 1.0

        # One-shot: a scraper alternating hosts gets an event once; a second scraper once too.
        for scraper in ("prom-a", "prom-b"):
            assert oneshot_samples(a, scraper) == []  # tracked from now on
        assert requests.post(a.url + "/event", params={"type": "deploy", "n": "1"}, timeout=10).status_code == 200
        got = {"prom-a": [], "prom-b": []}
        for round_ in range(4):
            for scraper in got:
                got[scraper] += oneshot_samples((b, a)[round_ % 2], scraper)
        assert got == {"prom-a": ['events_to_metrics{n="1",type="deploy"} 1.0'],
                       "prom-b": ['events_to_metrics{n="1",type="deploy"} 1.0']}


def test_redis_down_for_a_while_loses_nothing_acknowledged_and_never_answers_500(tmp_path):
    redis = start_real_server(lambda: Redis(tmp_path / "redis", appendonly=True))
    a, b = hosts(tmp_path, redis, prefix="outage")
    statuses = {"event": [], "metrics": []}
    stop = threading.Event()

    def load(host):
        session = requests.Session()
        deadline = time.monotonic() + 30  # bounded in time and in count
        for i in range(3000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            resp = session.post(host.url + "/log/event", json={"uid": f"u{i}", "event": "outage"},
                                headers=host.headers(), timeout=10)
            statuses["event"].append(resp.status_code)
            if i % 20 == 0:
                statuses["metrics"].append(session.get(host.url + "/metrics", timeout=10).status_code)
            time.sleep(0.005)

    try:
        with a, b:
            threads = [threading.Thread(target=load, args=(h,)) for h in (a, b)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            redis.stop()
            time.sleep(10.0)  # Redis down under load, as long as a restart may take
            redis.start()
            time.sleep(1.0)
            stop.set()
            for t in threads:
                t.join(60)
            acknowledged = statuses["event"].count(200)
            assert acknowledged and set(statuses["event"]) == {200}, statuses["event"]  # appending never needs Redis
            assert 500 not in statuses["metrics"] and 503 in statuses["metrics"], statuses["metrics"]  # a scrape does
            until(lambda: accepted(requests.get(a.url + "/metrics", timeout=10).text, "outage") == acknowledged,
                  f"all {acknowledged} acknowledged events counted")
    finally:
        redis.close()


def test_one_shot_posts_answered_while_redis_was_down_survive_a_kill_9_of_the_host(tmp_path):
    # They wait in the host's journal on disk, not in the workers' memory: killed with every
    # worker (kill -9 of the process group) before Redis came back, the host sends them when it
    # starts again, each once.
    redis = start_real_server(lambda: Redis(tmp_path / "redis", appendonly=True))
    host = StatskitServer(tmp_path / "host", workers=2, own_group=True, env={"STATSKIT_REDIS_PREFIX": "kill"},
                          args=["--state", "redis", "--redis-url", redis.url])
    try:
        host.start()
        assert oneshot_samples(host, "prom-a") == []  # the scraper is tracked from here
        redis.stop()
        for i in range(20):
            resp = requests.post(host.url + "/event", params={"type": "deploy", "build": str(i)}, timeout=10)
            assert resp.status_code == 200, resp.text
        host.kill_group()
        redis.start()
        host.start()
        seen: list = []
        until(lambda: seen.extend(oneshot_samples(host, "prom-a")) or len(seen) >= 20, "the journaled posts sent")
        builds = sorted(int(re.search(r'build="(\d+)"', line).group(1)) for line in seen)
        assert builds == list(range(20))  # every one, once
        assert oneshot_samples(host, "prom-a") == []
    finally:
        host.stop()
        redis.close()


def test_a_prometheus_scraping_both_hosts_stores_each_event_once(tmp_path, redis_server, prometheus_factory):
    a, b = hosts(tmp_path, redis_server, prefix="prom")
    # One Prometheus, both hosts as targets of one job, naming itself: the two targets share its
    # queue, so each event is stored once, by whichever target's scrape came first.
    prom = prometheus_factory([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], params={"scraper": ["prom-a"]})
    with a, b:
        prom.wait_for('count(up{job="statskit"} == 1) == 2', timeout=30)
        posted = 0
        for i in range(12):
            host = (a, b)[i % 2]
            assert requests.post(host.url + "/event", params={"test": "redis", "n": str(i % 5)},
                                 timeout=10).status_code == 200
            posted += 1
            time.sleep(0.1)
        total = 'sum(count_over_time(events_to_metrics{test="redis"}[10m]))'
        prom.wait_for(total, lambda r: r and float(r[0]["value"][1]) >= posted, timeout=30)
        scrapes = 'sum(count_over_time(up{job="statskit"}[10m]))'
        done = float(prom.query(scrapes)[0]["value"][1])
        prom.wait_for(scrapes, lambda r: float(r[0]["value"][1]) >= done + 4, timeout=30)  # two more each
        assert float(prom.query(total)[0]["value"][1]) == posted
