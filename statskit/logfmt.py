"""logfmt lines, quoted exactly as go-logfmt does (so pipelines built for the Go originals parse them).

    >>> encode_line([("msg", "Received session data"), ("ok", True), ("empty", "")])
    'msg="Received session data" ok=true empty='
"""
from __future__ import annotations

import re
from typing import Any, Collection, Dict, Iterable, Optional, Tuple

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# go-logfmt's rules as regular expressions: a value is quoted iff it holds one of _QUOTE_IF
# (space and below, '=', '"', U+FFFD); inside quotes only _ESCAPE_IF characters change. A
# session log line has ~30 values: a regex search is ~10x faster than a loop over characters.
_QUOTE_IF = re.compile(r'[\x00- ="\ufffd]')
_ESCAPE_IF = re.compile(r'[\x00-\x1f\\"\ufffd]')
_formatted: Dict[str, str] = {}  # most values repeat from line to line
_CACHE_SIZE, _CACHEABLE = 4096, 256


def _quote(text: str) -> str:
    # go-logfmt's writeQuotedString: bytes below 0x20 as \u00XX (DEL stays as it is), and
    # U+FFFD (what invalid UTF-8 decodes to) as the escape \ufffd.
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\ufffd":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _format_text(text: str) -> str:
    if _QUOTE_IF.search(text) is None:
        return text
    if _ESCAPE_IF.search(text) is None:
        return '"' + text + '"'
    return _quote(text)


def format_value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        done = _formatted.get(value)
        if done is None:
            done = _format_text(value)
            if len(value) <= _CACHEABLE:
                if len(_formatted) >= _CACHE_SIZE:
                    _formatted.clear()  # bounded: a burst of unique values only costs a refill
                _formatted[value] = done
        return done
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)  # digits and '-': never quoted
    return _format_text(value if isinstance(value, str) else str(value))


def needs_cleaning(key: str) -> bool:
    """Whether ``key`` is empty or holds a rune go-logfmt drops from keys."""
    return not key or _QUOTE_IF.search(key) is not None


def clean_key(key: str) -> str:
    """go-logfmt drops the runes a key may not hold (space, '=', '"', U+FFFD and below)."""
    return _QUOTE_IF.sub("", key)


def encode_line(pairs: Iterable[Tuple[str, Any]], clean: Collection[str] = ()) -> Optional[str]:
    """One line without the newline; ``None`` when a key is empty once cleaned (go-logfmt drops
    the whole line then). Keys in ``clean`` are known to be valid and are not checked."""
    parts = []
    for key, value in pairs:
        if key not in clean and needs_cleaning(key):
            key = clean_key(key)
            if not key:
                return None
        parts.append(key + "=" + format_value(value))
    return " ".join(parts)
