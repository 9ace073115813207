"""One-shot events under real gunicorn workers, across a restart, and into real Prometheus servers."""
import re
import time

import pytest
import requests

from gunicorn_server import StatskitServer, hold_both_workers, raw_request

pytestmark = pytest.mark.e2e

SAMPLE = re.compile(r"^(events_to_metrics\{.*\}) (\S+)", re.M)


def scrape(server, scraper):
    """One scrape on a fresh connection (gunicorn's sync workers take turns accepting them)."""
    resp = requests.get(server.url + "/metrics", params={"scraper": scraper}, timeout=10)
    assert resp.status_code == 200
    return SAMPLE.findall(resp.text)


def scrape_until(server, scraper, count, tries=100):
    """Scrapes until ``count`` samples came (a worker commits its posts within 50 ms, so another
    worker's scrape may see them one scrape later), plus one more that must bring nothing."""
    got = []
    for _ in range(tries):
        got += scrape(server, scraper)
        if len(got) >= count:
            break
        time.sleep(0.02)
    return got + scrape(server, scraper)


def post(server, **labels):
    resp = requests.post(server.url + "/event", params=labels, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["series"]


def test_two_workers_deliver_each_event_once_per_scraper(tmp_path):
    with StatskitServer(tmp_path, workers=2, args=["--sinks", "stdout"]) as server:
        assert scrape(server, "prom-a") == [] and scrape(server, "prom-b") == []
        posted, got = [], {"prom-a": [], "prom-b": []}
        for batch in range(6):
            for i in range(5):
                posted.append(post(server, batch=str(batch), n=str(i)))
            for scraper in got:  # every request on a new connection: workers alternate
                got[scraper] += scrape(server, scraper)
        for scraper, samples in got.items():
            samples += scrape_until(server, scraper, len(posted) - len(samples))
            assert sorted(series for series, _ in samples) == sorted(posted), scraper


def request_200(sock, method, target):
    status, body = raw_request(sock, method, target)
    assert status == 200, body
    return body.decode()


def test_posted_on_one_worker_scraped_on_the_other(tmp_path):
    with StatskitServer(tmp_path, workers=2, args=["--sinks", "stdout", "--threads", "1"]) as server:
        scrape(server, "prom-a")
        scrape(server, "prom-b")
        for round_ in range(3):
            poster, other = hold_both_workers(server)
            expected = [(f'events_to_metrics{{round="{round_}"}}', "1.0")]
            request_200(poster, "POST", f"/event?round={round_}")
            # `other` still holds the second worker, so this scrape is the posting worker's:
            # it sees its own post at once (a scrape first commits its worker's posts).
            assert scrape(server, "prom-b") == expected
            # And the worker that never saw the post hands it to prom-a, once.
            assert SAMPLE.findall(request_200(other, "GET", "/metrics?scraper=prom-a")) == expected
        assert scrape(server, "prom-a") == [] and scrape(server, "prom-b") == []


def test_same_labels_posted_three_times_reach_a_scraper_three_times(tmp_path):
    with StatskitServer(tmp_path, workers=2, args=["--sinks", "stdout"]) as server:
        scrape(server, "prom-a")
        for value in ("1", "2", "3"):
            post(server, type="deploy", value=value)
        # One sample per series per scrape: each value once, in three scrapes. (Their order is the
        # order they reached the store: two workers committing within 50 ms of each other may swap.)
        got = []
        for _ in range(100):
            samples = scrape(server, "prom-a")
            assert len(samples) <= 1, samples
            got += [value for _, value in samples]
            if len(got) >= 3:
                break
            time.sleep(0.02)
        assert sorted(got) == ["1.0", "2.0", "3.0"] and scrape(server, "prom-a") == []


def test_pending_events_survive_a_graceful_restart(tmp_path):
    server = StatskitServer(tmp_path, workers=2, args=["--sinks", "stdout"])
    with server:
        scrape(server, "prom-a")
        scrape(server, "prom-b")
        first = sorted(post(server, type="restart", n=str(i)) for i in range(5))
        assert sorted(s for s, _ in scrape_until(server, "prom-b", 5)) == first
        # Posted just before SIGTERM: still in the workers' write buffers when the stop begins.
        second = sorted(post(server, type="restart", n=str(i)) for i in range(5, 8))
        server.restart()  # graceful: workers commit what they buffered, then start again
        assert sorted(s for s, _ in scrape(server, "prom-a")) == sorted(first + second)
        assert sorted(s for s, _ in scrape(server, "prom-b")) == second
        text = requests.get(server.url + "/metrics", params={"scraper": "prom-a"}, timeout=10).text
        assert "events_to_metrics_event_count 8.0" in text  # a counter, not reset by the restart


# --------------------------------------------------------------------------- real Prometheus

def wait_until_scraped(prometheus):
    """Prometheus scrapes for the first time ~1-6 s after it starts; that first scrape registers it."""
    prometheus.wait_for('up{job="statskit"} == 1', timeout=30)


def test_two_prometheus_servers_each_store_every_event_exactly_once(tmp_path, prometheus_factory):
    server = StatskitServer(tmp_path / "statskit", workers=2, args=["--sinks", "stdout"])
    target = f"127.0.0.1:{server.port}"
    # Both scrape from 127.0.0.1, so they name themselves (Prometheus `params`), every second.
    proms = {name: prometheus_factory(target, params={"scraper": [name]}) for name in ("prom-a", "prom-b")}
    with server:
        for prom in proms.values():
            wait_until_scraped(prom)
        posted = 0
        for i in range(16):  # ~2 s of events while both scrape every second
            post(server, test="e2e", n=str(i % 12), value=str(i))
            posted += 1
            if i % 4 == 3:
                post(server, test="e2e", n="burst")  # the same series several times between scrapes
                posted += 1
            time.sleep(0.12)
        total = 'sum(count_over_time(events_to_metrics{test="e2e"}[10m]))'
        scrapes = 'count_over_time(up{job="statskit"}[10m])'
        for name, prom in proms.items():
            prom.wait_for(total, lambda r: r and float(r[0]["value"][1]) >= posted, timeout=30)
            # Two more scrapes must bring nothing more: every event once, none twice.
            done = float(prom.query(scrapes)[0]["value"][1])
            prom.wait_for(scrapes, lambda r: float(r[0]["value"][1]) >= done + 2, timeout=30)
            assert float(prom.query(total)[0]["value"][1]) == posted, name
            burst = prom.query('count_over_time(events_to_metrics{test="e2e",n="burst"}[10m])')
            assert float(burst[0]["value"][1]) == 4, name
            values = prom.query('sum(sum_over_time(events_to_metrics{test="e2e",n!="burst"}[10m]))')
            assert float(values[0]["value"][1]) == sum(range(16)), name


def test_explicit_timestamps_put_samples_at_the_event_time(tmp_path, prometheus_factory):
    server = StatskitServer(tmp_path / "statskit", workers=1, args=["--sinks", "stdout", "--use-explicit-timestamps"])
    prom = prometheus_factory(f"127.0.0.1:{server.port}", params={"scraper": ["prom-a"]})
    with server:
        wait_until_scraped(prom)
        windows = []
        for i in range(3):
            before = time.time()
            post(server, test="stamped", n=str(i))
            windows.append((i, before, time.time()))
            time.sleep(0.3)
        query = 'events_to_metrics{test="stamped"}[10m]'
        result = prom.wait_for(query, lambda r: len(r) == 3, timeout=30)
        stamps = {series["metric"]["n"]: [float(ts) for ts, _ in series["values"]] for series in result}
        for i, before, after in windows:
            # Without explicit timestamps a sample is stamped at the scrape, up to a second later.
            assert len(stamps[str(i)]) == 1
            assert int(before * 1000) / 1000 <= stamps[str(i)][0] <= after, (before, stamps[str(i)], after)
