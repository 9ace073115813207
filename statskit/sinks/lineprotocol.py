"""InfluxDB line protocol, escaped as InfluxDB parses it.

    >>> from statskit.events import parse_item
    >>> ev = parse_item({"measurement": "page views", "tags": {"host": "a,b"}, "fields": {"n": 2, "ok": True},
    ...                  "time": 1795341600, "event_id": "e1"})
    >>> print(to_line(ev))
    page\\ views,host=a\\,b event_id="e1",n=2i,ok=true 1795341600000000000

Escaping follows influxdb-client's ``Point`` (checked against InfluxDB 1.6.7):

* measurement: ``,`` and space; tag keys, tag values and field keys also ``=``. Backslashes are
  left alone: InfluxDB only ever unescapes ``\\,``, ``\\=`` and ``\\ `` there, so ``a\\b`` is
  stored as written and ``a\\,b`` (a literal backslash before an escaped comma) reads back right.
* a name or tag value ending in a backslash cannot be written at all (the backslash would escape
  the separator after it and InfluxDB refuses the line): like influxdb-client, a space is
  appended, so ``a\\`` is stored as ``a`` followed by a space instead of losing the point.
* string field values: ``"`` and ``\\`` are escaped; newlines may stay raw inside the quotes.
* integers ``123i``, booleans ``true``/``false``, floats as ``repr`` (``1.0``, ``1e+20``: both read
  as floats); None and non-finite floats are left out (a point always keeps its ``event_id``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..events import Event

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _cached(cache: Dict[str, str], table: Dict[int, str]) -> Callable[[str], str]:
    """An escaper that remembers names and tag values: they repeat across events, and
    ``str.translate`` per key was most of the cost of a line. Bounded, then it just escapes."""
    def escape(text: str) -> str:
        out = cache.get(text)
        if out is None:
            if type(text) is not str:
                text = str(text)  # Events built in code may carry numbers as tag values
            out = text.translate(table)
            if out.endswith("\\"):
                out += " "  # see the module docstring: unwritable otherwise
            if len(cache) < 20_000:
                cache[text] = out
        return out
    return escape


escape_measurement = _cached({}, _MEASUREMENT)
escape_key = _cached({}, _KEY)  # tag keys, tag values and field keys


def field_value(value: Any) -> Optional[str]:
    """A field value as line protocol, or None for a value InfluxDB cannot store."""
    kind = type(value)
    if kind is str:
        return '"' + (value.translate(_STRING) if ('"' in value or "\\" in value) else value) + '"'
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    if kind is float:
        return repr(value) if math.isfinite(value) else None
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # IntEnum, numpy integers registered as int, ...
        return f"{int(value)}i"
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else None
    return '"' + str(value).translate(_STRING) + '"'


_series_cache: Dict[tuple, str] = {}
_stored_series_cache: Dict[tuple, str] = {}
MAX_SERIES_CACHE = 50_000


def _series_text(measurement: str, tags: Dict[str, Any]) -> str:
    """Measurement and tags (sorted, empty values skipped), escaped."""
    return escape_measurement(measurement) + "".join(
        [f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v and k])


def _remember(cache: Dict[tuple, str], key: tuple, text: str) -> str:
    if len(cache) >= MAX_SERIES_CACHE:
        cache.clear()
    cache[key] = text
    return text


def series_key(event: Event) -> str:
    """Measurement and tags (sorted, empty values skipped): what InfluxDB identifies a series by.

    Cached by measurement and tag items: a few users and event names make most of the traffic,
    and sorting and escaping the tags was a third of a line's cost. Bounded (cleared when full)."""
    cache_key = (event.measurement, *event.tags.items())
    key = _series_cache.get(cache_key)
    if key is None:
        key = _remember(_series_cache, cache_key, _series_text(event.measurement, event.tags))
    return key


# A field layout: the fields of one set of keys plus ``event_id``, in line order (sorted by key
# like influxdb-client's ``Point``; event_id, a string field and never a tag since ids are
# unbounded, takes its place among them), each with its escaped ``key=``. ``None`` stands for
# the event's id. Events of one kind share their keys, so sorting and escaping happen once.
Layout = Tuple[Tuple[Optional[str], str], ...]
_layouts: Dict[Tuple[str, ...], Layout] = {}
_stored_layouts: Dict[Tuple[str, ...], Layout] = {}
MAX_LAYOUTS = 10_000
# What Event.to_dict() puts beside an event's fields (see stored_line).
STORED_KEYS = frozenset({"event_id", "time", "measurement", "uid", "event", "tags"})


