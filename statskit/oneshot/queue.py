"""The one-shot queue interface: limits, deliveries, scrape results, and the choice of store."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Sequence, Union, overload

from ..logs import RateLimit
from ..state import StateStore
from .parsing import DROPPED, REFUSED, log

# --------------------------------------------------------------------------- queues

@dataclass(frozen=True)
class QueueLimits:
    """Bounds of a one-shot queue (``[oneshot]`` in the configuration).

    ``max_scrapers``: scrapers tracked at once. When all slots are taken, a new scraper is refused
    (its scrape answers normally, without one-shot samples; counted in
    ``events_to_metrics_scrapers_refused_total`` and logged) rather than evicting one: eviction
    would let a client cycling through ``?scraper=`` names push real Prometheus servers out and
    lose their pending events, whereas refusal only delays newcomers until a silent scraper is
    forgotten after ``scraper_timeout``.
    """

    max_scrapers: int = 10
    max_pending: int = 10000
    scraper_timeout: float = 600.0
    backfill: float = 0.0
    maintain_every: int = 256  # POSTs between two clean-ups when nobody scrapes

    def __post_init__(self) -> None:
        if self.max_scrapers < 1 or self.max_pending < 1:
            raise ValueError("[oneshot] max_scrapers and max_pending must be at least 1")
        if self.scraper_timeout <= 0 or self.backfill < 0:
            raise ValueError("[oneshot] scraper_timeout must be positive and backfill not negative")

    @classmethod
    def from_settings(cls, section: Any) -> "QueueLimits":
        return cls(int(section.max_scrapers), int(section.max_pending), float(section.scraper_timeout),
                   float(section.backfill))


@dataclass
class Delivery:
    """One sample handed to a scraper."""

    seq: int
    time_ms: int
    key: str
    value: float


class Columns(Sequence[Delivery]):
    """Deliveries as columns, so that a scrape renders every key and value without an object
    per event. :meth:`of` makes them from any deliveries; a store that reads in bulk makes them
    directly, and may give the seqs and times as comma-separated text, parsed only if asked for.

        >>> cols = Columns(['{"a":"x"}', '{"a":"y"}'], [1.0, 1.0], "7,9", "1000,1001")
        >>> cols.keys, cols[1]
        (['{"a":"x"}', '{"a":"y"}'], Delivery(seq=9, time_ms=1001, key='{"a":"y"}', value=1.0))
    """

    def __init__(self, keys: List[str], values: List[float], seqs: Union[List[int], str],
                 times: Union[List[int], str]) -> None:
        self.keys, self.values = keys, values
        self._seqs, self._times = seqs, times

    @classmethod
    def of(cls, deliveries: Sequence[Delivery]) -> "Columns":
        if isinstance(deliveries, Columns):
            return deliveries
        return cls([d.key for d in deliveries], [d.value for d in deliveries], [d.seq for d in deliveries],
                   [d.time_ms for d in deliveries])

    @property
    def seqs(self) -> List[int]:
        if isinstance(self._seqs, str):
            self._seqs = _ints(self._seqs)
        return self._seqs

    @property
    def times(self) -> List[int]:
        if isinstance(self._times, str):
            self._times = _ints(self._times)
        return self._times

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Delivery: ...

    @overload
    def __getitem__(self, index: slice) -> List[Delivery]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Delivery, List[Delivery]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Delivery(self.seqs[index], self.times[index], self.keys[index], self.values[index])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, Columns)) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Columns({list(self)!r})"


def _ints(text: str) -> List[int]:
    return list(map(int, text.split(","))) if text else []


@dataclass
class ScrapeResult:
    """What a scrape got: its samples, and every tracked scraper's backlog before the scrape."""

    deliveries: Sequence[Delivery] = field(default_factory=list)
    pending: Dict[str, int] = field(default_factory=dict)
    status: str = "known"  # known, new, refused, peek (HEAD: nothing changed) or error


class OneShotQueue(Protocol):
    """Storage of one-shot events and scraper cursors (see :mod:`statskit.oneshot.stores`)."""

    def post(self, key: str, value: float, time_ms: int) -> None:
        """Store an event (a backend may buffer it for a moment: see :meth:`flush`)."""

    def scrape(self, scraper: str, now_ms: int, consume: bool = True) -> ScrapeResult:
        """Hand ``scraper`` its next samples (at most one per series) and, when ``consume``,
        mark them delivered. Unknown scrapers are registered (or refused when full)."""

    def maintain(self, now_ms: int) -> None:
        """Forget silent scrapers, trim backlogs to ``max_pending``, delete delivered events."""

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Make this process's buffered posts visible to every process; False on timeout."""

    def stored(self) -> int:
        """Events currently held."""

    def close(self, timeout: Optional[float] = None) -> None:
        """Store what is buffered (graceful stop)."""


class Reporter:
    """Counts and logs what a queue drops or refuses (state counters are shared by all workers)."""

    REFUSAL_LOG_INTERVAL = 60.0

    def __init__(self, state: Optional[StateStore]) -> None:
        self.state = state
        self._refusals = RateLimit(self.REFUSAL_LOG_INTERVAL)

    def dropped(self, reason: str, count: int, scraper: str, detail: str) -> None:
        if count <= 0:
            return
        if self.state is not None:
            self.state.incr(DROPPED, (("reason", reason),), count)
        log.warning("one-shot scraper %s: dropped %d pending event(s): %s", scraper, count, detail)

    def forgotten(self, scraper: str, idle_s: float) -> None:
        log.info("one-shot scraper %s forgotten after %.0f s without a scrape", scraper, idle_s)

    def refused(self, scraper: str, max_scrapers: int) -> None:
        if self.state is not None:
            self.state.incr(REFUSED, (), 1)
        if not self._refusals.allow(scraper):  # one line per scraper per minute: Prometheus retries
            return
        log.warning("one-shot scraper %s refused: %d scrapers already tracked ([oneshot] max_scrapers); "
                    "it gets no events until one is silent for scraper_timeout", scraper, max_scrapers)
