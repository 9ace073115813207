"""The Grafana analytics panel's payload, decoded as the original Go receiver decoded it.

The panel (macropower-analytics-panel) posts one JSON object per start, heartbeat and end of a
dashboard view. :func:`decode_payload` reads it with the semantics of Go's ``json.Decoder`` into
the original's ``Payload`` struct, so that every body the original took is taken, and every body
it refused with a 400 is refused:

* only the first JSON value counts; bytes after it are ignored;
* keys match field names case-insensitively; unknown keys are ignored;
* ``null`` leaves a field at its zero value (``""``, ``0``, ``false``; lists become absent);
* a string, bool or int field given another JSON type is an error, and so is a float, an
  exponent or a value outside int64 for an int field (Go's ``int``), and a non-object where
  an object is expected.

Where the original was weak, statskit does better:

* a **flattened** payload (the panel's ``flatten`` option: npm ``flat``, keys such as
  ``"dashboard.uid"`` and ``"variables.0.name"``) is unflattened first, so it gets the same
  labels and log fields as a nested one (the original only saw its top-level keys);
* variable values that are not strings are kept (the original crashed when logging them);
  :func:`value_text` gives their text;
* a body that is not a JSON object with at least one payload key (``null``, ``{}``,
  ``{"foo": 1}``) is refused, since it cannot be a panel's payload (the original counted it).

    >>> p = decode_payload(b'{"UUID": "s1", "type": "start", "dashboard": {"uid": "abc"}, "time": 1618803734}')
    >>> p.uuid, p.type, p.dashboard.uid, p.time
    ('s1', 'start', 'abc', 1618803734)
    >>> decode_payload(b'{"dashboard.uid": "abc", "variables.0.name": "env"}').variables[0].name
    'env'
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Dict

import orjson

from ..errors import ValidationError
from .payload import Payload
from .structs import MAX_DEPTH, MAX_FLAT_INDEX, _fold, _json_type
from .structs import value_text as value_text  # re-exported: the payload's public helpers

# --------------------------------------------------------------------------- decoding


def decode_payload(body: bytes) -> Payload:
    """The payload in ``body``, or :class:`~statskit.errors.ValidationError` (a 400)."""
    data = _first_json_value(body)
    if type(data) is not dict:
        raise ValidationError(f"expected a JSON object (an analytics panel payload), got {_json_type(data)}")
    flattened = "." in "".join(data)  # one C-level scan instead of a generator over the keys
    if flattened:
        data = unflatten(data)
        if type(data) is not dict:  # {"0.a": 1} unflattens to a list
            raise ValidationError("expected a JSON object (an analytics panel payload), got a flattened array")
    if Payload._EXACT.isdisjoint(data) and not any(_fold(key) in Payload._FOLDED for key in data):
        raise ValidationError("not an analytics panel payload: none of its keys (uuid, type, dashboard, "
                              "user, time, ...) is present")
    payload = Payload.decode(data)
    payload.flattened = flattened
    return payload


def _first_json_value(body: bytes) -> Any:
    """The first JSON value in ``body``, as Go's ``Decoder.Decode`` reads it."""
    try:
        return orjson.loads(body)  # the common case: exactly one valid value
    except orjson.JSONDecodeError:
        pass
    # Trailing bytes, invalid UTF-8 (Go substitutes U+FFFD), integers beyond 64 bits in
    # variable values (Go reads them as float64): the slower, more lenient stdlib decoder.
    text = body.decode("utf-8", "replace").lstrip(" \t\r\n")
    if not text:
        raise ValidationError("empty body: expected an analytics panel payload (a JSON object)")
    try:
        value, _ = _LENIENT.raw_decode(text)
        return _scrub(value)
    except ValueError as exc:
        raise ValidationError(f"malformed JSON: {exc}") from None
    except RecursionError:  # (orjson refuses more than 1024 levels; this decoder recurses)
        raise ValidationError(f"payload nested deeper than {MAX_DEPTH} levels") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"invalid literal {name}")  # NaN, Infinity: not JSON, and Go refuses them


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e400: Go's decoder answers "cannot unmarshal number 1e400" (a 400)
        raise ValueError(f"number {text[:32]} is out of range for a 64-bit float")
    return number


_LENIENT = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(value: Any) -> Any:
    """Lone surrogates from ``\\ud800``-style escapes become U+FFFD, as in Go."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value



# --------------------------------------------------------------------------- flattened payloads


def unflatten(data: Dict[str, Any]) -> Dict[str, Any]:
    """Undo npm ``flat``: ``{"a.b": 1, "c.0.d": 2}`` -> ``{"a": {"b": 1}, "c": [{"d": 2}]}``.

    Objects whose keys are all list indexes (``0``..``N``, N below MAX_FLAT_INDEX) become lists,
    gaps filled with null. A flattened key wins over a plain value it conflicts with.
    """
    root: Dict[str, Any] = {}
    for key, value in data.items():
        parts = key.split(".")
        if len(parts) > MAX_DEPTH:
            raise ValidationError(f"flattened key {key[:64]!r}... has more than {MAX_DEPTH} parts")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        last = parts[-1]
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            node[last].update(value)
        else:
            node[last] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    for key, value in node.items():
        if isinstance(value, dict):
            node[key] = _listify(value)
    if node and all(k.isdigit() and k.isascii() for k in node):
        indexes = {int(k): v for k, v in node.items()}
        top = max(indexes)
        if top < MAX_FLAT_INDEX:
            return [indexes.get(i) for i in range(top + 1)]
    return node
