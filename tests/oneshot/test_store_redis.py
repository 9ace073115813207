"""One-shot posts that find Redis away wait in the host's journal (statskit.oneshot.store_redis
with a host database, as the server builds it): answered, on disk, and stored once when Redis is
back, also when they are sent twice or adopted from a process that was killed. A real
redis-server, stopped and started again."""
from __future__ import annotations

from types import SimpleNamespace
from typing import List

import pytest

from servers import Redis
from conftest import start_real_server
from support import until
from statskit.errors import RetryableError
from statskit.oneshot import QueueLimits, open_queue
from statskit.oneshot.queue import Reporter
from statskit.state import open_backend
from statskit.state.sqlite import SQLiteDB


@pytest.fixture
def redis(tmp_path):
    server = start_real_server(lambda: Redis(tmp_path / "redis", appendonly=True))
    yield server
    server.close()


def _queue(tmp_path, server, *, run_journal: bool = True):
    backend = open_backend("redis", str(tmp_path), 3600, SimpleNamespace(redis_url=server.url, redis_prefix="j"))
    queue = open_queue(backend, QueueLimits(max_pending=100), Reporter(backend),
                       host_db=lambda: SQLiteDB(str(tmp_path / "host.db")))
    if not run_journal:  # this "process" never gets to send its journal: it is killed first
        queue._journal._stop.set()
    return backend, queue


def _got(queue, scraper: str, now: int) -> List:
    return [(d.key, d.value) for d in queue.scrape(scraper, now).deliveries]


def _journaled(queue) -> List:
    """This process's journal entries as its thread would send them."""
    rows = queue._journal.db.connection().execute(
        "SELECT seq, received, body FROM oneshot_journal WHERE owner = ? ORDER BY seq", (queue._journal.owner,))
    return [(queue._journal.decode(body), received, seq) for seq, received, body in rows]


def test_posts_while_redis_is_down_are_journaled_on_disk_and_stored_once_in_order(tmp_path, redis):
    backend, queue = _queue(tmp_path, redis)
    queue.scrape("prom-a", 1000)
    queue.post('{"n":"1"}', 1.0, 1001)
    redis.stop()
    queue.post('{"n":"2"}', 2.0, 1002)  # answered: committed to the journal
    queue.post('{"n":"3"}', 3.0, 1003)
    assert queue._journal.pending() == 2
    redis.start()
    queue.post('{"n":"4"}', 4.0, 1004)  # behind the journaled ones, whatever the journal thread did yet
    assert queue.flush(10.0) and queue._journal.pending() == 0 and queue._journal.waiting() == 0
    assert _got(queue, "prom-a", 2000) == [('{"n":"1"}', 1.0), ('{"n":"2"}', 2.0), ('{"n":"3"}', 3.0),
                                           ('{"n":"4"}', 4.0)]
    assert _got(queue, "prom-a", 2001) == []
    queue._journal._stop.set()
    queue._journal._thread.join(5)
    queue.post('{"n":"5"}', 5.0, 1005)  # the journal drained: straight to Redis again
    assert queue._journal.pending() == 0 and _got(queue, "prom-a", 2002) == [('{"n":"5"}', 5.0)]
    queue.close(1.0)
    backend.close()


def test_journal_entries_sent_again_after_a_lost_answer_are_stored_once(tmp_path, redis):
    # The journal retries a batch whose answer it never got: Redis may have stored it. The
    # script's journal mark skips what it has.
    backend, queue = _queue(tmp_path, redis, run_journal=False)
    queue.scrape("prom-a", 1000)
    redis.stop()
    queue.post('{"n":"1"}', 1.0, 1001)
    queue.post('{"n":"2"}', 2.0, 1002)
    redis.start()
    entries = _journaled(queue)
    queue._post_journaled(entries[:1])
    queue._post_journaled(entries)  # the first again, as after a lost answer, and the second
    queue._post_journaled(entries)
    assert _got(queue, "prom-a", 2000) == [('{"n":"1"}', 1.0), ('{"n":"2"}', 2.0)]
    assert _got(queue, "prom-a", 2001) == []
    queue.close(1.0)
    backend.close()


@pytest.mark.parametrize("stored_before_kill", [0, 1, 3])
def test_a_killed_process_s_journal_is_adopted_and_each_post_stored_once(tmp_path, redis, stored_before_kill):
    # The process was killed after Redis stored some of its entries (their rows not yet deleted):
    # the adopter asks the dead one's mark and sends only the rest.
    dead_backend, dead = _queue(tmp_path, redis, run_journal=False)
    dead.scrape("prom-a", 1000)
    redis.stop()
    for n in (1, 2, 3):
        dead.post(f'{{"n":"{n}"}}', float(n), 1000 + n)
    redis.start()
    entries = _journaled(dead)
    if stored_before_kill:
        dead._post_journaled(entries[:stored_before_kill])
    dead._journal.lock.release()  # what the kernel does at the kill -9
    backend, taker = _queue(tmp_path, redis)  # its journal's thread adopts at start
    until(lambda: taker._journal.db.connection().execute("SELECT count(*) FROM oneshot_journal").fetchone()[0] == 0,
          "the dead process's entries adopted and sent")
    dead._post_journaled(entries)  # a script of the dead process that reaches Redis late: fenced, stores nothing
    assert _got(taker, "prom-a", 2000) == [('{"n":"1"}', 1.0), ('{"n":"2"}', 2.0), ('{"n":"3"}', 3.0)]
    assert _got(taker, "prom-a", 2001) == []
    taker.close(1.0)
    for b in (backend, dead_backend):
        b.close()


def test_a_batch_whose_answer_is_lost_twice_keeps_its_place(tmp_path, redis):
    # Settling a batch in doubt sends it again; when that answer is lost too, the batch stays in
    # doubt and the posts behind it must wait (before: they went ahead, moving the mark past it).
    from servers import HOST, ReplyCutter

    cutter = ReplyCutter(redis.port, command=b"EVALSHA", forward=False)
    try:
        backend = open_backend("redis", str(tmp_path), 3600,
                               SimpleNamespace(redis_url=f"redis://{HOST}:{cutter.port}/0", redis_prefix="j"))
        queue = open_queue(backend, QueueLimits(max_pending=100), Reporter(backend))
        queue._spool.kill()  # the settling below is this test's, not the spool thread's
        queue.scrape("prom-a", 1000)
        cutter.armed.set()
        queue._post_many([('{"n":"A"}', 1.0, 1001)])  # lost on the way: in doubt
        cutter.armed.set()
        with pytest.raises(RetryableError):
            queue._post_many([('{"n":"B"}', 2.0, 1002)])  # A sent again and lost again: B waits
        queue._post_many([('{"n":"B"}', 2.0, 1002)])  # (as the spool or the journal sends it again)
        assert _got(queue, "prom-a", 2000) == [('{"n":"A"}', 1.0), ('{"n":"B"}', 2.0)]
        assert _got(queue, "prom-a", 2001) == []
        backend.close()
    finally:
        cutter.close()
