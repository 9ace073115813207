"""The connection limit shared by processes (statskit.telemetry.slots), with real processes."""
from __future__ import annotations

import os
import signal

from statskit.telemetry.slots import SharedSlots


def child_holding(path: str, n: int) -> int:
    """A forked process that takes ``n`` slots and waits to be killed; its PID once it holds them."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            slots = SharedSlots(path, limit=10)
            for _ in range(n):
                assert slots.acquire()
            os.write(ready_w, b"x")
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    return pid


def test_slots_are_shared_and_a_killed_process_frees_its_own(tmp_path):
    path = str(tmp_path / "slots")
    first, second = child_holding(path, 3), child_holding(path, 2)
    mine = SharedSlots(path, limit=6)
    try:
        assert mine.total() == 5
        assert mine.acquire() and not mine.acquire()  # 3 + 2 + 1 = the limit
        os.kill(first, signal.SIGKILL)
        os.waitpid(first, 0)
        assert mine.total() == 3  # the killed process's 3 are free, the live one keeps its 2
        assert all(mine.acquire() for _ in range(3)) and not mine.acquire()
        third = child_holding(path, 0)  # a new process takes the dead one's record and counts 0
        assert mine.total() == 6
        mine.release()
        assert mine.total() == 5
        os.kill(third, signal.SIGKILL)
        os.waitpid(third, 0)
    finally:
        os.kill(second, signal.SIGKILL)
        os.waitpid(second, 0)
        mine.close()
