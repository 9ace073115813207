"""The session log lines on stdout, exactly as the original receiver wrote them.

One line per payload, so that a Loki/promtail pipeline built for the original keeps parsing:

* logfmt (default), go-kit style with no timestamp::

    level=info msg="Received session data" uuid=... type=heartbeat has_focus=true host=https://grafana.example.com: build="(commit=615c153b3a, edition=Open Source, env=production, version=7.5.4)" ...

  keys in the original's order (msg, uuid, type, has_focus, host, build, license, dashboard_*,
  user_*, time_*, timeorigin, time), then one key per dashboard variable whose value is
  ``(label=..., type=..., multi=..., count=N, values=[a,b])``. Quoting is go-logfmt's
  (:mod:`statskit.logfmt`); a variable name loses the characters a key cannot hold, and a
  variable whose name is then empty drops the whole line, as go-logfmt did.
* ``--log-format=json``: the same pairs as one JSON object with sorted keys (a variable named
  like a fixed key overwrites it, as in the original's Go map);
* ``--log-raw``: ``{"data": <the whole payload as the Go struct>, "level": "info", "msg":
  "Received session data"}`` (variables ``[]`` with ``--disable-variable-log``, ``null`` when
  absent);
* ``--disable-variable-log`` leaves the variables out; ``--disable-session-log`` writes no
  session lines.

A payload of an unknown type also gets ``level=warn msg="Session has invalid type, defaulted to
heartbeat" uuid=... type=...`` (JSON with ``--log-format=json`` or ``--log-raw``).

Non-string variable values, which crashed the original, are written as text (see
:func:`statskit.grafana.payload.value_text`). Lines are written in whole lines even when several workers
share stdout (with the server, by the thread that applies payloads, one write per batch).
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Sequence, Tuple

import orjson

from ..logfmt import clean_key, encode_line, format_value, needs_cleaning
from .payload import Payload

MSG = "Received session data"
INVALID_TYPE_MSG = "Session has invalid type, defaulted to heartbeat"
STARTING_MSG = "Starting server for macropower-analytics-panel"
BUILD_MSG = "Build context"


def session_pairs_variables(p: Payload) -> List[Tuple[str, str]]:
    """One pair per dashboard variable: its name, and the original's description of it."""
    out = []
    for var in p.variables or ():
        texts = var.value_texts()
        out.append((var.name, f"(label={var.label}, type={var.type}, multi={'true' if var.multi else 'false'}, "
                              f"count={len(texts)}, values=[{','.join(texts)}])"))
    return out


def session_pairs(p: Payload, variables: bool = True) -> List[Tuple[str, Any]]:
    """The original's key/value pairs for one payload, in its order (``level`` first)."""
    h, bi, li, u, tr = p.host, p.host.build_info, p.host.license_info, p.user, p.time_range
    pairs: List[Tuple[str, Any]] = [
        ("level", "info"),
        ("msg", MSG),
        ("uuid", p.uuid),
        ("type", p.type),
        ("has_focus", p.has_focus),
        ("host", f"{h.protocol}//{h.hostname}:{h.port}"),
        ("build", f"(commit={bi.commit}, edition={bi.edition}, env={bi.env}, version={bi.version})"),
        ("license", f"(state={li.state_info}, expiry={li.expiry}, license={'true' if li.has_license else 'false'})"),
        ("dashboard_name", p.dashboard.name),
        ("dashboard_uid", p.dashboard.uid),
        ("dashboard_timezone", p.time_zone),
        ("user_id", u.id),
        ("user_login", u.login),
        ("user_email", u.email),
        ("user_name", u.name),
        ("user_theme", u.theme),
        ("user_role", u.role),
        ("user_locale", u.locale),
        ("user_timezone", u.timezone),
        ("time_from", tr.from_),
        ("time_to", tr.to),
        ("time_from_raw", tr.raw.from_),
        ("time_to_raw", tr.raw.to),
        ("timeorigin", p.time_origin),
        ("time", p.time),
    ]
    if variables:
        pairs += session_pairs_variables(p)
    return pairs


# The fixed keys are valid logfmt keys: only variable names need cleaning.
_FIXED_KEYS = frozenset(k for k, _ in session_pairs(Payload()))


def logfmt_line(pairs: Sequence[Tuple[str, Any]]) -> Optional[str]:
    """go-kit's logfmt line, or None when a key is empty once cleaned (go-logfmt drops the line)."""
    return encode_line(pairs, _FIXED_KEYS)


