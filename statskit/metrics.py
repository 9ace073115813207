"""``/metrics``: Prometheus families computed at scrape time from the shared state.

Nothing here keeps per-process metric values: every counter lives in the state store, so any
worker renders the same numbers, and a restart starts from where the store left off. (The
alternative, prometheus_client's multiprocess mode, merges one file per process per scrape and
slows down as workers recycle: client_python #367.)

Features add their own families by passing a :class:`MetricSource`:

    >>> from statskit.state.memory import MemoryState
    >>> state = MemoryState()
    >>> describe("statskit_demo_things", "counter", "Things seen.")
    >>> state.incr("statskit_demo_things", {"kind": "a"}, 2)
    >>> body, _ = render([StateMetrics(state)], Scrape("127.0.0.1"))
    >>> b'statskit_demo_things_total{kind="a"} 2.0' in body
    True
"""
from __future__ import annotations

import logging
import platform
import time as _time
from bisect import bisect_left
from collections import defaultdict
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from . import __version__
from .exposition import Family, encode
from .state import StateStore

# Request latency buckets (seconds): a gunicorn sync worker answers in 0.1-10 ms when healthy.
LATENCY_BUCKETS: Tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_BUCKET_LABELS = tuple(repr(b) for b in LATENCY_BUCKETS) + ("+Inf",)


class Scrape:
    """One scrape of ``/metrics``, as the sources see it.

    ``scraper`` names who is scraping (given, or computed on first use by a source that needs
    it: a malformed ``?scraper=`` is then that route's 400); ``consume`` is False for HEAD, which
    must change nothing; ``may_read()`` says whether the scrape carries a valid token with the
    ``read`` scope (a bad token raises the route's 401/403 there; a library caller with no HTTP
    request in between is trusted).

        >>> Scrape("prom-a").scraper, Scrape(lambda: "10.0.0.1").scraper, Scrape("x").may_read()
        ('prom-a', '10.0.0.1', True)
    """

    def __init__(self, scraper: Union[str, Callable[[], str]] = "", consume: bool = True, time: float = 0.0,
                 may_read: Optional[Callable[[], bool]] = None) -> None:
        self._scraper = scraper
        self.consume = consume
        self.time = time or _time.time()
        self._may_read = may_read

    @property
    def scraper(self) -> str:
        if callable(self._scraper):
            self._scraper = self._scraper()
        return self._scraper

    def may_read(self) -> bool:
        return True if self._may_read is None else self._may_read()


class MetricSource(Protocol):
    def collect(self, scrape: Scrape) -> Iterable[Family]: ...


_DESCRIPTIONS: Dict[str, Tuple[str, str]] = {}


def describe(name: str, kind: str, help: str) -> None:
    """Declare how a counter kept in the state store is exposed (``counter`` or ``histogram``)."""
    _DESCRIPTIONS[name] = (kind, help)


describe("statskit_events_accepted", "counter", "Events stored, by measurement and event name.")
describe("statskit_events_rejected", "counter",
         "Events refused (a 4xx, or a 503 while a store is down), by event name (when known) and reason.")
describe("statskit_http_requests", "counter", "HTTP requests answered, by route, method and status.")
describe("statskit_http_request_duration_seconds", "histogram", "Time to answer HTTP requests, by route and method.")
describe("statskit_sink_errors", "counter", "Failures of a sink to take, write or read events.")
describe("statskit_sink_dropped", "counter", "Events a sink gave up on (buffer full, refused, or skipped past [sinks] max_backlog).")
describe("statskit_sink_written", "counter", "Events a buffering sink wrote to its backend.")


