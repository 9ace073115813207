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
identity and storage: :class:`QueueLimits`, ``statskit_server.peer``, :mod:`statskit.state.oneshot`.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple
from urllib.parse import unquote_to_bytes

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Timestamp

from .errors import TooLarge, ValidationError
from .metrics import Scrape
from .state import StateStore

log = logging.getLogger("statskit.oneshot")

METRIC = "events_to_metrics"
EVENT_COUNT = "events_to_metrics_event_count"
SCRAPER_COUNTS = "events_to_metrics_scraper_counts"
DROPPED = "events_to_metrics_dropped"
REFUSED = "events_to_metrics_scrapers_refused"
COUNTER_PREFIX = "events_to_metrics_"

VALUE_PARAM = "value"
TOKEN_PARAM = "token"
MAX_VALUE_TEXT = 256
MAX_SCRAPER_NAME = 128

Pairs = List[Tuple[str, str]]
LabelKey = Tuple[Tuple[str, str], ...]


# --------------------------------------------------------------------------- parsing

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0/C1 controls but tab and newline
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Go's strconv.ParseFloat syntax: '_' only between digits; hexadecimal needs a 'p' exponent.
_DIGITS = r"\d+(?:_\d+)*"
_DECIMAL = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?\Z", re.ASCII)
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][+-]?\d+\Z", re.ASCII)
_SPECIAL = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
            "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}
# Go's unicode.IsSpace, what strings.TrimSpace trims: these in Latin-1 (Python's isspace also
# counts \x1c-\x1f), the Unicode White_Space characters above it (where isspace agrees).
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0")


def _is_go_space(char: str) -> bool:
    return char in _GO_SPACE or (char > "\xff" and char.isspace())


def parse_form(data: bytes, source: str = "query") -> Pairs:
    """``application/x-www-form-urlencoded`` pairs, strictly: a bad ``%`` escape, a ``;``
    separator (both 400 in the original too) or bytes that are not UTF-8 are errors, not skipped.

        >>> parse_form(b"type=deploy&a+b=x%2Fy")
        [('type', 'deploy'), ('a b', 'x/y')]
    """
    if b"%" not in data and b"+" not in data and b";" not in data:
        # Fast path (no escapes: the usual curl/cron query): decode once, split.
        text = _unescape(data, source)
        return [(key, value) for key, _, value in (segment.partition("=") for segment in text.split("&") if segment)]
    pairs: Pairs = []
    for segment in data.split(b"&"):
        if not segment:
            continue
        if b";" in segment:
            raise ValidationError(f"invalid semicolon separator in {source}: use & between parameters "
                                  f"and %3B for a literal semicolon", field=source)
        bad = _BAD_ESCAPE.search(segment)
        if bad:
            escape = segment[bad.start():bad.start() + 3].decode("latin-1")
            raise ValidationError(f"invalid URL escape {escape!r} in {source}", field=source)
        key, _, value = segment.partition(b"=")
        pairs.append((_unescape(key, source), _unescape(value, source)))
    return pairs


def query_bytes(query_string: str) -> bytes:
    """The raw query string as bytes: WSGI hands it over latin-1 decoded (PEP 3333)."""
    try:
        return query_string.encode("latin-1")
    except UnicodeEncodeError:
        return query_string.encode("utf-8")


def _unescape(raw: bytes, source: str) -> str:
    # Most parameters need no unescaping: skip the copy (this is on every POST /event).
    data = unquote_to_bytes(raw.replace(b"+", b" ")) if b"%" in raw or b"+" in raw else raw
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{source} parameter {data[:64]!r} is not valid UTF-8", field=source) from None


def parse_value(text: str) -> float:
    """A sample value as the original's Go ``ParseFloat`` read it (see the module docs).

        >>> parse_value("2.5"), parse_value("1_000"), parse_value("0x1p-2"), parse_value("-Infinity")
        (2.5, 1000.0, 0.25, -inf)
    """
    if len(text) > MAX_VALUE_TEXT:
        raise ValidationError(f"value is {len(text)} characters long; at most {MAX_VALUE_TEXT}", field=VALUE_PARAM)
    special = _SPECIAL.get(text.lower())
    if special is not None:
        return special
    if _DECIMAL.match(text):
        number = float(text)
    elif _HEX.match(text):
        try:
            number = float.fromhex(text)
        except OverflowError:  # 0x1p1024: Go's ParseFloat says "value out of range" too
            number = math.inf
    else:
        raise ValidationError(f"value {text!r} is not a number (examples: 2.5, -1e3, NaN, +Inf)", field=VALUE_PARAM)
    if math.isinf(number):
        raise ValidationError(f"value {text!r} is out of range for a 64-bit float", field=VALUE_PARAM)
    return number


