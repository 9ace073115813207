"""The journal (statskit.journal) of POST /write and of one-shot posts that found Redis away:
durable before the answer, applied in order by the process that took it, adopted from a process
that died."""
from __future__ import annotations

from typing import List

from statskit.errors import RetryableError
from statskit.journal import PayloadJournal
from statskit.state.sqlite import SQLiteDB


def _journal(tmp_path, applied: List, **kwargs) -> PayloadJournal:
    return PayloadJournal(SQLiteDB(str(tmp_path / "j.db")), applied.extend, decode=bytes.decode,
                          table="test_journal", **kwargs)


def _payloads(applied: List) -> List:
    return [(payload, received) for payload, received, _ in applied]


def test_payloads_are_applied_in_the_order_they_were_acknowledged(tmp_path):
    applied: List = []
    journal = _journal(tmp_path, applied)
    for i in range(30):
        journal.append(f"p{i}".encode(), float(i))
    assert journal.flush(5)
    assert _payloads(applied) == [(f"p{i}", float(i)) for i in range(30)] and journal.pending() == 0
    assert [seq for _, _, seq in applied] == sorted(seq for _, _, seq in applied)  # numbered in that order
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
    assert _payloads(other) == [("a", 1.0), ("b", 2.0)] and dead_applied == []
    for journal in (alive, taker):
        journal.close(1)


def test_a_store_that_is_down_keeps_the_payloads_in_the_journal_until_it_is_back(tmp_path):
    applied: List = []
    down = [True]

    def apply(items):
        if down[0]:
            raise RetryableError("redis restarting")
        applied.extend(items)

    journal = PayloadJournal(SQLiteDB(str(tmp_path / "j.db")), apply, decode=bytes.decode, table="test_journal")
    journal.append(b"x", 1.0)
    assert journal.flush(0.2) is False and journal.pending() == 1
    down[0] = False
    assert journal.flush(5) and _payloads(applied) == [("x", 1.0)]
    journal.close(1)


def test_an_adopter_skips_what_the_dead_process_had_applied_and_numbers_the_rest_after_its_own(tmp_path):
    # A store that records each owner's last applied number (one-shot posts on Redis) tells the
    # adopter, through settled(), what the dead process got stored before it died.
    dead = _journal(tmp_path, [])
    dead._stop.set()
    dead.start()
    for name in (b"a", b"b", b"c"):
        dead.append(name, 1.0)
    stored_upto = {dead.owner: min(seq for (seq,) in dead.db.connection().execute(
        "SELECT seq FROM test_journal WHERE owner = ?", (dead.owner,)))}  # it got 'a' stored, then died
    applied: List = []
    taker = _journal(tmp_path, applied, settled=lambda owner: stored_upto.get(owner, 0))
    taker._stop.set()
    taker.start()
    taker.append(b"own", 2.0)
    assert taker.waiting() == 1
    dead.lock.release()
    assert taker.adopt() == 2 and taker.waiting() == 3  # 'a' settled: not adopted
    assert taker.flush(5) and taker.waiting() == 0
    assert [p for p, _, _ in applied] == ["own", "b", "c"]
    seqs = [seq for _, _, seq in applied]
    assert seqs == sorted(seqs)  # a store's "last number applied" check stays right for the adopted rows
    taker.close(1)
