"""From one Caddy JSON access-log line to indicator inputs (the original's generators).

    >>> from statskit.kpi.packages import Package
    >>> gens = Generators([Package("Wikipedia", "zim", "kiwix.box", zim="wikipedia_en")])
    >>> line = parse_line(b'{"level":"info","ts":1700000000.5,"msg":"handled request","status":200,'
    ...                   b'"request":{"host":"kiwix.box","uri":"/content/wikipedia_en/","method":"GET"},'
    ...                   b'"resp_headers":{}}')
    >>> [(i.kind, i.package) for i in gens.inputs(line)]
    [('home_visit', 'Wikipedia'), ('request', 'Wikipedia')]
    >>> parse_line(b'{"level":"error","msg":"handled request"}')
    Traceback (most recent call last):
    ...
    statskit.kpi.inputs.Skipped: not_handled_request
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import orjson

from .packages import Package

HOME_VISIT, REQUEST, FILE_CREATED, FILE_DELETED, CLOCK_TICK = (
    "home_visit", "request", "FILE_CREATED", "FILE_DELETED", "clock_tick")
EVENT, EVENT_UID = "event", "event_uid"  # from statskit's event stream (statskit.kpi.events)
CUSTOM = "custom"  # for a third-party indicator (statskit.kpi.extensions): its id and dimension
EDUPI = "edupi.offspot.kiwix.org"
FILE_MANAGER = "file-manager.offspot.kiwix.org"
_loads = orjson.loads
_ZIM_URI = re.compile(r"^/content/(?P<zim>[^/]+)(/.*)?$")
#: Distinct (host, uri, method, status) whose inputs are remembered (the same pages recur).
CACHE_SIZE = 65536
_EDUPI_DELETE = re.compile(r"^/api/documents/[^/]+/?$")


class Skipped(ValueError):
    """A line that gives no input; ``reason`` is the label counted in ``/metrics``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LogLine(NamedTuple):  # a NamedTuple: built ~3x faster than a frozen dataclass, per line
    ts: float
    host: str
    uri: str
    method: str
    status: int
    headers: Dict[str, Any]

    def header(self, name: str) -> Any:
        value = self.headers.get(name)
        if isinstance(value, list):  # Caddy logs each header as a list of values
            return value[0] if value else None
        return value


@dataclass(frozen=True)
class Input:
    kind: str
    package: str = ""
    count: int = 1
    indicator: int = 0  # CUSTOM only
    dimension: Tuple[str, ...] = ()  # CUSTOM only


def parse_line(raw: bytes) -> LogLine:
    """A handled-request line, or :class:`Skipped` (``not_json`` or ``not_handled_request``)."""
    return LogLine._make(parse_fields(raw))


Fields = Tuple[float, str, str, str, int, Dict[str, Any]]
#: Line times from the epoch to before the year 3000 (UTC); others are skipped as bad_timestamp.
MAX_TS = 32503680000.0


def parse_fields(raw: bytes) -> Fields:
    """:func:`parse_line` as a plain tuple (``ts, host, uri, method, status, headers``): the
    tailer's per-line path."""
    try:
        doc = _loads(raw)
    except orjson.JSONDecodeError:
        raise Skipped("not_json") from None
    try:
        if doc["msg"] != "handled request" or doc["level"] != "info":
            raise Skipped("not_handled_request")
        request, headers, status, ts = doc["request"], doc["resp_headers"], doc["status"], doc["ts"]
        host, uri, method = request["host"], request["uri"], request["method"]
    except (KeyError, TypeError, IndexError):
        raise Skipped("not_handled_request") from None
    if type(status) is not int:  # (type(): a JSON true is no status)
        if type(status) is str and status.isdigit():  # the original accepted "200"
            status = int(status)
        else:
            raise Skipped("not_handled_request")
    if type(ts) is not float:
        if type(ts) is not int:
            raise Skipped("not_handled_request")
        ts = float(ts)
    if type(headers) is not dict or type(host) is not str or type(uri) is not str or type(method) is not str:
        raise Skipped("not_handled_request")
    if not 0.0 <= ts < MAX_TS:  # (a time the calendar code cannot place would stop the processing)
        raise Skipped("bad_timestamp")
    return ts, host, uri, method, status, headers


