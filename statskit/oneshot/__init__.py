"""One-shot events for Prometheus: every event posted is handed once to each scraper.

A one-shot event is a label set and a value (``type=deploy&service=api&value=2.5``). It becomes
one ``events_to_metrics{service="api",type="deploy"} 2.5`` sample in the next scrape of every
scraper that was tracked when it was posted, and never again for that scraper. Two Prometheus
servers scraping the same statskit each get it once.

    >>> from statskit.state.memory import MemoryState
    >>> from statskit.metrics import Scrape, render
    >>> state = MemoryState()
    >>> oneshot = OneShot(open_queue(state), state)
    >>> _ = render([oneshot], Scrape("prom-a", time=1000.0))       # first scrape: prom-a is tracked
    >>> oneshot.post(parse_form(b"type=deploy&service=api&value=2.5"), now=1001.0).series
    'events_to_metrics{service="api",type="deploy"}'
    >>> body, _ = render([oneshot], Scrape("prom-a", time=1002.0))
    >>> b'events_to_metrics{service="api",type="deploy"} 2.5' in body
    True
    >>> b'events_to_metrics{' in render([oneshot], Scrape("prom-a", time=1003.0))[0]   # consumed
    False

Rules for an event (each broken rule is a :class:`~statskit.errors.ValidationError` naming it,
and nothing is registered):

* ``value`` is the sample value (default 1). It is read as Go's ``strconv.ParseFloat`` read it in
  the original: decimal with optional exponent and ``_`` between digits, hexadecimal floats with a
  ``p`` exponent (``0x1p-2``), ``NaN``, ``Inf``/``+Inf``/``-Infinity`` (any case). NaN and the
  infinities are accepted because the exposition formats carry them and Prometheus stores them;
  the event still counts in ``count_over_time``. Out of range (``1e400``), blanks or anything
  else is a 400 (the original quietly turned it into a label called ``value``).
* every other parameter is a label. As in the original, spaces in a name become ``_``; the name
  must then be a valid Prometheus label name not starting with ``__`` (the original accepted
  ``1abc``, which Prometheus rejects at scrape time, failing the whole scrape). ``token`` is the
  authentication parameter and never a label, so a secret cannot end up in Prometheus.
* a label value must be non-empty and equal to itself trimmed of Unicode white space (the
  original's rule), valid UTF-8 and free of control characters other than tab and newline.
  ``"``, ``\\`` and newlines are escaped in the exposition (the original refused ``"`` and
  newlines because it did not escape).
* a label given twice with different values (``a=1&a=2``, or ``a b=1&a_b=2``) is refused; the
  original kept a random one.

Scrapes hand out at most one sample per series: Prometheus keeps only one sample per series per
scrape (2.52+ counts the others in ``prometheus_target_scrapes_sample_duplicate_timestamp_total``
and drops them, even with explicit timestamps until 2.54: prometheus#12933, #14503). So when the
same label set is posted twice between two scrapes, the second sample goes out in the next scrape
instead of overwriting the first (the original's "last value wins" lost events), and
``count_over_time(events_to_metrics{...}[w])`` equals the number of events posted.

Timestamps (``USE_EXPLICIT_TIMESTAMPS``): off, a sample is stamped by Prometheus at scrape time,
up to one scrape interval after the event, and the series goes stale at the next scrape without
it, so it shows as one point. On, a sample carries its event's own time (ms): graphs place it
exactly, but Prometheus applies no staleness to it (an instant query still returns it for the
lookback delta, 5 min by default), and it refuses samples older than the newest sample of the
series or older than its head block (about 1 h), so an event delivered late (backfill, a scraper
that was away) may be dropped by Prometheus. The events of one series get strictly increasing
times (one posted in the same millisecond as the previous is moved 1 ms after it), since
Prometheus drops a sample that is not newer than the last one of its series.

Delivery: a scraper is tracked from its first GET scrape (HEAD changes nothing and consumes
nothing) and gets the events posted from then on, or from ``backfill`` seconds before it. Events
are taken when ``/metrics`` is rendered: if Prometheus gives up on that scrape (timeout), they
are lost for that scraper, as statskit cannot know whether an answer arrived. Bounds, scraper
identity and storage: :class:`QueueLimits`, ``statskit_server.peer``, :mod:`statskit.oneshot.stores`.
"""
import warnings as _warnings
from typing import Any as _Any

from ..labels import LabelKey
from .collector import OneShot
from .feature import FEATURE
from .parsing import (
    COUNTER_PREFIX,
    DROPPED,
    EVENT_COUNT,
    MAX_VALUE_TEXT,
    METRIC,
    REFUSED,
    SCRAPER_COUNTS,
    TOKEN_PARAM,
    VALUE_PARAM,
    OneShotEvent,
    Pairs,
    check_label,
    parse_event,
    parse_form,
    parse_value,
    query_bytes,
    series_key,
)
from .queue import Delivery, OneShotQueue, QueueLimits, Reporter, ScrapeResult
from .stores import open_queue

__all__ = ["COUNTER_PREFIX", "DROPPED", "EVENT_COUNT", "FEATURE", "MAX_VALUE_TEXT", "METRIC", "REFUSED",
           "SCRAPER_COUNTS", "TOKEN_PARAM", "VALUE_PARAM", "Delivery", "LabelKey", "OneShot", "OneShotEvent",
           "OneShotQueue", "Pairs", "QueueLimits", "Reporter", "ScrapeResult", "check_label", "open_queue",
           "parse_event", "parse_form", "parse_value", "query_bytes", "series_key"]


def __getattr__(name: str) -> _Any:
    # Scraper names are the server's business now (statskit_server.peer): the old names stay
    # reachable from here for one release.
    if name in ("check_scraper_name", "MAX_SCRAPER_NAME"):
        _warnings.warn(f"statskit.oneshot.{name} moved to statskit_server.peer", DeprecationWarning, stacklevel=2)
        from statskit_server import peer

        return getattr(peer, name)
    raise AttributeError(f"module 'statskit.oneshot' has no attribute {name!r}")
