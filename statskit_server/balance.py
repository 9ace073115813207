"""Connections spread over the gthread workers, so that no worker sits idle under load.

Every worker polls the one listening socket the master opened, and whichever wakes first takes
the connection: measured here with 2 workers, 8 keep-alive connections went 6 and 2, and 32
went 26 and 6, so one worker (one GIL) did most of the work while the other waited. Each
worker now publishes how many connections it holds in a small table shared by all of them
(an anonymous shared ``mmap`` the master makes before it forks), and stops accepting while it
holds more than its fair share plus one (the others' counts decide), so the next connection
goes to a worker that has fewer. A worker that has not looked at its table row for
``STALE_S`` (busy for that long, or dead) does not count: the others then take what it
cannot, as before.

``reuse_port`` (one socket per worker, the kernel spreading connections by hash) was the other
choice: gunicorn keeps its own socket listening in the master, which would get its share of
connections and never accept them, and a worker that stops resets what waits in its queue.

    >>> table = Balance(slots=2)
    >>> table.limit(0, connections=3, cap=1000)  # alone: one more than it holds
    4
    >>> table.limit(1, connections=0, cap=1000)  # the other one: its fair share of 3, plus 1
    3
    >>> table.limit(0, connections=3, cap=1000)  # while the second catches up
    3
"""
from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any, Dict, Optional

# gunicorn's loop turns at least once a second (its select timeout), so an idle worker's row is
# never older than that: past 2.5 s the worker is busy in one turn for long, or gone.
STALE_S = 2.5
REFRESH_MS = 50  # a worker whose count did not change looks at the others this often
_ROW = struct.Struct("=iiq")  # pid, connections, last look (monotonic ms: one clock for the host)


class Balance:
    """The shared table: one row per worker slot, given by the master (:meth:`assign`)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.mem = mmap.mmap(-1, slots * _ROW.size)  # MAP_SHARED | MAP_ANONYMOUS: children share it
        self._last = (-1, 0, 0)  # (connections, ms, limit) of this process's last look

    def assign(self, taken: Dict[int, Any]) -> Optional[int]:
        """A free slot for a worker about to be forked (``taken``: slot -> its worker), or None."""
        for slot in range(self.slots):
            if slot not in taken:
                _ROW.pack_into(self.mem, slot * _ROW.size, 0, 0, 0)
                return slot
        return None

    def release(self, slot: int) -> None:
        _ROW.pack_into(self.mem, slot * _ROW.size, 0, 0, 0)

    def limit(self, slot: int, connections: int, cap: int) -> int:
        """Publish ``connections`` for ``slot``; how many this worker may hold now (at most ``cap``)."""
        now = int(time.monotonic() * 1000)
        held_before, seen_at, allowed = self._last
        if connections == held_before and now - seen_at < REFRESH_MS:
            return allowed  # gunicorn asks on every turn of its loop: the table is read 20 times a second at most
        _ROW.pack_into(self.mem, slot * _ROW.size, os.getpid(), connections, now)
        total = live = 0
        for row in range(self.slots):
            pid, held, seen = _ROW.unpack_from(self.mem, row * _ROW.size)
            if pid and now - seen <= STALE_S * 1000:
                total += held
                live += 1
        fair = -(-total // live)  # ceil: live >= 1, this worker's own row
        allowed = max(1, min(cap, fair + 1))
        self._last = (connections, now, allowed)
        return allowed


#: Made by the master (:func:`pre_fork`) for its gthread workers; None for sync workers.
TABLE: Optional[Balance] = None


def pre_fork(server: Any, worker: Any) -> None:
    """gunicorn's ``pre_fork`` hook, in the master: the new worker's row in the table."""
    global TABLE
    if TABLE is None:
        TABLE = Balance(slots=max(4, 2 * int(server.cfg.workers)))  # room for workers being replaced
    taken = {w.sk_slot: w for w in server.WORKERS.values() if getattr(w, "sk_slot", None) is not None}
    worker.sk_slot = TABLE.assign(taken)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook, in the master: the row is free for the next worker."""
    slot = getattr(worker, "sk_slot", None)
    if TABLE is not None and slot is not None:
        TABLE.release(slot)
