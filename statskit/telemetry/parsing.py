"""Telemetry frames as the original read them: one JSON object per websocket frame.

Two shapes arrive: the flat message the original read (``{"msg": ..., "ts": ..., ...}``) and
the envelope current substrate nodes send (``{"id": 1, "ts": ..., "payload": {"msg": ...}}``).
An envelope is stored as the flat object its payload describes, with the envelope's ``ts``
(and ``id`` as ``envelope_id``), so that queries on ``logs->>'msg'`` work for both.

    >>> m = parse_frame(b'{"msg": "system.interval", "ts": "2021-07-12T10:01:01.123456789+02:00", "peers": 3}')
    >>> m.msg, m.created_at
    ('system.interval', '2021-07-12T08:01:01.123456')
    >>> parse_frame('{"id": 1, "ts": "2021-07-12T10:01:01Z", "payload": {"msg": "block.import", "height": 5}}').logs
    {'msg': 'block.import', 'height': 5, 'ts': '2021-07-12T10:01:01Z', 'envelope_id': 1}
    >>> parse_frame(b'{"msg": "x"}')
    Traceback (most recent call last):
    ...
    statskit.telemetry.parsing.FrameError: no_ts: the message has no "ts" field
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional, Union

import orjson

#: Why a frame was not stored: the label of ``statskit_telemetry_rejected_total``.
REASONS = ("invalid_json", "not_object", "no_ts", "bad_ts")

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z")
_EPOCH = datetime(1970, 1, 1)


class FrameError(ValueError):
    """A frame that is not stored; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class Message:
    """One storable message: its UTC time (naive, microseconds, ISO), type and whole object."""

    created_at: str
    msg: str
    logs: Dict[str, Any]


def parse_rfc3339(text: Any) -> datetime:
    """A naive UTC datetime from an RFC 3339 string (any number of fraction digits; beyond
    microseconds truncated), as chrono's ``parse_from_rfc3339`` + ``naive_utc`` in the original.

    >>> parse_rfc3339("2020-03-25T13:17:09.008533-01:30")
    datetime.datetime(2020, 3, 25, 14, 47, 9, 8533)
    """
    when, _ = _parse(text)
    return when


def _parse(text: Any) -> "tuple[datetime, Optional[str]]":
    """The UTC datetime, and its stored form when it can be had without formatting (UTC input)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text[:64]!r}")
    g = m.groups()
    frac = (g[6] or "")[:6].ljust(6, "0")
    second = int(g[5])
    if second == 60:  # a leap second, which RFC 3339 allows: the last microsecond of its minute
        second, frac = 59, "999999"
    when = datetime(int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]), second, int(frac))  # checks ranges
    if g[7] is not None or (g[9] == "00" and g[10] == "00"):  # Z or +00:00: already UTC
        return when, f"{g[0]}-{g[1]}-{g[2]}T{g[3]}:{g[4]}:{second:02d}.{frac}"
    hours, minutes = int(g[9]), int(g[10])
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad UTC offset in {text[:64]!r}")
    offset = timedelta(hours=hours, minutes=minutes)
    return (when - offset if g[8] == "+" else when + offset), None


def format_utc(when: datetime) -> str:
    """The stored form: fixed-width ISO (always 6 fraction digits), so text order is time order."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")


def now_utc() -> str:
    return format_utc(datetime.now(timezone.utc).replace(tzinfo=None))


def decode(data: Union[bytes, str]) -> Dict[str, Any]:
    """The JSON object of a frame (text or binary), or :class:`FrameError`."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError("invalid_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise FrameError("not_object", f"a frame must hold a JSON object, not {type(obj).__name__}")
    return obj


def flatten_envelope(obj: Dict[str, Any]) -> Dict[str, Any]:
    """The flat message of an envelope ``{"id", "ts", "payload": {...}}``; other objects as they are."""
    payload = obj.get("payload")
    if isinstance(payload, dict) and "msg" not in obj and "msg" in payload:
        flat = dict(payload)
        if "ts" in obj and "ts" not in flat:
            flat["ts"] = obj["ts"]
        if "id" in obj:
            flat["envelope_id"] = obj["id"]
        return flat
    return obj


def to_message(obj: Dict[str, Any]) -> Message:
    """A storable :class:`Message` from a flat object; it needs an RFC 3339 ``ts``."""
    if "ts" not in obj:
        raise FrameError("no_ts", 'the message has no "ts" field')
    try:
        when, stored = _parse(obj["ts"])
    except (ValueError, OverflowError) as exc:
        raise FrameError("bad_ts", str(exc)) from None
    msg = obj.get("msg")
    return Message(stored or format_utc(when), msg if isinstance(msg, str) else "", obj)


def parse_frame(data: Union[bytes, str]) -> Message:
    return to_message(flatten_envelope(decode(data)))


@dataclass
class NodeInfo:
    """What ``system.connected`` says about a node (the connection row's columns)."""

    peer_id: str
    name: Optional[str] = None
    chain: Optional[str] = None
    version: Optional[str] = None
    authority: Optional[bool] = None
    startup_time: Optional[int] = None
    implementation: Optional[str] = None


def node_info(obj: Dict[str, Any]) -> Optional[NodeInfo]:
    """The peer id (and node details) a message reveals, by the original's rules:
    ``system.connected`` gives ``network_id`` and the node's details; otherwise the older
    ``state.peerId`` or ``network_state.peerId`` give the peer id alone.

    >>> node_info({"msg": "system.connected", "network_id": "Qm1", "name": "n", "startup_time": "1625"})
    NodeInfo(peer_id='Qm1', name='n', chain=None, version=None, authority=None, startup_time=1625, implementation=None)
    >>> node_info({"msg": "system.network_state", "state": {"peerId": "Qm2"}}).peer_id
    'Qm2'
    >>> node_info({"msg": "system.interval"}) is None
    True
    """
    if obj.get("msg") == "system.connected":
        peer_id = obj.get("network_id")
        if not isinstance(peer_id, str) or not peer_id:
            return None
        return NodeInfo(peer_id, _str(obj.get("name")), _str(obj.get("chain")), _str(obj.get("version")),
                        obj.get("authority") if isinstance(obj.get("authority"), bool) else None,
                        _int(obj.get("startup_time")), _str(obj.get("implementation")))
    for key in ("state", "network_state"):
        inner = obj.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("peerId"), str) and inner["peerId"]:
            return NodeInfo(inner["peerId"])
    return None


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _int(value: Any) -> Optional[int]:
    """``startup_time`` is a string of milliseconds in the original ("parsed as i64")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if -2**63 <= number < 2**63 else None


def dumps(obj: Dict[str, Any]) -> str:
    """The stored JSON text of a message (non-string keys and big ints kept as orjson allows)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # integers beyond 64 bits: orjson refuses them, the stdlib writes them
        import json

        return json.dumps(obj, separators=(",", ":"))
