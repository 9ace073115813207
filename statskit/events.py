"""The event model: what a client posts, validated into :class:`Event` objects for the sinks.

Two shapes come from stats-service's two API generations:

* an **event**: a dict with ``uid`` and ``event`` (the v1 API). Every other key is kept as a
  field (nested dicts are flattened with ``_``, as stats-client v1 did); an optional ``tags``
  dict becomes extra tags; ``time`` sets the event time; ``event_id`` makes retries idempotent.
* a **point**: ``{"measurement", "tags", "fields"[, "time"]}`` (the v2 API).

    >>> ev = parse_item({"uid": "u1", "event": "signup", "plan": "pro"}, table_name="analytics")
    >>> ev.measurement, ev.tags, ev.fields
    ('analytics', {'uid': 'u1', 'event': 'signup'}, {'plan': 'pro'})
    >>> ev.id.startswith("entry_")
    True
"""
from __future__ import annotations

import math
import os
import random
import re
import time as _time
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Union

import orjson

from .constants import INT64_MAX, INT64_MIN
from .errors import TooLarge, ValidationError

Scalar = Union[str, int, float, bool]


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


MAX_NAME_LENGTH = 128
MAX_TEXT_LENGTH = 256
MAX_FLATTEN_DEPTH = 4
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_EVENT_ID = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}\Z")
_RESERVED_FIELDS = ("measurement", "fields")  # they would make a stored event read back as a point
# Tag and field names InfluxDB will not store: 1.x refuses a point with a "time" tag and drops a
# "time" field; 2.x reads points back as Flux tables whose own columns have these _names.
_RESERVED_KEYS = frozenset({"time", "_measurement", "_field", "_time", "_value", "_start", "_stop"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Earliest and latest times an int64 nanosecond timestamp (InfluxDB's) can hold.
_MIN_NS, _MAX_NS = 0, INT64_MAX


class Event:
    """One validated event or point, in InfluxDB's terms plus an id."""

    __slots__ = ("id", "time_ns", "measurement", "tags", "fields", "uid", "event", "stamped", "_json")

    def __init__(self, id: str, time_ns: int, measurement: str, tags: Dict[str, str],
                 fields: Dict[str, Scalar], uid: Optional[str] = None, event: Optional[str] = None,
                 stamped: bool = False) -> None:
        self.id = id
        self.time_ns = time_ns
        # True when time_ns is the receive time (the client sent none): the durable log may move
        # it a few ns on so that no two events of the host share one (statskit.sinks.sqlite).
        self.stamped = stamped
        self.measurement = measurement
        self.tags = tags
        self.fields = fields
        self.uid = uid
        self.event = event
        self._json: Optional[str] = None

    @property
    def is_point(self) -> bool:
        return self.event is None

    @property
    def name(self) -> str:
        """What metrics count it under: the event name, or the measurement of a point."""
        return self.event if self.event is not None else self.measurement

    def to_dict(self) -> Dict[str, Any]:
        """The stored form, as ``GET /log/event/{id}`` answers it."""
        out: Dict[str, Any] = {"event_id": self.id, "time": format_time(self.time_ns), "measurement": self.measurement}
        if self.is_point:
            out["tags"] = dict(self.tags)
            out["fields"] = dict(self.fields)
            return out
        out["uid"] = self.uid
        out["event"] = self.event
        extra = {k: v for k, v in self.tags.items() if k not in ("uid", "event")}
        if extra:
            out["tags"] = extra
        out.update(self.fields)
        return out

    def to_json(self) -> str:
        """``to_dict()`` as compact JSON, computed once: the stdout and SQLite sinks share it."""
        if self._json is None:
            self._json = _dumps(self.to_dict())
        return self._json

    @classmethod
    def from_dict(cls, data: Dict[str, Any], time_ns: Optional[int] = None) -> "Event":
        """The inverse of :meth:`to_dict` (how stores read events back); ``time_ns`` when the
        store kept it exactly (the JSON has microseconds)."""
        data = dict(data)
        event_id, stamp = data.pop("event_id"), data.pop("time")
        if time_ns is None:
            time_ns = parse_time(stamp)
        measurement = data.pop("measurement")
        if "fields" in data and "uid" not in data:
            return cls(event_id, time_ns, measurement, data.get("tags") or {}, data["fields"])
        uid, name = data.pop("uid"), data.pop("event")
        tags = dict(data.pop("tags", None) or {})
        tags["uid"], tags["event"] = uid, name
        return cls(event_id, time_ns, measurement, tags, data, uid=uid, event=name)

    def __repr__(self) -> str:
        return f"Event({self.to_dict()!r})"


def new_id() -> str:
    """``entry_<32 hex>``, the shape stats-service v1 gave: 12 hex digits of milliseconds since
    the epoch, then 80 random bits. Time-ordered ids keep the store's unique index append-only
    (random ids made each batch commit touch hundreds of index pages) and tell a reader how
    fresh an id is."""
    return "entry_%012x%020x" % (_time.time_ns() // 1_000_000, _random.getrandbits(80))


# Ids need uniqueness, not secrecy (reading an event takes a token with the read scope), and
# os.urandom costs a system call per id. A generator seeded from the OS, re-seeded in every
# forked child so that two gunicorn workers never share a sequence.
_random = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def id_time(event_id: str) -> Optional[float]:
    """When a statskit-made id was created (epoch seconds), or None for other ids."""
    if len(event_id) != 38 or not event_id.startswith("entry_"):
        return None
    try:
        return int(event_id[6:18], 16) / 1000.0
    except ValueError:
        return None


_second_cache: Dict[int, str] = {}


def format_time(time_ns: int) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-11-22T10:00:00.123456Z``."""
    seconds, ns = divmod(time_ns, 1_000_000_000)
    stamp = _second_cache.get(seconds)
    if stamp is None:  # strftime is the slow part; events of one batch share their second
        if len(_second_cache) > 1024:
            _second_cache.clear()
        stamp = _second_cache[seconds] = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns // 1000:06d}Z"


def parse_time(value: Any, field: str = "time") -> int:
    """Nanoseconds since the epoch from an RFC 3339 string or an epoch number.

    Numbers are read as seconds, or as ms/us/ns when they are too large to be seconds
    (what JavaScript's ``Date.now()`` and InfluxDB clients send).
    """
    if isinstance(value, bool):
        raise ValidationError(f"{field} must be an RFC 3339 string or epoch number, not a boolean", field=field)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValidationError(f"{field} must be finite", field=field)
        magnitude = abs(value)
        scale = 10**9 if magnitude < 1e11 else 10**6 if magnitude < 1e14 else 10**3 if magnitude < 1e17 else 1
        # Integers stay integers: a float would round a nanosecond timestamp.
        ns = value * scale if isinstance(value, int) else int(round(value * scale))
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(f"{field} is not an RFC 3339 time: {value[:64]!r}", field=field) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)  # naive times are UTC, as utcnow().isoformat() sends
        delta = parsed - datetime(1970, 1, 1, tzinfo=timezone.utc)
        ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    else:
        raise ValidationError(f"{field} must be an RFC 3339 string or epoch number", field=field)
    if not _MIN_NS <= ns <= _MAX_NS:
        raise ValidationError(f"{field} is outside 1970-01-01 .. 2262-04-11", field=field)
    return ns


_good_names: set = set()  # field names repeat across events: check each once (bounded)


def _check_name(key: Any, what: str, index: Optional[int]) -> str:
    if key in _good_names:
        return key
    if not isinstance(key, str) or len(key) > MAX_NAME_LENGTH or not _NAME.match(key):
        raise ValidationError(
            f"{what} name {str(key)[:64]!r} is invalid: use letters, digits, '_', '.', '-' "
            f"(not starting with a digit, '.' or '-'), at most {MAX_NAME_LENGTH} characters",
            field=str(key)[:64], index=index)
    if len(_good_names) < 10_000:
        _good_names.add(key)
    return key


def _check_text(value: Any, field: str, index: Optional[int], allow_int: bool = False) -> str:
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_LENGTH or _CONTROL.search(value):
        raise ValidationError(
            f"{field} must be a non-empty string of at most {MAX_TEXT_LENGTH} characters without control characters",
            field=field, index=index)
    return value


def _check_scalar(key: str, value: Any, index: Optional[int]) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"field {key!r} must be a finite number", field=key, index=index)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise ValidationError(f"field {key!r} does not fit a 64-bit integer", field=key, index=index)
    return value


def _flatten_fields(obj: Dict[str, Any], out: Dict[str, Scalar], prefix: str, depth: int, index: Optional[int]) -> None:
    for key, value in obj.items():
        name = _check_name(prefix + key if isinstance(key, str) else key, "field", index)
        if name in _RESERVED_KEYS:
            raise ValidationError(f"field name {name!r} is reserved by InfluxDB (it would be dropped there)",
                                  field=name, index=index)
        if value is None:
            continue  # JSON null: nothing to store, as InfluxDB has no nulls
        if isinstance(value, (str, bool, int, float)):
            if name in out:  # {"a_b": 1, "a": {"b": 2}}: one value would silently be lost
                raise ValidationError(f"field {name!r} is given twice (a nested object flattens to the same name)",
                                      field=name, index=index)
            out[name] = _check_scalar(name, value, index)
        elif isinstance(value, dict):
            if depth >= MAX_FLATTEN_DEPTH:
                raise ValidationError(f"field {name!r} is nested more than {MAX_FLATTEN_DEPTH} levels", field=name, index=index)
            _flatten_fields(value, out, name + "_", depth + 1, index)
        else:
            raise ValidationError(
                f"field {name!r} must be a string, number, boolean, null or object, not {type(value).__name__}",
                field=name, index=index)


def _parse_tags(tags: Any, index: Optional[int]) -> Dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise ValidationError("tags must be an object", field="tags", index=index)
    out: Dict[str, str] = {}
    for key, value in tags.items():
        _check_name(key, "tag", index)
        if key in _RESERVED_KEYS:
            raise ValidationError(f"tag name {key!r} is reserved by InfluxDB (it refuses such points)",
                                  field=key, index=index)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"tag {key!r} must be finite", field=key, index=index)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)  # stats-service stringified tag values
        elif not isinstance(value, str):
            raise ValidationError(f"tag {key!r} must be a string, number or boolean", field=key, index=index)
        if _CONTROL.search(value) or len(value) > MAX_TEXT_LENGTH:
            raise ValidationError(f"tag {key!r} must be at most {MAX_TEXT_LENGTH} characters without control characters",
                                  field=key, index=index)
        if value:
            out[key] = value
    return out


def _event_id(obj: Dict[str, Any], index: Optional[int]) -> str:
    """The client's ``event_id`` (lower-cased; retries with it store once), or a new one."""
    event_id = obj.get("event_id")
    if event_id is None:
        return new_id()
    if not isinstance(event_id, str) or not _EVENT_ID.match(event_id.strip().lower()):
        raise ValidationError("event_id must be 1-64 characters of letters, digits, '_' or '-'", field="event_id", index=index)
    return event_id.strip().lower()


def parse_event(obj: Dict[str, Any], *, table_name: str = "analytics", now_ns: Optional[int] = None,
                index: Optional[int] = None, stamp_now: bool = False) -> Event:
    """Validate a stats-service v1 event dict (``uid`` and ``event`` required).

    ``stamp_now``: add a ``now`` field (the receive time, float seconds) when the event has
    none, as stats-service v1 did (the server sets it; the library leaves events as given)."""
    if "uid" not in obj or obj["uid"] is None:
        hint = "; a single object is an event {uid, event, ...}, send points as a list" if "measurement" in obj else ""
        raise ValidationError("missing 'uid'" + hint, field="uid", index=index)
    if "event" not in obj or obj["event"] is None:
        raise ValidationError("missing 'event'", field="event", index=index)
    uid = _check_text(obj["uid"], "uid", index, allow_int=True)
    name = _check_text(obj["event"], "event", index)
    tags = _parse_tags(obj.get("tags"), index)
    tags["uid"], tags["event"] = uid, name
    event_id = _event_id(obj, index)
    time_ns = parse_time(obj["time"]) if obj.get("time") is not None else (now_ns or _time.time_ns())
    fields: Dict[str, Scalar] = {}
    for reserved in _RESERVED_FIELDS:
        if reserved in obj:
            raise ValidationError(f"{reserved!r} is reserved in an event with uid/event; "
                                  "send points as {measurement, tags, fields}", field=reserved, index=index)
    rest = {k: v for k, v in obj.items() if k not in ("uid", "event", "tags", "event_id", "time")}
    _flatten_fields(rest, fields, "", 0, index)
    if stamp_now and "now" not in fields:
        fields["now"] = (now_ns or _time.time_ns()) / 1e9
    return Event(event_id, time_ns, table_name, tags, fields, uid=uid, event=name, stamped=obj.get("time") is None)


def parse_point(obj: Dict[str, Any], *, now_ns: Optional[int] = None, index: Optional[int] = None) -> Event:
    """Validate a stats-service v2 point ``{measurement, tags, fields[, time]}``."""
    measurement = _check_text(obj.get("measurement"), "measurement", index)
    tags = _parse_tags(obj.get("tags"), index)
    raw_fields = obj.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise ValidationError("fields must be a non-empty object", field="fields", index=index)
    fields: Dict[str, Scalar] = {}
    _flatten_fields(raw_fields, fields, "", 0, index)
    if not fields:
        raise ValidationError("fields has no non-null value", field="fields", index=index)
    time_ns = parse_time(obj["time"]) if obj.get("time") is not None else (now_ns or _time.time_ns())
    return Event(_event_id(obj, index), time_ns, measurement, tags, fields, stamped=obj.get("time") is None)


def parse_item(obj: Any, *, table_name: str = "analytics", now_ns: Optional[int] = None,
               index: Optional[int] = None, stamp_now: bool = False) -> Event:
    """An event, or a point when it has ``measurement`` and neither ``uid`` nor ``event``
    (``stamp_now``: see :func:`parse_event`)."""
    if not isinstance(obj, dict):
        raise ValidationError(f"expected a JSON object, got {_json_type(obj)}", index=index)
    if "measurement" in obj and "uid" not in obj and "event" not in obj:
        return parse_point(obj, now_ns=now_ns, index=index)
    return parse_event(obj, table_name=table_name, now_ns=now_ns, index=index, stamp_now=stamp_now)


def parse_items(objs: List[Any], *, table_name: str = "analytics", stamp_now: bool = False) -> List[Event]:
    """Validate a whole batch; the first bad item raises, so a batch is taken whole or not at all.

    The items without a ``time`` get the receive time 1 ns apart, in order: InfluxDB keeps one
    point per series and time, and distinct times cost nothing to give here."""
    now_ns = _time.time_ns()
    return [parse_item(obj, table_name=table_name, now_ns=now_ns + i, index=i, stamp_now=stamp_now)
            for i, obj in enumerate(objs)]


def _json_type(obj: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(obj), "a number")


def decode_json(body: bytes) -> Any:
    """One JSON document, or a 400 that says where it broke."""
    if not body.strip():
        raise ValidationError("empty body: expected JSON")
    try:
        # orjson: strict RFC 8259 (UTF-8 only, no NaN), nesting capped, 2-5x the stdlib's speed.
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def decode_batch(body: bytes, max_items: int) -> List[Any]:
    """A JSON array, or NDJSON (one JSON object per line)."""
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        items = decode_json(body)
        if not isinstance(items, list):
            raise ValidationError("expected a JSON array or NDJSON")
    else:
        items = []
        for lineno, line in enumerate(body.splitlines(), 1):
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise ValidationError(f"malformed NDJSON on line {lineno}: {exc}", index=len(items)) from None
        if not items:
            raise ValidationError("empty body: expected a JSON array or NDJSON")
    if len(items) > max_items:
        raise TooLarge(f"{len(items)} events in one request; the limit is {max_items}")
    return items


def check_item_sizes(items: Iterable[Any], body_length: int, max_event_bytes: int) -> None:
    """413 for any single item larger than ``max_event_bytes`` once encoded.

    Skipped when the whole body is within the limit, which is the common case and free.
    """
    if body_length <= max_event_bytes:
        return
    for i, item in enumerate(items):
        size = len(orjson.dumps(item))
        if size > max_event_bytes:
            raise TooLarge(f"event {i} is {size} bytes; the limit is {max_event_bytes}", index=i)
