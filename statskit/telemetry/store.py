"""What every telemetry store offers (SQLite by default, PostgreSQL when configured)."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

from ..errors import RetryableError
from .parsing import Message, NodeInfo


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
    def open_connection(self, ip_addr: str, audit: bool) -> int:
        """Insert a connection row (committed) and return its id."""

    @abc.abstractmethod
    def update_connection(self, connection_id: int, info: NodeInfo) -> None:
        """Set the peer id and node details the connection's messages revealed."""

    @abc.abstractmethod
    def close_connection(self, connection_id: int) -> None:
        """Mark the connection closed (from then on a purge may delete its row)."""

    @abc.abstractmethod
    def insert_messages(self, rows: Iterable[Row]) -> Optional[int]:
        """Store ``rows`` in one committed transaction, or raise (:class:`StoreUnavailable` to
        retry); returns how many rows the store refused as data (skipped), if any."""

    @abc.abstractmethod
    def claim_purge(self, interval: float, now: float) -> bool:
        """True for exactly one caller per ``interval`` among all processes and hosts on this store."""

    @abc.abstractmethod
    def purge(self, cutoff: str, batch: int = 5000) -> int:
        """Delete expiring rows created before ``cutoff`` (UTC ISO) and closed empty connections."""

    @abc.abstractmethod
    def count_messages(self, audit: Optional[bool] = None) -> int: ...

    @abc.abstractmethod
    def messages(self, limit: int = 1000) -> List[dict]:
        """Stored messages, oldest first, with their connection's peer id (tests, tools)."""

    @abc.abstractmethod
    def connections(self) -> List[dict]: ...

    @abc.abstractmethod
    def close(self) -> None: ...
