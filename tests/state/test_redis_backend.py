"""What the Redis backend adds to the contract (tests/state/test_backend_contract.py): its
addresses and keys, and staying correct while Redis is down (a real redis-server, stopped and
started again). Failovers under Sentinel: test_redis_sentinel.py."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from servers import HOST, Redis, ReplyCutter
from servers_sentinel import Sentinel
from conftest import start_real_server
from statskit.errors import RetryableError
from statskit.state import open_backend
from statskit.state.redis_client import key_tag, parse_sentinel_url


def options(server, prefix="statskit"):
    return SimpleNamespace(redis_url=server.url, redis_prefix=prefix, sentinels=[], sentinel_service="")


def test_sentinel_urls_name_hosts_service_db_and_password():
    assert parse_sentinel_url("redis+sentinel://s1:26380,s2/prod/3") == ([("s1", 26380), ("s2", 26379)], "prod", 3, None)
    with pytest.raises(ValueError, match="name the Sentinel service"):
        parse_sentinel_url("redis+sentinel://s1:26379")


@pytest.mark.parametrize("prefix", ["", "a b", "x{y}"])
def test_a_prefix_that_cannot_be_a_hash_tag_is_refused(prefix):
    with pytest.raises(ValueError):
        key_tag(prefix)


def test_every_key_carries_the_deployments_hash_tag_and_prefixes_isolate(tmp_path, redis_server):
    a = open_backend("redis", str(tmp_path), 0.05, options(redis_server, "blue"))
    b = open_backend("redis", str(tmp_path), 0.05, options(redis_server, "green"))
    a.incr("statskit_demo", {"k": "v"})
    a.records.update("t", ["x"], lambda cur: ({"x": b"1"}, None))
    a.logs.append("q", [b"item"])
    a.flush()
    assert b.counters("statskit_") == [] and b.records.get("t", "x") is None and b.logs.last("q") == 0
    keys = redis_server.execute("KEYS", "*")
    assert keys and all(k.startswith("{blue}:") for k in keys)  # one Cluster slot per deployment
    a.close()
    b.close()


def test_while_redis_is_down_increments_wait_and_reads_are_unavailable(tmp_path):
    server = start_real_server(lambda: Redis(tmp_path / "redis", appendonly=True))
    try:
        backend = open_backend("redis", str(tmp_path), 3600, options(server))
        backend.incr("statskit_demo", {}, 2)
        backend.flush()
        server.stop()
        backend.incr("statskit_demo", {}, 3)          # a request that only counts still works
        with pytest.raises(RetryableError):             # the flush fails and keeps them
            backend.flush()
        with pytest.raises(RetryableError):             # what needs Redis now: a 503
            backend.records.update("t", ["k"], lambda cur: ({"k": b"v"}, None))
        with pytest.raises(RetryableError):
            backend.counters("statskit_")
        server.start()                                  # back (AOF on: nothing of it lost)
        assert backend.counters("statskit_") == [("statskit_demo", (), 5.0)]
        backend.close()
    finally:
        server.close()


def _hammer(url, worker, rounds):
    from grafana_payloads import encode, payload
    from statskit.grafana import SessionTracker, decode_payload
    from statskit.grafana.stores import open_session_cache

    state = open_backend("redis", ".", 0.05, SimpleNamespace(redis_url=url, redis_prefix="hammer"))
    tracker = SessionTracker(state, open_session_cache(state, 0, 0.0))
    for i in range(rounds):
        body = encode(payload("shared", "heartbeat", 1000 + 8 * i + worker))
        tracker.process(decode_payload(body), now=1000 + i)
        state.incr("statskit_hammer", {"w": "all"})
    state.close()


def test_eight_processes_updating_one_session_and_counter_lose_no_update(redis_server):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(redis_server.url, w, 40)) for w in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    state = open_backend("redis", ".", 0.05, SimpleNamespace(redis_url=redis_server.url, redis_prefix="hammer"))
    from statskit.grafana.stores import open_session_cache

    assert open_session_cache(state, 0, 0.0).get("shared").heartbeats == 320
    assert state.counters("statskit_hammer") == [("statskit_hammer", (("w", "all"),), 320.0)]
    state.close()


def test_a_redis_sentinel_url_finds_the_master(tmp_path, redis_server):
    sentinel = start_real_server(lambda: Sentinel(tmp_path / "sentinel", redis_server.port))
    try:
        for url, sentinels in ((f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0", []),
                               ("redis://127.0.0.1/0", [f"127.0.0.1:{sentinel.port}"])):
            backend = open_backend("redis", str(tmp_path), 0.05, SimpleNamespace(
                redis_url=url, redis_prefix="sentinel", sentinels=sentinels, sentinel_service="mymaster"))
            backend.incr("statskit_via_sentinel")
            backend.flush()
            backend.close()
        assert redis_server.execute("HGET", "{sentinel}:c:statskit_via_sentinel", "[]") == "2"
    finally:
        sentinel.close()


def test_one_shot_posts_survive_a_script_flush_and_a_redis_restart(tmp_path):
    # The posts run their script on a connection of their own (RedisState.run_serially): a Redis
    # that forgot the script, and one that went away and came back, must both be taken in stride.
    from statskit.oneshot import QueueLimits, open_queue
    from statskit.oneshot.queue import Reporter

    server = start_real_server(lambda: Redis(tmp_path / "redis", appendonly=True))
    try:
        backend = open_backend("redis", str(tmp_path), 3600, options(server))
        queue = open_queue(backend, QueueLimits(max_pending=100), Reporter(backend))
        queue.scrape("prom-a", 1000)
        queue.post('{"n":"1"}', 1.0, 1001)
        server.execute("SCRIPT", "FLUSH")
        queue.post('{"n":"2"}', 2.0, 1002)              # NOSCRIPT: loaded again, and posted once
        server.stop()
        queue.post('{"n":"3"}', 3.0, 1003)              # Redis away: answered, spooled
        server.start()
        assert queue.flush(10.0)                        # in once Redis is back (a new connection)
        queue.post('{"n":"4"}', 4.0, 1004)
        got = [(d.key, d.value) for d in queue.scrape("prom-a", 2000).deliveries]
        assert got == [('{"n":"1"}', 1.0), ('{"n":"2"}', 2.0), ('{"n":"3"}', 3.0), ('{"n":"4"}', 4.0)]
        assert queue.scrape("prom-a", 2001).deliveries == []  # each once
        queue.close(1.0)
        backend.close()
    finally:
        server.close()


@pytest.mark.parametrize("applied", [True, False], ids=["redis-ran-it", "never-reached-redis"])
def test_a_one_shot_batch_whose_answer_was_lost_is_stored_once(tmp_path, redis_server, applied):
    # The connection breaks after the script went out: Redis may have run it (or not). The posts are
    # answered (held in doubt, as spooled ones), and this process's mark decides once Redis
    # answers again: dropped when it landed, sent again when it did not.
    from statskit.oneshot import QueueLimits, open_queue
    from statskit.oneshot.queue import Reporter

    cutter = ReplyCutter(redis_server.port, command=b"EVALSHA", forward=applied)
    try:
        backend = open_backend("redis", str(tmp_path), 3600,
                               SimpleNamespace(redis_url=f"redis://{HOST}:{cutter.port}/0", redis_prefix="cut"))
        queue = open_queue(backend, QueueLimits(max_pending=100), Reporter(backend))
        queue.scrape("prom-a", 1000)
        queue.post('{"n":"1"}', 1.0, 1001)
        cutter.armed.set()  # the next script: run and its answer dropped, or dropped on the way
        queue.post('{"n":"2"}', 2.0, 1002)              # answered all the same
        queue.post('{"n":"3"}', 3.0, 1003)
        assert queue.flush(10.0)                        # the batch in doubt is settled
        got = [(d.key, d.value) for d in queue.scrape("prom-a", 2000).deliveries]
        assert got == [('{"n":"1"}', 1.0), ('{"n":"2"}', 2.0), ('{"n":"3"}', 3.0)]  # each once, in order
        assert queue.scrape("prom-a", 2001).deliveries == []
        queue.close(1.0)
        backend.close()
    finally:
        cutter.close()
