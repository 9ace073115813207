"""GroupCall: the rows of concurrent callers share one run, and each caller learns its run's fate."""
from __future__ import annotations

import threading
import time

from statskit.grouping import GroupCall
from support import run_threads


def test_each_caller_returns_only_after_a_run_took_its_rows_and_concurrent_callers_share_runs():
    stored = set()
    runs = []

    def run(rows):
        time.sleep(0.005)  # a slow round trip: callers that come meanwhile share the next run
        stored.update(rows)
        runs.append(len(rows))

    group = GroupCall(run)
    missing = []

    def caller(base: int) -> None:
        for i in range(50):
            group.call([base + i])
            if base + i not in stored:
                missing.append(base + i)

    run_threads(caller, [(n * 1000,) for n in range(8)])
    assert missing == []
    assert len(stored) == sum(runs) == 400  # every row run exactly once
    assert max(runs) > 1 and group.groups == len(runs) < 400


def test_a_failed_run_is_raised_to_every_caller_in_its_group_and_the_next_group_runs():
    gate, entered = threading.Event(), threading.Event()
    seen = []

    def run(rows):
        if rows == ["first"]:
            entered.set()
            gate.wait(5)  # hold the first run so the next callers form one group behind it
            return
        seen.append(sorted(rows))
        if "bad" in rows:
            raise ValueError("store refused")

    group = GroupCall(run)
    errors = []

    def call(row):
        try:
            group.call([row])
        except ValueError as exc:
            errors.append((row, str(exc)))

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert entered.wait(5)
    others = [threading.Thread(target=call, args=(row,)) for row in ("bad", "good")]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while group._open is None or group._open.members < 2:  # both wait in the next group
        assert time.monotonic() < deadline, "the two callers never formed a group"
        time.sleep(0.001)
    gate.set()
    for thread in [first, *others]:
        thread.join(5)
    assert seen == [["bad", "good"]]
    assert sorted(errors) == [("bad", "store refused"), ("good", "store refused")]  # neither is told it is stored
    group.call(["later"])
    assert seen[-1] == ["later"]