def session_logfmt(p: Payload, variables: bool = True) -> Optional[str]:
    """``logfmt_line(session_pairs(p, variables))``, written out: this runs for every payload."""
    h, bi, li, u, tr = p.host, p.host.build_info, p.host.license_info, p.user, p.time_range
    v = format_value
    parts = [
        'level=info msg="Received session data" uuid=', v(p.uuid),
        " type=", v(p.type),
        " has_focus=", "true" if p.has_focus else "false",
        " host=", v(f"{h.protocol}//{h.hostname}:{h.port}"),
        " build=", v(f"(commit={bi.commit}, edition={bi.edition}, env={bi.env}, version={bi.version})"),
        " license=", v(f"(state={li.state_info}, expiry={li.expiry}, license={'true' if li.has_license else 'false'})"),
        " dashboard_name=", v(p.dashboard.name),
        " dashboard_uid=", v(p.dashboard.uid),
        " dashboard_timezone=", v(p.time_zone),
        " user_id=", str(u.id),
        " user_login=", v(u.login),
        " user_email=", v(u.email),
        " user_name=", v(u.name),
        " user_theme=", "light" if u.light_theme else "dark",
        " user_role=", u.role,
        " user_locale=", v(u.locale),
        " user_timezone=", v(u.timezone),
        " time_from=", str(tr.from_),
        " time_to=", str(tr.to),
        " time_from_raw=", v(tr.raw.from_),
        " time_to_raw=", v(tr.raw.to),
        " timeorigin=", str(p.time_origin),
        " time=", str(p.time),
    ]
    if variables and p.variables:
        for var in p.variables:
            key = var.name
            if not key or needs_cleaning(key):
                key = clean_key(key)
                if not key:
                    return None
            texts = var.value_texts()
            parts += (" ", key, "=", v(f"(label={var.label}, type={var.type}, multi={'true' if var.multi else 'false'}, "
                                       f"count={len(texts)}, values=[{','.join(texts)}])"))
    return "".join(parts)


def json_line(pairs: Sequence[Tuple[str, Any]]) -> str:
    """go-kit's JSON line: one object, keys sorted, later duplicates winning."""
    return go_json(dict(pairs), sort_keys=True)


def raw_line(p: Payload, variables: bool = True) -> str:
    """``--log-raw``: the decoded payload as the Go struct, fields in struct order."""
    data = p.to_go_json()
    if not variables and data["variables"] is not None:
        data["variables"] = []
    return '{"data":' + go_json(data) + ',"level":"info","msg":"' + MSG + '"}'


def invalid_type_pairs(p: Payload) -> List[Tuple[str, Any]]:
    return [("level", "warn"), ("msg", INVALID_TYPE_MSG), ("uuid", p.uuid), ("type", p.type)]


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)|[\u2028\u2029]")
_GO_ESCAPES = {"b": "\\u0008", "f": "\\u000c", "/": "/"}


def _go_escape(match: "re.Match[str]") -> str:
    text = match.group(0)
    if text in "\u2028\u2029":
        return "\\u%04x" % ord(text)
    return _GO_ESCAPES.get(match.group(1), text)


def go_json(obj: Any, sort_keys: bool = False) -> str:
    """JSON as Go's encoder writes it (SetEscapeHTML(false)): compact, no ASCII escaping, but
    U+2028/U+2029 escaped and \\b, \\f written as \\u0008, \\u000c."""
    try:
        text = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS if sort_keys else 0).decode()
    except TypeError:  # an integer beyond 64 bits among variable values
        import json

        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    if "\\" in text or "\u2028" in text or "\u2029" in text:
        text = _ESCAPE.sub(_go_escape, text)
    return text


class SessionLog:
    """Formats a payload's lines and writes them to ``fd`` (stdout) with whole-line writes,
    or hands them to ``write`` (a callable taking a list of lines, e.g. in tests)."""

    def __init__(self, fmt: str = "logfmt", raw: bool = False, variables: bool = True, enabled: bool = True,
                 fd: int = 1, write: Optional[Callable[[List[str]], None]] = None) -> None:
        if fmt not in ("logfmt", "json"):
            raise ValueError(f"[grafana] log_format must be logfmt or json, not {fmt!r}")
        self.json = fmt == "json" or raw  # --log-raw forces the JSON logger, as in the original
        self.raw = raw
        self.variables = variables
        self.enabled = enabled
        self.fd = fd
        self._write = write

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> "SessionLog":
        g = settings.grafana
        return cls(g.log_format, raw=g.log_raw, variables=not g.disable_variable_log,
                   enabled=not g.disable_session_log, **kwargs)

    def startup_lines(self) -> List[str]:
        """The original receiver's two start-up lines (statskit's version; Python for Go)."""
        import platform

        from .. import __version__

        lines = []
        for pairs in ([("level", "info"), ("msg", STARTING_MSG), ("version", __version__), ("branch", ""),
                       ("revision", "")],
                      [("level", "info"), ("msg", BUILD_MSG), ("go", "python" + platform.python_version()),
                       ("user", ""), ("date", "")]):
            lines.append((json_line(pairs) if self.json else logfmt_line(pairs)) or "")
        return lines

    def format_session(self, p: Payload) -> Optional[str]:
        """The "Received session data" line (None when go-logfmt would have dropped it)."""
        if self.raw:
            return raw_line(p, self.variables)
        if self.json:
            return json_line(session_pairs(p, self.variables))
        return session_logfmt(p, self.variables)

    def format_invalid_type(self, p: Payload) -> str:
        pairs = invalid_type_pairs(p)
        return (json_line(pairs) if self.json else logfmt_line(pairs)) or ""

    def lines(self, p: Payload, step: Any) -> List[str]:
        """What the original logged for a payload once processed: the invalid-type warning
        (for a payload of an unknown type, on a saved dashboard), then the session line."""
        out = []
        if p.type != step.kind and p.dashboard.uid != "new":
            out.append(self.format_invalid_type(p))
        if self.enabled:
            line = self.format_session(p)
            if line is not None:
                out.append(line)
        return out

    def write(self, lines: List[str]) -> None:
        if not lines:
            return
        if self._write is not None:
            self._write(lines)
            return
        from ..sinks.stdout import write_lines

        write_lines(self.fd, lines)
