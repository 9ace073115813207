"""InfluxDB line protocol, escaped as InfluxDB parses it.

    >>> from statskit.events import parse_item
    >>> ev = parse_item({"measurement": "page views", "tags": {"host": "a,b"}, "fields": {"n": 2, "ok": True},
    ...                  "time": 1795341600, "event_id": "e1"})
    >>> print(to_line(ev))
    page\\ views,host=a\\,b event_id="e1",n=2i,ok=true 1795341600000000000
"""
from __future__ import annotations

from typing import Any, Dict

from ..events import Event

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def field_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + str(value).translate(_STRING) + '"'


def to_line(event: Event, extra_fields: Dict[str, Any] = None) -> str:
    """One point: measurement, tags (sorted, empty values skipped), fields (sorted) plus ``event_id`` (a
    string field, never a tag: ids are unbounded and tags make series), time in ns."""
    parts = [event.measurement.translate(_MEASUREMENT)]
    for key in sorted(event.tags):
        value = event.tags[key]
        if value:
            parts.append(f",{key.translate(_KEY)}={value.translate(_KEY)}")
    fields = dict(event.fields)
    fields["event_id"] = event.id
    if extra_fields:
        fields.update(extra_fields)
    parts.append(" ")
    parts.append(",".join(f"{k.translate(_KEY)}={field_value(v)}" for k, v in sorted(fields.items())))
    parts.append(f" {event.time_ns}")
    return "".join(parts)
