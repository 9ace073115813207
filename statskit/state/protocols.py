"""The building blocks a backend offers besides counters, for features' generic stores.

A feature's store for a backend is either tuned for it (``store_for``'s ``tuned``) or built on
these, so a new backend that implements them gets every feature's storage for free.
tests/state/test_backend_contract.py runs the same contract over every backend.

``records`` (:class:`KeyedRecords`): byte strings by key in named tables, read and changed
atomically in batches (a session cache: several payloads of one session on several workers
make one session, no update lost).

``logs`` (:class:`NumberedLog`): append-only logs of byte strings, numbered 1, 2, ... in order
of commit, never reused, read after a number and trimmed up to one (a one-shot queue).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, TypeVar

T = TypeVar("T")
#: ``change(current)`` gets every asked key's record (None: absent) and returns the records to
#: write (None deletes; keys it leaves out stay as they are) and a result for the caller.
Change = Callable[[Dict[str, Optional[bytes]]], Tuple[Dict[str, Optional[bytes]], T]]


class KeyedRecords(Protocol):
    def update(self, table: str, keys: Sequence[str], change: Change[T]) -> T:
        """Read ``keys``, call ``change``, write what it returns: all in one atomic step
        (``change`` may run more than once when a concurrent writer interferes)."""

    def get(self, table: str, key: str) -> Optional[bytes]: ...

    def scan(self, table: str) -> Iterator[Tuple[str, bytes]]:
        """Every record of ``table`` (a snapshot or a consistent walk; order unspecified)."""

    def delete(self, table: str, keys: Sequence[str]) -> int:
        """Remove ``keys``; how many were there."""

    def count(self, table: str) -> int: ...


class NumberedLog(Protocol):
    def append(self, log: str, items: Sequence[bytes]) -> int:
        """Add ``items`` in order; the number of the last one (0 when ``items`` is empty and the
        log is new)."""

    def read(self, log: str, after: int, limit: int) -> List[Tuple[int, bytes]]:
        """Up to ``limit`` items numbered above ``after``, in order."""

    def trim(self, log: str, upto: int) -> int:
        """Drop the items numbered ``upto`` and below; how many went."""

    def last(self, log: str) -> int:
        """The highest number handed out (trimmed or not); 0 for a new log."""