def observe_request(state: StateStore, route: str, method: str, status: int, seconds: float) -> None:
    """Count one request and its latency: a histogram kept as one counter per bucket, each
    holding only the requests that fell in it (rendering makes them cumulative)."""
    labels = _route_labels.get((route, method, status))
    if labels is None:  # sorted label tuples built once per route: incr() then skips sorting
        labels = _route_labels[(route, method, status)] = (
            (("method", method), ("route", route), ("status", str(status))),
            (("method", method), ("route", route)),
            tuple((("le", le), ("method", method), ("route", route)) for le in _BUCKET_LABELS))
    by_status, by_route, by_bucket = labels
    state.incr("statskit_http_requests", by_status, 1)
    state.incr("statskit_http_request_duration_seconds_bucket", by_bucket[bisect_left(LATENCY_BUCKETS, seconds)], 1)
    state.incr("statskit_http_request_duration_seconds_sum", by_route, seconds)


_route_labels: Dict[Tuple[str, str, int], tuple] = {}

log = logging.getLogger("statskit.metrics")


class StateMetrics:
    """Every counter in the state store, shaped by :func:`describe`, plus build info."""

    def __init__(self, state: StateStore, prefix: str = "statskit_",
                 before: Sequence[Callable[[], Any]] = ()) -> None:
        self.state = state
        self.prefix = prefix
        self.before = list(before)  # run first: a relay whose counts are due (the Prometheus sink's)

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        for catch_up in self.before:
            try:
                catch_up()
            except Exception as exc:  # the counts so far are still worth answering with
                log.warning("a scrape could not catch up the counts first: %s", exc)
        build = GaugeMetricFamily("statskit_build_info", "statskit version and Python it runs on.",
                                  labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], 1)
        yield build
        yield from families_from_counters(self.state.counters(self.prefix))


def families_from_counters(rows: Sequence[Tuple[str, tuple, float]]) -> Iterator[Metric]:
    """Group state rows into families: plain counters, and histograms from their
    ``_bucket`` / ``_count`` / ``_sum`` rows."""
    counters: Dict[str, List[Tuple[tuple, float]]] = defaultdict(list)
    for name, labels, value in rows:
        counters[name].append((labels, value))
    # A histogram's rows are not counters of their own (they would be exposed again as
    # name_bucket_total{le=...}, which promtool refuses).
    parts = {name + suffix for name, (kind, _) in _DESCRIPTIONS.items() if kind == "histogram"
             for suffix in ("_bucket", "_sum", "_count")}
    for name in sorted(counters):
        if name in parts:
            continue
        kind, help = _DESCRIPTIONS.get(name, ("counter", name.replace("_", " ") + "."))
        if kind == "counter":
            family = None
            for labels, value in counters[name]:
                if family is None:
                    family = CounterMetricFamily(name, help, labels=[k for k, _ in labels])
                family.add_metric([v for _, v in labels], value)
            if family is not None:
                yield family
    for name, (kind, help) in sorted(_DESCRIPTIONS.items()):
        if kind == "histogram" and name + "_bucket" in counters:
            histogram = _histogram(name, help, counters)
            if histogram is not None:
                yield histogram


def _histogram(name: str, help: str, counters: Dict[str, List[Tuple[tuple, float]]]) -> Optional[Metric]:
    per_bucket: Dict[tuple, Dict[str, float]] = defaultdict(dict)
    for labels, value in counters[name + "_bucket"]:
        per_bucket[tuple(p for p in labels if p[0] != "le")][dict(labels)["le"]] = value
    sums = dict(counters.get(name + "_sum", ()))
    family = None
    for base in sorted(per_bucket):
        if family is None:
            family = HistogramMetricFamily(name, help, labels=[k for k, _ in base])
        running, buckets = 0.0, []
        for le in _BUCKET_LABELS:  # the store keeps each bucket's own count; Prometheus wants them cumulative
            running += per_bucket[base].get(le, 0.0)
            buckets.append((le, running))
        family.add_metric([v for _, v in base], buckets, sums.get(base, 0.0))
    return family


def render(sources: Sequence[MetricSource], scrape: Scrape, accept: Optional[str] = None) -> Tuple[bytes, str]:
    """Exposition text (Prometheus 0.0.4 or OpenMetrics, by ``Accept``) and its content type."""
    _, content_type = choose_encoder(accept or "")
    families = (family for source in sources for family in source.collect(scrape))
    return encode(families, openmetrics=content_type.startswith("application/openmetrics-text")), content_type
