"""The contract every state backend keeps (statskit.state.Backend and statskit.state.protocols),
run over each backend. A new backend adds itself to BACKENDS and passes this file unchanged."""
from __future__ import annotations

import sqlite3
import threading
from types import SimpleNamespace
from typing import Callable, Dict, Iterator

import pytest

from statskit.errors import RetryableError
from statskit.state import Backend, open_backend, store_for
from statskit.state.sqlite import SQLiteState, database_path


def _memory(tmp_path, *_: object) -> Callable[[], Backend]:
    shared = open_backend("memory")
    return lambda: shared  # one process: every "worker" is the same object


def _sqlite(tmp_path, *_: object) -> Callable[[], Backend]:
    # Each call is another process's view of the same database (its own connections).
    return lambda: open_backend("sqlite", str(tmp_path), flush_interval=0.05)


def _redis(tmp_path, server) -> Callable[[], Backend]:
    # Each call is another host's (or worker's) client on the same Redis and prefix.
    options = SimpleNamespace(redis_url=server.url, redis_prefix="contract", sentinels=[], sentinel_service="")
    return lambda: open_backend("redis", str(tmp_path), 0.05, options)


BACKENDS = {"memory": _memory, "sqlite": _sqlite, "redis": _redis}


@pytest.fixture(params=sorted(BACKENDS))
def backends(request, tmp_path) -> Iterator[Callable[[], Backend]]:
    """``backends()`` opens one more handle on the same shared state (Redis: a real
    redis-server, started for the test)."""
    opened = []
    if request.param == "redis":
        make = _redis(tmp_path, request.getfixturevalue("redis_server"))
    else:
        make = BACKENDS[request.param](tmp_path)

    def open_one() -> Backend:
        backend = make()
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        backend.close()


def test_it_is_named_and_opens_by_name(backends):
    backend = backends()
    assert open_backend(backend.name, None).name == backend.name


def test_counters_add_up_across_handles_and_never_go_down(backends):
    a, b = backends(), backends()
    a.incr("statskit_demo", {"kind": "x"}, 2)
    b.incr("statskit_demo", (("kind", "x"),), 3)
    b.incr("other_demo")
    a.flush()
    b.flush()
    assert a.counters("statskit_") == [("statskit_demo", (("kind", "x"),), 5.0)]
    with pytest.raises(ValueError):
        a.incr("statskit_demo", {}, -1)


def test_records_update_reads_changes_and_deletes(backends):
    records = backends().records

    def put(current: Dict[str, object]):
        assert current == {"a": None, "b": None}
        return {"a": b"1", "b": b"2"}, "done"

    assert records.update("t", ["a", "b"], put) == "done"
    assert records.update("t", ["a"], lambda cur: ({"a": None}, cur["a"])) == b"1"
    assert records.get("t", "a") is None and records.get("t", "b") == b"2"
    assert dict(records.scan("t")) == {"b": b"2"} and records.count("t") == 1
    assert records.count("other") == 0 and records.get("other", "b") is None
    assert records.delete("t", ["b", "missing"]) == 1 and records.count("t") == 0


def test_a_failing_change_writes_nothing(backends):
    records = backends().records
    records.update("t", ["k"], lambda cur: ({"k": b"before"}, None))

    def boom(current):
        raise RuntimeError("bug in a change")

    with pytest.raises(RuntimeError):
        records.update("t", ["k"], boom)
    assert records.get("t", "k") == b"before"


def test_concurrent_updates_of_one_key_lose_nothing(backends):
    handles = [backends() for _ in range(4)]
    handles[0].records.update("t", ["n"], lambda cur: ({"n": b"0"}, None))

    def bump(current):
        return {"n": str(int(current["n"]) + 1).encode()}, None

    def work(backend: Backend) -> None:
        for _ in range(50):
            backend.records.update("t", ["n"], bump)

    threads = [threading.Thread(target=work, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert handles[0].records.get("t", "n") == b"200"


def test_logs_number_in_order_read_after_trim_and_never_reuse(backends):
    a, b = backends(), backends()
    assert a.logs.last("q") == 0 and a.logs.read("q", 0, 10) == []
    assert a.logs.append("q", [b"x", b"y"]) == 2
    assert b.logs.append("q", [b"z"]) == 3
    assert a.logs.read("q", 0, 10) == [(1, b"x"), (2, b"y"), (3, b"z")]
    assert a.logs.read("q", 1, 1) == [(2, b"y")]
    assert a.logs.trim("q", 2) == 2
    assert a.logs.read("q", 0, 10) == [(3, b"z")]
    assert b.logs.append("q", [b"w"]) == 4 and a.logs.last("q") == 4  # numbers are not reused
    assert a.logs.read("other", 0, 10) == []


def test_transient_errors_are_told_from_bugs(backends):
    backend = backends()
    assert not backend.is_transient(ValueError("a bug"))
    assert backend.is_transient(RetryableError("down"))
    if backend.name == "sqlite":
        assert backend.is_transient(sqlite3.OperationalError("database is locked"))
        assert not backend.is_transient(sqlite3.OperationalError("no such column: x"))


def test_store_for_takes_the_tuned_store_else_the_generic_one(backends):
    backend = backends()
    assert store_for(backend, {backend.name: lambda b: "tuned"}, lambda b: "generic") == "tuned"
    assert store_for(backend, {}, lambda b: "generic") == "generic"


def test_sqlite_handles_share_one_file(tmp_path):
    a = SQLiteState(database_path(str(tmp_path)))
    b = SQLiteState(database_path(str(tmp_path)))
    a.records.update("t", ["k"], lambda cur: ({"k": b"v"}, None))
    assert b.records.get("t", "k") == b"v"
    a.close()
    b.close()
