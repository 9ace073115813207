"""InfluxDB line protocol, escaped as InfluxDB parses it.

    >>> from statskit.events import parse_item
    >>> ev = parse_item({"measurement": "page views", "tags": {"host": "a,b"}, "fields": {"n": 2, "ok": True},
    ...                  "time": 1795341600, "event_id": "e1"})
    >>> print(to_line(ev))
    page\\ views,host=a\\,b event_id="e1",n=2i,ok=true 1795341600000000000
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ..events import Event

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _cached(cache: Dict[str, str], table: Dict[int, str]) -> Any:
    """An escaper that remembers names and tag values: they repeat across events, and
    ``str.translate`` per key was most of the cost of a line. Bounded, then it just escapes."""
    def escape(text: str) -> str:
        out = cache.get(text)
        if out is None:
            out = text.translate(table)
            if len(cache) < 20_000:
                cache[text] = out
        return out
    return escape


_measurement = _cached({}, _MEASUREMENT)
_key = _cached({}, _KEY)


def field_value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return '"' + (value.translate(_STRING) if ('"' in value or "\\" in value) else value) + '"'
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    if kind is float:
        return repr(value)
    return '"' + str(value).translate(_STRING) + '"'


def to_line(event: Event, extra_fields: Optional[Dict[str, Any]] = None) -> str:
    """One point: measurement, tags (sorted, empty values skipped), fields (sorted) plus
    ``event_id`` (a string field, never a tag: ids are unbounded and tags make series), time in ns."""
    tags = "".join([f",{_key(k)}={_key(v)}" for k, v in sorted(event.tags.items()) if v])
    fields = {**event.fields, "event_id": event.id, **(extra_fields or {})}  # a dict: keys never repeat
    body = ",".join([f"{_key(k)}={field_value(v)}" for k, v in sorted(fields.items())])
    return f"{_measurement(event.measurement)}{tags} {body} {event.time_ns}"
