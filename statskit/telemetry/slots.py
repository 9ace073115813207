"""A connection limit shared by the listener processes of one data dir (one server).

The file ``<data_dir>/telemetry-connections`` holds one 8-byte record per listener process:
its number of open connections. A process claims a record by holding an ``fcntl`` lock on it
for its lifetime; the kernel drops that lock when the process dies (also by ``kill -9``), so a
record whose lock can be taken belongs to a dead process and counts as zero: a crashed worker
never keeps its slots. Record 0 is the admission lock: checking the total and counting the new
connection happen under it, so two workers cannot both take the last slot.

    >>> import tempfile, os
    >>> slots = SharedSlots(os.path.join(tempfile.mkdtemp(), "c"), limit=1)
    >>> slots.acquire(), slots.acquire()
    (True, False)
    >>> slots.release(); slots.acquire()
    True
"""
from __future__ import annotations

import errno
import fcntl
import os

RECORD = 8
MAX_RECORDS = 4096  # listener processes that ever ran at once on one data dir, at most
FILE_NAME = "telemetry-connections"


class SharedSlots:
    def __init__(self, path: str, limit: int) -> None:
        self.path, self.limit = path, limit
        self.count = 0  # this process's open connections
        self._fd = -1
        self._record = 0
        self._pid = 0

    @classmethod
    def in_data_dir(cls, data_dir: str, limit: int) -> "SharedSlots":
        os.makedirs(data_dir, exist_ok=True)
        return cls(os.path.join(data_dir, FILE_NAME), limit)

    def _open(self) -> int:
        if self._pid == os.getpid():
            return self._fd
        # One descriptor per process, never closed while it runs: closing any descriptor of
        # the file would drop every fcntl lock this process holds on it.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        for record in range(1, MAX_RECORDS):
            if _try_lock(fd, record):
                break
        else:
            os.close(fd)
            raise RuntimeError(f"{self.path}: all {MAX_RECORDS} records held by live processes")
        self._fd, self._record, self._pid, self.count = fd, record, os.getpid(), 0
        self._publish()
        return fd

    def _publish(self) -> None:
        os.pwrite(self._fd, self.count.to_bytes(RECORD, "little"), self._record * RECORD)

    def others(self) -> int:
        """Open connections of the other live processes."""
        fd = self._open()
        data = os.pread(fd, MAX_RECORDS * RECORD, 0)
        total = 0
        for record in range(1, len(data) // RECORD):
            if record == self._record:
                continue
            count = int.from_bytes(data[record * RECORD:(record + 1) * RECORD], "little")
            if count and not _try_lock(fd, record):  # held: its process is alive
                total += count
            elif count:
                fcntl.lockf(fd, fcntl.LOCK_UN, RECORD, record * RECORD)  # a dead one's: let go
        return total

    def acquire(self) -> bool:
        """Count one more connection if the total stays within the limit."""
        fd = self._open()
        fcntl.lockf(fd, fcntl.LOCK_EX, RECORD, 0)  # held for microseconds by any process
        try:
            if self.count + self.others() >= self.limit:
                return False
            self.count += 1
            self._publish()
            return True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, RECORD, 0)

    def release(self) -> None:
        if self._pid != os.getpid() or self.count <= 0:
            return
        self.count -= 1
        self._publish()

    def total(self) -> int:
        """Open connections of all live processes (tests, metrics)."""
        return self.count + self.others()

    def close(self) -> None:
        if self._pid == os.getpid() and self._fd >= 0:
            self.count = 0
            self._publish()
            os.close(self._fd)
        self._fd, self._pid = -1, 0


def _try_lock(fd: int, record: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, RECORD, record * RECORD)
        return True
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
