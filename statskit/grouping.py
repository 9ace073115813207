"""One call for the rows that a process's threads hand in at the same time (:class:`GroupCall`).

A durable write costs far more than the rows in it (an SQLite commit, a Redis round trip), and
each blocking call also hands the GIL to another thread and back. Sharing one call among the
threads that wait for it anyway is what keeps a durable acknowledgement close to a bare Falcon
app's rate: the SQLite group commit (:class:`~statskit.state.sqlite_writer.CommitBeforeReturn`)
and the Redis one-shot post are both this.

    >>> calls = []
    >>> group = GroupCall(calls.append)
    >>> group.call([1, 2])
    >>> calls
    [[1, 2]]
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, List, Optional, Sequence, TypeVar

Row = TypeVar("Row")


class _Group:
    __slots__ = ("rows", "members", "done", "error", "cond")

    def __init__(self, lock: "threading.RLock") -> None:
        self.rows: list = []
        self.members = 0
        self.done = False
        self.error: Optional[BaseException] = None
        self.cond = threading.Condition(lock)  # its members wait here: the call wakes them, no one else


class GroupCall(Generic[Row]):
    """:meth:`call` returns only once ``run`` has taken its rows, and raises (for every caller in
    the group) what that ``run`` raised, so nothing is acknowledged that ``run`` did not store.

    The first caller of a group leads and runs it itself (no thread to wake). It waits for the
    run before its own (one run at a time), while later callers join its group; then, when the
    group has fewer members than the previous one had, up to ``wait`` seconds (or ``max_rows``
    rows) for that many: a member that completes the count wakes it at once. So a lone client
    pays no wait, and clients that all wait in the group already (a closed loop: the usual load)
    pay none either; the wait only runs out when callers went away, and the next group expects
    fewer. A run wakes its group's members only (each group has its condition), and the next
    leader.
    """

    def __init__(self, run: Callable[[List[Row]], None], *, wait: float = 0.002, max_rows: int = 5000) -> None:
        self.run = run
        self.wait = wait
        self.max_rows = max_rows
        self._lock = threading.RLock()
        self._turn = threading.Condition(self._lock)  # the next leader waits here for the run before its own
        self._company = threading.Condition(self._lock)  # a leader waits here for its group to fill
        self._open: Optional[_Group] = None  # the group new callers join
        self._filling: Optional[_Group] = None  # the open group while its leader waits for company
        self._running = False
        self._expect = 1  # members of the last group: the company the next leader waits for
        self.groups = 0  # runs made (or tried), for benchmarks and tests
        self.rows = 0

    def call(self, rows: Sequence[Row]) -> None:
        with self._lock:
            group = self._open
            if group is not None:  # a member: the leader runs it for us
                group.rows.extend(rows)
                group.members += 1
                if group is self._filling and (group.members >= self._expect or len(group.rows) >= self.max_rows):
                    self._company.notify()
                while not group.done:
                    group.cond.wait()
                if group.error is not None:
                    raise group.error
                return
            group = self._open = _Group(self._lock)
            group.rows.extend(rows)
            group.members = 1
            while self._running:
                self._turn.wait()
            if self.wait > 0 and group.members < self._expect and len(group.rows) < self.max_rows:
                self._filling = group
                deadline = time.monotonic() + self.wait
                while group.members < self._expect and len(group.rows) < self.max_rows:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._company.wait(left)
                self._filling = None
            self._open = None
            self._running = True
        try:
            self.run(group.rows)
        except BaseException as exc:
            group.error = exc
        with self._lock:
            self._running = False
            self._expect = group.members
            self.groups += 1
            self.rows += len(group.rows)
            group.done = True
            group.cond.notify_all()
            self._turn.notify()  # the leader of the next group, if it waits (there is one open group)
        if group.error is not None:
            raise group.error