def check_label(name: str, value: str) -> None:
    """Raise a ValidationError saying why ``name="value"`` cannot be a Prometheus label."""
    if not name:
        raise ValidationError("a parameter has an empty name", field=name)
    if not _LABEL_NAME.match(name):
        raise ValidationError(f"label name {name[:64]!r} is not a valid Prometheus label name "
                              f"(letters, digits and _, not starting with a digit)", field=name[:64])
    if name.startswith("__"):
        raise ValidationError(f"label name {name!r} starts with __, which Prometheus reserves", field=name)
    if not value:
        raise ValidationError(f"label {name!r} has an empty value (Prometheus treats it as no label)", field=name)
    if not (value[0].isalnum() and value[-1].isalnum()) and (_is_go_space(value[0]) or _is_go_space(value[-1])):
        raise ValidationError(f"label {name!r} has a value starting or ending with white space", field=name)
    control = _CONTROL.search(value)
    if control:
        raise ValidationError(f"label {name!r} has a control character {control.group()!r} in its value", field=name)


@dataclass(frozen=True)
class OneShotEvent:
    """A validated event: sorted labels, the sample value and (once posted) its time in ms.
    ``key`` is the canonical series key that queues store and compare (JSON, sorted keys)."""

    labels: LabelKey
    value: float = 1.0
    time_ms: int = 0
    key: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", series_key(self.labels))

    @property
    def series(self) -> str:
        """The series as Prometheus shows it: ``events_to_metrics{a="1",b="2"}``."""
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in self.labels)
        return f"{METRIC}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_KEY_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # one instance: once per POST


def series_key(labels: LabelKey) -> str:
    # Labels are sorted already: json keeps the dict's order, which is the canonical one.
    return _KEY_ENCODER.encode(dict(labels))


def parse_event(pairs: Iterable[Tuple[str, str]], max_bytes: Optional[int] = None, time_ms: int = 0) -> OneShotEvent:
    """Labels and value from form pairs (body pairs first, then the query's, as Go's ParseForm).

        >>> parse_event([("type", "deploy"), ("value", "2.5")])
        OneShotEvent(labels=(('type', 'deploy'),), value=2.5, time_ms=0)
    """
    labels: Dict[str, str] = {}
    value_text: Optional[str] = None
    for raw_name, raw_value in pairs:
        if raw_name == TOKEN_PARAM:
            continue
        if raw_name == VALUE_PARAM:
            if value_text is not None and value_text != raw_value:
                raise ValidationError(f"value given twice ({value_text[:32]!r} and {raw_value[:32]!r})",
                                      field=VALUE_PARAM)
            value_text = raw_value
            continue
        name = raw_name.replace(" ", "_")  # the original's rule
        check_label(name, raw_value)
        previous = labels.get(name)
        if previous is not None and previous != raw_value:
            raise ValidationError(f"label {name!r} given twice with different values "
                                  f"({previous[:32]!r} and {raw_value[:32]!r})", field=name)
        labels[name] = raw_value
    value = 1.0 if value_text is None else parse_value(value_text)
    event = OneShotEvent(tuple(sorted(labels.items())), value, time_ms)
    if max_bytes is not None:
        size = len(event.key.encode("utf-8"))
        if size > max_bytes:
            raise TooLarge(f"event labels take {size} bytes; the limit is {max_bytes}")
    return event


def check_scraper_name(name: str) -> str:
    """An explicit scraper name (``/metrics?scraper=prom-a``), or a ValidationError.

    Names that parse as IP addresses are refused: they would let a client take the events of the
    scraper known by that address, which is what trusting forwarding headers blindly allowed.
    """
    if not 0 < len(name) <= MAX_SCRAPER_NAME or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@/\-]*", name):
        raise ValidationError(f"scraper name must be 1-{MAX_SCRAPER_NAME} letters, digits or _.:@/- "
                              f"starting with a letter or digit", field="scraper")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise ValidationError("scraper name must not be an IP address (addresses identify scrapers without a name)",
                          field="scraper")


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