def _layout(cache: Dict[Tuple[str, ...], Layout], keys: Tuple[str, ...], skip: frozenset) -> Layout:
    layout = cache.get(keys)
    if layout is None:
        names = sorted({key for key in keys if key not in skip} | {"event_id"})  # a field "event_id": the id wins
        layout = tuple((None if key == "event_id" else key, escape_key(key) + "=") for key in names)
        if len(cache) >= MAX_LAYOUTS:
            cache.clear()
        cache[keys] = layout
    return layout


# The last float formatted: the server's ``now`` field (the receive time) is the same float for
# most events of a request, and repr() of a 17-digit float was a third of a line's cost.
_last_float: Tuple[float, str] = (math.nan, "")


def _fields_text(fields: Dict[str, Any], layout: Layout, event_id: str) -> str:
    global _last_float
    parts = []
    for key, prefix in layout:
        # field_value() inlined for the JSON types: this loop is most of the sink's cost per event.
        value: Any = event_id if key is None else fields[key]  # dispatched on its exact type
        kind = type(value)
        if kind is str:
            text: Optional[str] = '"' + (value.translate(_STRING) if ('"' in value or "\\" in value) else value) + '"'
        elif kind is int:
            text = f"{value}i"
        elif kind is float:
            last = _last_float
            if value == last[0] and value:  # not 0.0: -0.0 equals it and reads "-0.0"
                text = last[1]
            else:
                text = repr(value) if math.isfinite(value) else None
                if text is not None:
                    _last_float = (value, text)
        elif kind is bool:
            text = "true" if value else "false"
        else:
            text = field_value(value)
        if text is not None:
            parts.append(prefix + text)
    return ",".join(parts)


def field_set(event: Event, extra_fields: Optional[Dict[str, Any]] = None) -> str:
    """The event's fields plus ``event_id`` (a string field, never a tag: ids are unbounded and
    every tag value makes a series), sorted by key like influxdb-client's ``Point``."""
    fields = event.fields
    if extra_fields:
        fields = {**fields, **extra_fields}
    return _fields_text(fields, _layout(_layouts, tuple(fields), frozenset()), event.id)


def to_line(event: Event, extra_fields: Optional[Dict[str, Any]] = None) -> str:
    """One point: series key, field set, time in nanoseconds."""
    return f"{series_key(event)} {field_set(event, extra_fields)} {event.time_ns}"


def stored_line(data: Dict[str, Any], time_ns: int) -> str:
    """``to_line(Event.from_dict(data, time_ns))`` without the Event: the line of an event as
    the durable log stores it (``Event.to_dict()``, decoded), for the relay, which would
    otherwise build an Event per row only to format it."""
    measurement = data["measurement"]
    if "fields" in data and "uid" not in data:  # a point: {event_id, time, measurement, tags, fields}
        fields, tags = data["fields"], data.get("tags") or {}
        cache_key: tuple = (measurement, *tags.items())
        series = _series_cache.get(cache_key)
        if series is None:
            series = _remember(_series_cache, cache_key, _series_text(measurement, tags))
        layout = _layout(_layouts, tuple(fields), frozenset())
    else:  # an event: {event_id, time, measurement, uid, event[, tags], its fields...}
        fields, extra = data, data.get("tags")
        cache_key = (measurement, data["uid"], data["event"], *(extra.items() if extra else ()))
        series = _stored_series_cache.get(cache_key)
        if series is None:
            tags = {**(extra or {}), "uid": data["uid"], "event": data["event"]}
            series = _remember(_stored_series_cache, cache_key, _series_text(measurement, tags))
        layout = _layout(_stored_layouts, tuple(data), STORED_KEYS)
    return f"{series} {_fields_text(fields, layout, data['event_id'])} {time_ns}"


def to_lines(events: Sequence[Event]) -> List[str]:
    """One line per event, with times made unique per series within the batch.

    InfluxDB keeps ONE point per series and timestamp: a later point overwrites an earlier one.
    The events of a request share their receive time, so 500 page views from 97 users in one
    ``POST /log/events`` would be stored as 97 points. Such collisions are moved on by 1 ns each
    (invisible at the microsecond precision events are shown with). Two lines with the same
    event id are a retry of one event: they keep their time, so InfluxDB stores it once.
    """
    if len(events) == 1:
        return [to_line(events[0])]
    seen: Dict[Tuple[str, int], str] = {}
    lines = []
    for event in events:
        key = series_key(event)
        time_ns = event.time_ns
        other = seen.setdefault((key, time_ns), event.id)
        while other != event.id:
            time_ns += 1
            other = seen.setdefault((key, time_ns), event.id)
        lines.append(f"{key} {field_set(event)} {time_ns}")
    return lines
