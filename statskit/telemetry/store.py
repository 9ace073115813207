"""What every telemetry store offers (SQLite by default, PostgreSQL when configured)."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..errors import RetryableError
from .parsing import Message, NodeInfo


# Rows of a listener that never recorded a heartbeat (it died before its first one) are closed
# this long after the listener timeout: its clock may differ from the store's (PostgreSQL).
ORPHAN_GRACE = 3600.0


class StoreUnavailable(RetryableError):
    """The store cannot take the write now (locked, down, disk full): the writer retries."""


@dataclass
class Row:
    """A message to store, with the connection it came on."""

    connection_id: int
    audit: bool
    message: Message
    tags: Optional[Dict[str, str]] = None  # peer_id, name, chain: for InfluxDB points only


class TelemetryStore(abc.ABC):
    @abc.abstractmethod
    def open_connection(self, ip_addr: str, audit: bool, listener: Optional[str] = None) -> int:
        """Insert a connection row (committed) and return its id; ``listener``: the instance id
        of the listener process holding it (:mod:`~statskit.telemetry.presence`)."""

    @abc.abstractmethod
    def update_connection(self, connection_id: int, info: NodeInfo) -> None:
        """Set the peer id and node details the connection's messages revealed."""

    @abc.abstractmethod
    def close_connection(self, connection_id: int) -> None:
        """Mark the connection closed (from then on a purge may delete its row)."""

    # Listener presence (statskit.telemetry.presence): heartbeats on the store's clock.

    @abc.abstractmethod
    def beat_listener(self, instance: str, open_ids: Sequence[int]) -> int:
        """Record a heartbeat of ``instance``; if it had no row (taken for dead and its
        connections closed), reopen ``open_ids`` of it. Returns how many were reopened."""

    @abc.abstractmethod
    def close_orphans(self, timeout: float) -> int:
        """Close the open connections of listeners without a heartbeat for ``timeout`` s
        (``closed_at`` = their last heartbeat) and forget those listeners; also the open rows,
        older than ``timeout`` + ``ORPHAN_GRACE``, of a listener that never had a heartbeat
        row. Returns how many connections were closed."""

    @abc.abstractmethod
    def forget_listener(self, instance: str) -> None:
        """A listener stopping: close its connections still open and remove its row."""

    @abc.abstractmethod
    def insert_messages(self, rows: Iterable[Row]) -> Optional[int]:
        """Store ``rows`` in one committed transaction, or raise (:class:`StoreUnavailable` to
        retry); returns how many rows the store refused as data (skipped), if any."""

    @abc.abstractmethod
    def claim_purge(self, interval: float, now: float) -> bool:
        """True for exactly one caller per ``interval`` among all processes and hosts on this store."""

    @abc.abstractmethod
    def purge(self, cutoff: str, batch: int = 5000) -> int:
        """Delete expiring rows created before ``cutoff`` (UTC ISO), and the connections left
        empty that closed before ``cutoff`` too: a connection that closed later may still have
        messages in a writer's buffer (its own process's, or one that is retrying), and they
        would be stored after its row was gone, under no node."""

    @abc.abstractmethod
    def count_messages(self, audit: Optional[bool] = None) -> int: ...

    @abc.abstractmethod
    def messages(self, limit: int = 1000) -> List[dict]:
        """Stored messages, oldest first, with their connection's peer id (tests, tools)."""

    @abc.abstractmethod
    def connections(self) -> List[dict]: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # Queries (issue 14). Times in and out are the stored form: naive UTC, fixed-width ISO with
    # six fraction digits (``parsing.format_utc``); ``logs`` are the decoded JSON objects.

    @abc.abstractmethod
    def latest_nodes(self) -> List[Dict[str, Any]]:
        """The newest connection row of each distinct peer id (the original's columns), by peer id."""

    @abc.abstractmethod
    def log_stats(self, peer_id: str) -> List[Tuple[str, int]]:
        """``(msg, count)`` of the peer's stored messages, most frequent first."""

    @abc.abstractmethod
    def peer_logs(self, peer_id: str, msg: Optional[str], target: Optional[str], start: str, end: str,
                  limit: int, before: Optional[Tuple[str, int]] = None) -> List[Dict[str, Any]]:
        """The peer's messages with ``start < created_at < end`` (and ``(created_at, id) <
        before``), newest first: dicts of id, ip_addr, peer_id, msg, created_at, logs."""

    @abc.abstractmethod
    def network_states(self, since: str, until: Optional[str] = None,
                       mentioning: Optional[str] = None) -> Iterator[Tuple[str, str, Dict[str, Any]]]:
        """``(reporting peer id, created_at, logs)`` of ``system.network_state`` messages after
        ``since`` (and before ``until``), newest first; ``mentioning``: a cheap pre-filter on
        messages whose text names that peer id (the caller checks exactly)."""

    @abc.abstractmethod
    def known_peer_ids(self) -> List[str]: ...

    @abc.abstractmethod
    def relation_sizes(self) -> List[Tuple[str, int]]:
        """``(table or index, bytes)``, largest first."""

    @abc.abstractmethod
    def pair_rows(self, peer_id: str, msg: str, after: Tuple[str, int], limit: int) -> List[Tuple[int, str, Dict[str, Any]]]:
        """``(id, created_at, logs)`` of the peer's ``msg`` messages after ``after`` =
        ``(created_at, id)``, oldest first (the live feed)."""

    # The benchmarks registry: rows as dicts with the original's keys.

    @abc.abstractmethod
    def create_benchmark(self, setup: Any) -> Dict[str, Any]: ...

    @abc.abstractmethod
    def benchmarks(self) -> List[Dict[str, Any]]:
        """Newest first."""

    @abc.abstractmethod
    def benchmark(self, benchmark_id: int) -> Optional[Dict[str, Any]]: ...

    @abc.abstractmethod
    def create_benchmark_event(self, benchmark_id: int, name: str, phase: str, created_at: str) -> Optional[Dict[str, Any]]:
        """The new row, or None when there is no such benchmark."""

    @abc.abstractmethod
    def benchmark_events(self, benchmark_id: int) -> List[Dict[str, Any]]:
        """Ordered by name."""

    @abc.abstractmethod
    def peer_targets(self, peer_id: str) -> List[str]:
        """The distinct ``logs->>'target'`` of the peer's messages."""
