"""One process per host does a job: an exclusive ``flock`` on a file beside the database.

The kernel releases the lock when its holder dies (kill -9 included), so another process takes
the job over at its next try. A forked child does not inherit the role.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "job.lock")
    >>> a, b = HostLock(path), HostLock(path)
    >>> a.take(), b.take()
    (True, False)
    >>> a.release(); b.take()
    True
"""
from __future__ import annotations

import fcntl
import os


class HostLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._pid = 0

    def take(self) -> bool:
        """True when this process holds the lock (now or already)."""
        if self.held():
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd, self._pid = fd, os.getpid()
        return True

    def held(self) -> bool:
        return self._fd >= 0 and self._pid == os.getpid()

    def release(self) -> None:
        if self.held():
            os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = -1
