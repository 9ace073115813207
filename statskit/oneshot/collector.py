"""``OneShot``: validates and queues events, and renders them on ``/metrics``."""
from __future__ import annotations

import json
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Timestamp

from ..exposition import Family, TextFamily, format_value, sample_prefix
from ..metrics import Scrape
from ..state import StateStore
from .parsing import (
    COUNTER_PREFIX,
    DROPPED,
    EVENT_COUNT,
    METRIC,
    REFUSED,
    SCRAPER_COUNTS,
    OneShotEvent,
    log,
    parse_event,
)
from .queue import Columns, Delivery, OneShotQueue, ScrapeResult

# --------------------------------------------------------------------------- facade + /metrics


class OneShot:
    """Validates and queues events, and is the :class:`~statskit.metrics.MetricSource` that renders
    them: ``events_to_metrics``, ``events_to_metrics_event_count``,
    ``events_to_metrics_scraper_counts`` (as the original) plus ``events_to_metrics_dropped_total``
    and ``events_to_metrics_scrapers_refused_total``.

    ``events_to_metrics_event_count`` keeps the original's sample name, so it is typed ``unknown``
    (``untyped``): OpenMetrics, which Prometheus asks for first, requires counter samples to end in
    ``_total``. Its value is a counter in the shared state: all workers, and it survives restarts.
    """

    def __init__(self, queue: OneShotQueue, state: StateStore, *, explicit_timestamps: bool = False,
                 max_event_bytes: Optional[int] = None, require_scrape_token: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.queue = queue
        # Events (and the names of the scrapers waiting for them) only for scrapes with a
        # read-scope token; other scrapes still get every other family.
        self.require_scrape_token = require_scrape_token
        self.state = state
        self.explicit_timestamps = explicit_timestamps
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self._prefixes: Dict[str, str] = {}  # series key -> 'events_to_metrics{...}'
        self._values: Dict[float, str] = {}  # value -> its text (most events carry 1)

    def post(self, pairs: Iterable[Tuple[str, str]], now: Optional[float] = None) -> OneShotEvent:
        """Validate and queue one event; raises ValidationError / TooLarge with nothing queued."""
        event = parse_event(pairs, self.max_event_bytes, int((self.clock() if now is None else now) * 1000))
        self.queue.post(event.key, event.value, event.time_ms)
        self.state.incr(EVENT_COUNT, (), 1)
        return event

    def collect(self, scrape: Scrape) -> Iterator[Family]:
        allowed = not self.require_scrape_token or scrape.may_read()  # a bad token: the route's 401
        scraper = scrape.scraper if allowed else "-"  # a malformed ?scraper=: the route's 400
        try:
            if allowed:
                result = self.queue.scrape(scraper, int(scrape.time * 1000), consume=scrape.consume)
            else:
                result = ScrapeResult(status="unauthorized")
        except Exception:
            # The rest of /metrics still answers; the transaction rolled back, so nothing was
            # handed out and this scraper gets its events at the next scrape.
            log.exception("one-shot queue unavailable for scraper %s", scraper)
            result = ScrapeResult(status="error")
        log.debug("scraper : %s (%s, %d event(s))", scraper, result.status,
                  len(result.deliveries))
        # Counters are read after the scrape's transaction: reading flushes this worker's buffer.
        counters = self.state.counters(COUNTER_PREFIX)
        total = sum(v for n, _, v in counters if n == EVENT_COUNT)
        # (The original gave this the scraper_counts help text by mistake; the name is what matters.)
        count = Metric(EVENT_COUNT, "One-shot events registered, all workers, across restarts (a counter).",
                       "unknown")
        # With explicit timestamps the original stamped these lines with the scrape's time too.
        stamp = _timestamp(int(scrape.time * 1000)) if self.explicit_timestamps else None
        count.add_sample(EVENT_COUNT, {}, total, stamp)
        yield count
        if result.pending:
            backlog = GaugeMetricFamily(SCRAPER_COUNTS, "Scrapers currently being tracked and the events they "
                                        "have yet to collect", labels=["scraper"])
            for scraper, pending in sorted(result.pending.items()):
                backlog.add_metric([scraper], pending, stamp)
            yield backlog
        if result.deliveries:
            yield self._events_family(result.deliveries)
        for name, help in ((DROPPED, "One-shot events a scraper lost before collecting them, once per scraper, by "
                                     "reason (max_pending: backlog full, oldest first; scraper_timeout: forgotten)."),
                           (REFUSED, "Scrapes that got no one-shot events because max_scrapers were tracked.")):
            rows = [(labels, value) for n, labels, value in counters if n == name]
            if rows:
                family = CounterMetricFamily(name, help, labels=[k for k, _ in rows[0][0]])
                for labels, value in rows:
                    family.add_metric([v for _, v in labels], value)
                yield family

    def _events_family(self, deliveries: Sequence[Delivery]) -> Family:
        if self.explicit_timestamps:
            family = Metric(METRIC, HELP_EVENTS, "gauge")
            decoded: Dict[str, Dict[str, str]] = {}
            for d in deliveries:
                labels = decoded.get(d.key)
                if labels is None:
                    labels = decoded[d.key] = json.loads(d.key)
                family.add_sample(METRIC, labels, d.value, _timestamp(d.time_ms))
            return family
        columns = Columns.of(deliveries)
        keys, values = columns.keys, columns.values
        texts = self._value_texts(values)
        only = next(iter(texts)) if len(texts) == 1 else 0.0  # (0.0 == -0.0: a zero's text may be the other's)
        if only and "{}" not in keys:
            # One value for every line (most events carry 1): the keys joined, series_prefix's
            # replaces on all of them at once, then each key's '{"' made the line's start.
            joined = "\n".join(keys)
            if not _replaces_unsafe(joined):
                value = f" {texts[only]}\n"
                exposed = joined.replace('":"', '="').replace('","', '",')
                return TextFamily(METRIC, HELP_EVENTS, "gauge",
                                  [METRIC + "{" + (exposed + value)[2:].replace('\n{"', value + METRIC + "{")])
        # (a zero is formatted each time: 0.0 == -0.0, so a dict would give one the other's text)
        text = "".join([f"{METRIC}{{{key[2:]} {texts[value] if value else format_value(value)}\n"
                        for key, value in zip(keys, values)])  # each key less its '{"'
        # series_prefix for every line at once (the replaces and the checks run in C, several
        # times faster than a Python step per line): exact where series_prefix's replaces are,
        # and no key is {} (which leaves "{ "); otherwise the per-line path, exact for any key.
        if not _replaces_unsafe(text) and "{ " not in text:
            return TextFamily(METRIC, HELP_EVENTS, "gauge", [text.replace('":"', '="').replace('","', '",')])
        prefix = self._prefix
        return TextFamily(METRIC, HELP_EVENTS, "gauge",
                          [f"{prefix(key)} {texts[value] if value else format_value(value)}\n"
                           for key, value in zip(keys, values)])

    def _value_texts(self, values: List[float]) -> Dict[float, str]:
        """Each value's text for this scrape, from a cache kept across scrapes (most events carry
        1). A dict of its own: another thread's scrape may clear the cache meanwhile. A NaN is
        not kept (each is a key of its own)."""
        cache = self._values
        if len(cache) > MAX_CACHED_VALUES:
            cache.clear()
        texts = {}
        for value in set(values):
            text = cache.get(value)
            if text is None:
                text = format_value(value)
                if value == value:
                    cache[value] = text
            texts[value] = text
        return texts

    def _prefix(self, key: str) -> str:
        """A series' ``events_to_metrics{...}``, kept across scrapes (the same series come back)."""
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) > MAX_CACHED_SERIES:
                self._prefixes.clear()
            prefix = self._prefixes[key] = series_prefix(key)
        return prefix

    def close(self, timeout: Optional[float] = None) -> None:
        self.queue.close(timeout)


