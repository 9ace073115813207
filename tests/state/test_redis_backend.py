"""What the Redis backend adds to the contract (tests/state/test_backend_contract.py): its
addresses and keys, and staying correct while Redis is down (a real redis-server, stopped and
started again)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from servers import Redis
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