#: The built-in log formats (others: :func:`.extensions.log_format`).
LOG_FORMATS: Dict[str, Any] = {"caddy": parse_fields}


def _count(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


class Generators:
    """The packages' generators, found by exact ``request.host``; each yields inputs for a line."""

    def __init__(self, packages: Sequence[Package], extra: Sequence[Any] = ()) -> None:
        self.extra = tuple(extra)  # third-party indicators (extensions.Indicator): every line, uncached
        self.per_line = bool(self.extra)  # lines of one request may give different inputs
        self.extra_errors = 0  # lines a third-party indicator failed on (its inputs dropped)
        if self.extra:  # (an attribute, so the per-line path without them stays as it was)
            self.inputs_of = self.with_extra  # type: ignore[method-assign]
        self.by_host: Dict[str, List[Package]] = {}
        for package in packages:
            self.by_host.setdefault(package.host, []).append(package)

        # File-manager inputs depend on response headers: never cached.
        self.uncached = {p.host for p in packages if p.kind == "app" and p.ident == FILE_MANAGER}
        self.cache: Dict[Tuple[str, str, str, int], List[Input]] = {}

    def inputs(self, line: LogLine) -> List[Input]:
        return self.inputs_of(line)

    def inputs_of(self, fields: Fields) -> List[Input]:
        """The inputs of a parsed line (:func:`parse_fields`); the same list object for the
        same request (host, uri, method, status) while it is cached (without third-party
        indicators: :meth:`with_extra` then)."""
        host = fields[1]
        if host in self.uncached:
            return self._inputs(LogLine._make(fields))
        key = (host, fields[2], fields[3], fields[4])
        found = self.cache.get(key)
        if found is None:
            if len(self.cache) >= CACHE_SIZE:
                self.cache.clear()
            found = self.cache[key] = self._inputs(LogLine._make(fields))
        return found

    def with_extra(self, fields: Fields) -> List[Input]:
        """:meth:`inputs_of` and the third-party indicators' inputs (a new list per line)."""
        return Generators.inputs_of(self, fields) + self._extra(LogLine._make(fields))

    def _extra(self, line: LogLine) -> List[Input]:
        """The third-party indicators' inputs; one that raises or gives a bad dimension loses
        its inputs of this line (counted), never the line or the batch."""
        found: List[Input] = []
        for indicator in self.extra:
            try:
                for dim in indicator.dimensions(line):
                    dim = (dim,) if isinstance(dim, str) else tuple(dim)
                    if len(dim) > 3 or not all(isinstance(v, str) for v in dim):
                        raise ValueError(f"a dimension is up to 3 strings, not {dim!r}")
                    found.append(Input(CUSTOM, indicator=indicator.indicator_id, dimension=dim))
            except Exception:
                self.extra_errors += 1
        return found

    def _inputs(self, line: LogLine) -> List[Input]:
        for package in self.by_host.get(line.host, ()):
            found = _generate(package, line)
            if found is not None:
                return found
        return []


def _generate(package: Package, line: LogLine) -> Optional[List[Input]]:
    title = package.title
    if package.kind == "zim":
        match = _ZIM_URI.match(line.uri)
        if not match or match.group("zim") != package.zim:
            return None
        rest = match.group(2)
        if not rest or rest == "/":
            return [Input(HOME_VISIT, title), Input(REQUEST, title)]
        return [Input(REQUEST, title)]
    if package.kind == "files":
        if line.uri == "/":
            return [Input(REQUEST, title), Input(HOME_VISIT, title)]
        return [Input(REQUEST, title)]
    # apps: never a home visit
    result = [Input(REQUEST, title)]
    if package.ident == EDUPI:
        if line.method == "POST" and line.status == 201 and line.uri == "/api/documents/":
            result.append(Input(FILE_CREATED, title, 1))
        elif line.method == "DELETE" and line.status == 204 and _EDUPI_DELETE.match(line.uri):
            result.append(Input(FILE_DELETED, title, 1))
    elif package.ident == FILE_MANAGER:
        added, deleted = _count(line.header("X-Tfm-Files-Added")), _count(line.header("X-Tfm-Files-Deleted"))
        if added:
            result.append(Input(FILE_CREATED, title, added))
        if deleted:
            result.append(Input(FILE_DELETED, title, deleted))
    return result
