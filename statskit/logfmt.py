"""logfmt lines, quoted exactly as go-logfmt does (so pipelines built for the Go originals parse them).

    >>> encode_line([("msg", "Received session data"), ("ok", True), ("empty", "")])
    'msg="Received session data" ok=true empty='
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _needs_quotes(text: str) -> bool:
    return any(ch <= " " or ch in '="\ufffd' for ch in text)


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


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = value if isinstance(value, str) else str(value)
    return _quote(text) if _needs_quotes(text) else text


def clean_key(key: str) -> str:
    """go-logfmt drops the runes a key may not hold (space, '=', '"', U+FFFD and below)."""
    return "".join(ch for ch in key if not (ch <= " " or ch in '="\ufffd'))


def encode_line(pairs: Iterable[Tuple[str, Any]]) -> Optional[str]:
    """One line without the newline; ``None`` when a key is empty once cleaned (go-logfmt drops
    the whole line then)."""
    parts = []
    for key, value in pairs:
        k = clean_key(key)
        if not k:
            return None
        parts.append(k + "=" + format_value(value))
    return " ".join(parts)