HELP_EVENTS = "Events registered generically to the conversion service"
MAX_CACHED_SERIES = 100_000  # series prefixes kept between scrapes (the per-line path)
MAX_CACHED_VALUES = 10_000


def series_prefix(key: str) -> str:
    """``events_to_metrics{a="x",b="y"}`` from a series key (``{"a":"x","b":"y"}``, see series_key).

        >>> series_prefix('{"build":"7","type":"deploy"}')
        'events_to_metrics{build="7",type="deploy"}'

    The per-line path of a scrape runs this once per new series. Without a backslash in the
    key, JSON escaped nothing: every quote is one of its own, and its label text is already the
    exposition's (names are plain, values hold no quote, backslash or newline). Then two string
    replaces do what decoding and re-escaping would, several times faster; but for a value that
    is exactly ``,`` (``"a":","``), where the second replace would take the value's own quotes.
    """
    if key == "{}":
        return METRIC
    if not _replaces_unsafe(key):
        return METRIC + "{" + key[2:].replace('":"', '="').replace('","', '",')
    labels = json.loads(key)  # sorted by name already
    return sample_prefix(METRIC, list(labels), list(labels.values()))


def _replaces_unsafe(text: str) -> bool:
    """Whether the two replaces could go wrong in ``text``: an escape (a backslash), or a value
    of exactly ``,`` (``":","``: also a value ``:`` before another label, which is harmless)."""
    return "\\" in text or '":","' in text


def _timestamp(time_ms: int) -> Timestamp:
    # Half a millisecond past the event's ms: the text format writes int(float(ts) * 1000) and
    # Prometheus reads OpenMetrics seconds as int64(ts * 1000); both truncate, and a float such
    # as 1700000000.001 can land just below its ms. From the middle both land on time_ms exactly.
    seconds, ms = divmod(time_ms, 1000)
    return Timestamp(seconds, ms * 1_000_000 + 500_000)
