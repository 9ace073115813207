"""Parsing one-shot events: form pairs, Go-compatible values, label rules, scraper names."""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from ..errors import TooLarge, ValidationError
from ..labels import LabelKey

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

Pairs = List[Tuple[str, str]]


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