@dataclass
class ScrapeResult:
    """What a scrape got: its samples, and every tracked scraper's backlog before the scrape."""

    deliveries: List[Delivery] = field(default_factory=list)
    pending: Dict[str, int] = field(default_factory=dict)
    status: str = "known"  # known, new, refused, peek (HEAD: nothing changed) or error


class OneShotQueue(Protocol):
    """Storage of one-shot events and scraper cursors (see :mod:`statskit.state.oneshot`)."""

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
        self._refusals_logged: Dict[str, float] = {}
        self._lock = threading.Lock()

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
        now = time.monotonic()
        with self._lock:  # one line per scraper per minute: Prometheus retries every interval
            if now - self._refusals_logged.get(scraper, -math.inf) < self.REFUSAL_LOG_INTERVAL:
                return
            if len(self._refusals_logged) > 1000:
                self._refusals_logged.clear()
            self._refusals_logged[scraper] = now
        log.warning("one-shot scraper %s refused: %d scrapers already tracked ([oneshot] max_scrapers); "
                    "it gets no events until one is silent for scraper_timeout", scraper, max_scrapers)


def open_queue(state: StateStore, limits: Optional[QueueLimits] = None,
               reporter: Optional[Reporter] = None) -> OneShotQueue:
    """The queue backend for a state store: SQLite next to an ``SQLiteState``, else in memory."""
    from .state.oneshot import open_queue as _open

    return _open(state, limits or QueueLimits(), reporter or Reporter(state))


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
                 max_event_bytes: Optional[int] = None, clock=time.time) -> None:
        self.queue = queue
        self.state = state
        self.explicit_timestamps = explicit_timestamps
        self.max_event_bytes = max_event_bytes
        self.clock = clock

    def post(self, pairs: Iterable[Tuple[str, str]], now: Optional[float] = None) -> OneShotEvent:
        """Validate and queue one event; raises ValidationError / TooLarge with nothing queued."""
        event = parse_event(pairs, self.max_event_bytes, int((self.clock() if now is None else now) * 1000))
        self.queue.post(event.key, event.value, event.time_ms)
        self.state.incr(EVENT_COUNT, (), 1)
        return event

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        try:
            if scrape.oneshot:
                result = self.queue.scrape(scrape.scraper, int(scrape.time * 1000), consume=scrape.consume)
            else:
                result = ScrapeResult(status="unauthorized")
        except Exception:
            # The rest of /metrics still answers; the transaction rolled back, so nothing was
            # handed out and this scraper gets its events at the next scrape.
            log.exception("one-shot queue unavailable for scraper %s", scrape.scraper)
            result = ScrapeResult(status="error")
        log.debug("scraper : %s (%s, %d event(s))", scrape.scraper, result.status, len(result.deliveries))
        # Counters are read after the scrape's transaction: reading flushes this worker's buffer.
        counters = self.state.counters(COUNTER_PREFIX)
        total = sum(v for n, _, v in counters if n == EVENT_COUNT)
        # (The original gave this the scraper_counts help text by mistake; the name is what matters.)
        count = Metric(EVENT_COUNT, "One-shot events registered, all workers, across restarts (a counter).",
                       "unknown")
        count.add_sample(EVENT_COUNT, {}, total)
        yield count
        if result.pending:
            backlog = GaugeMetricFamily(SCRAPER_COUNTS, "Scrapers currently being tracked and the events they "
                                        "have yet to collect", labels=["scraper"])
            for scraper, pending in sorted(result.pending.items()):
                backlog.add_metric([scraper], pending)
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

    def _events_family(self, deliveries: Sequence[Delivery]) -> Metric:
        family = Metric(METRIC, "Events registered generically to the conversion service", "gauge")
        decoded: Dict[str, Dict[str, str]] = {}
        for d in deliveries:
            labels = decoded.get(d.key)
            if labels is None:
                labels = decoded[d.key] = json.loads(d.key)
            family.add_sample(METRIC, labels, d.value, _timestamp(d.time_ms) if self.explicit_timestamps else None)
        return family

    def close(self, timeout: Optional[float] = None) -> None:
        self.queue.close(timeout)


def _timestamp(time_ms: int) -> Timestamp:
    # Half a millisecond past the event's ms: the text format writes int(float(ts) * 1000) and
    # Prometheus reads OpenMetrics seconds as int64(ts * 1000); both truncate, and a float such
    # as 1700000000.001 can land just below its ms. From the middle both land on time_ms exactly.
    seconds, ms = divmod(time_ms, 1000)
    return Timestamp(seconds, ms * 1_000_000 + 500_000)
