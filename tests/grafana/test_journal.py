"""The POST /write journal (statskit.grafana.journal): durable before the answer, applied in
order by the process that took it, adopted from a process that died."""
from __future__ import annotations

from typing import List

from statskit.errors import RetryableError
from statskit.grafana.journal import PayloadJournal
from statskit.state.sqlite import SQLiteDB


def _journal(tmp_path, applied: List, **kwargs) -> PayloadJournal:
    return PayloadJournal(SQLiteDB(str(tmp_path / "j.db")), applied.extend, decode=bytes.decode, **kwargs)


def test_payloads_are_applied_in_the_order_they_were_acknowledged(tmp_path):
    applied: List = []
    journal = _journal(tmp_path, applied)
    for i in range(30):
        journal.append(f"p{i}".encode(), float(i))
    assert journal.flush(5)
    assert applied == [(f"p{i}", float(i)) for i in range(30)] and journal.pending() == 0
    journal.close(1)


def test_a_dead_process_s_payloads_are_adopted_and_a_live_one_s_are_not(tmp_path):
    dead_applied: List = []
    dead = _journal(tmp_path, dead_applied)
    dead._stop.set()  # its applier never runs: it "dies" with the payloads journaled
    dead.start()
    dead.append(b"a", 1.0)
    dead.append(b"b", 2.0)
    alive_applied: List = []
    alive = _journal(tmp_path, alive_applied)
    alive._stop.set()  # holds its lock, but its thread must not adopt the dead's rows before the taker
    alive.start()
    other: List = []
    taker = _journal(tmp_path, other)
    assert taker.adopt() == 0  # both holders live
    dead.lock.release()  # what the kernel does when the process dies
    assert taker.adopt() == 2
    taker.flush(5)
    assert other == [("a", 1.0), ("b", 2.0)] and dead_applied == []
    for journal in (alive, taker):
        journal.close(1)


def test_a_store_that_is_down_keeps_the_payloads_in_the_journal_until_it_is_back(tmp_path):
    applied: List = []
    down = [True]

    def apply(items):
        if down[0]:
            raise RetryableError("redis restarting")
        applied.extend(items)

    journal = PayloadJournal(SQLiteDB(str(tmp_path / "j.db")), apply, decode=bytes.decode)
    journal.append(b"x", 1.0)
    assert journal.flush(0.2) is False and journal.pending() == 1
    down[0] = False
    assert journal.flush(5) and applied == [("x", 1.0)]
    journal.close(1)
