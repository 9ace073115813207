"""The original's JSON endpoints over any telemetry store, independent of the web framework:
each function takes the store and a ``get(name) -> str or None`` for the query parameters and
returns what the route sends, or raises a :class:`~statskit.errors.StatskitError` (400 naming
the parameter, 404 for an unknown benchmark).

Times in parameters are the original's naive UTC ``YYYY-MM-DDTHH:MM:SS[.f]``; times in answers
are chrono's rendering of a naive time (fraction only when there is one: 3, 6 digits).

    >>> chrono("2020-03-25T13:17:09.008533"), chrono("2020-03-25T13:17:09.500000"), chrono("2020-03-25T13:17:09.000000")
    ('2020-03-25T13:17:09.008533', '2020-03-25T13:17:09.500', '2020-03-25T13:17:09')
    >>> parse_time("2020-03-25T13:17:09.0085339", "start_time")
    '2020-03-25T13:17:09.008533'
    >>> pretty_size(8192), pretty_size(123456), pretty_size(98765432)
    ('8192 bytes', '121 kB', '94 MB')
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import __version__
from ..errors import NotFound, ValidationError
from .parsing import now_utc
from .store import TelemetryStore

Get = Callable[[str], Optional[str]]

#: /nodes/logs: the original's default limit, and statskit's maximum (page on with ``cursor``).
LOGS_DEFAULT_LIMIT = LOGS_MAX_LIMIT = 10000
REPUTATION_DEFAULT_LIMIT, REPUTATION_PEER_DEFAULT_LIMIT, REPUTATION_MAX_LIMIT = 100, 1000, 10000
REPUTATION_DEFAULT_MAX_AGE = 60
#: The original's JSON body limit of the benchmark routes.
BENCHMARK_BODY_LIMIT = 4096
EPOCH = "1970-01-01T00:00:00.000000"

_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\Z")


def parse_time(text: str, field: str) -> str:
    """The stored form of a naive ``YYYY-MM-DDTHH:MM:SS[.f]`` (400 naming ``field`` otherwise)."""
    from datetime import datetime

    m = _TIME.match(text.strip())
    if m is None:
        raise ValidationError(f"{field} must be a naive UTC time YYYY-MM-DDTHH:MM:SS[.f], not {text[:40]!r}",
                              field=field)
    g = m.groups()
    frac = (g[6] or "")[:6].ljust(6, "0")
    try:
        datetime(int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]), int(g[5]))
    except ValueError as exc:
        raise ValidationError(f"{field}: {exc}", field=field) from None
    return f"{g[0]}-{g[1]}-{g[2]}T{g[3]}:{g[4]}:{g[5]}.{frac}"


def chrono(stored: Optional[str]) -> Optional[str]:
    """A stored time as the original's JSON showed it (chrono's ``%Y-%m-%dT%H:%M:%S%.f``)."""
    if stored is None or len(stored) != 26:
        return stored
    frac = stored[20:]
    if frac == "000000":
        return stored[:19]
    return stored[:23] if frac.endswith("000") else stored


def integer(get: Get, field: str, default: int, minimum: int = 0, maximum: Optional[int] = None) -> int:
    text = get(field)
    if text is None or text == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise ValidationError(f"{field} must be an integer, not {text[:40]!r}", field=field) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationError(f"{field} must be {bound}, not {value}", field=field)
    return value


def _time(get: Get, field: str, default: str) -> str:
    text = get(field)
    return default if text is None or text == "" else parse_time(text, field)


def _required(get: Get, field: str) -> str:
    value = get(field)
    if value is None or value == "":
        raise ValidationError(f"{field} is required", field=field)
    return value


def _optional(get: Get, field: str) -> Optional[str]:
    value = get(field)
    return None if value is None or value == "" else value


def nodes(store: TelemetryStore) -> List[Dict[str, Any]]:
    """``GET /nodes``: the latest connection of each peer, every column of the original."""
    rows = store.latest_nodes()
    for row in rows:
        row["created_at"] = chrono(row["created_at"])
    return rows


def log_stats(store: TelemetryStore, get: Get) -> List[Dict[str, Any]]:
    """``GET /nodes/log_stats?peer_id=``: ``[{"qty", "log_type"}]``."""
    return [{"qty": qty, "log_type": msg} for msg, qty in store.log_stats(_required(get, "peer_id"))]


def format_cursor(created_at: str, row_id: int) -> str:
    return f"{created_at},{row_id}"


def parse_cursor(text: str) -> Tuple[str, int]:
    when, _, number = text.rpartition(",")
    try:
        return parse_time(when, "cursor"), int(number)
    except (ValidationError, ValueError):
        raise ValidationError(f"cursor must be a cursor an earlier page gave, not {text[:60]!r}",
                              field="cursor") from None


def logs(store: TelemetryStore, get: Get) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """``GET /nodes/logs``: ``[{"ip_addr", "peer_id", "msg", "created_at", "logs"}]``, newest
    first, and the cursor of the next page (None after the last)."""
    peer_id = _required(get, "peer_id")
    start, end = _time(get, "start_time", EPOCH), _time(get, "end_time", now_utc())
    limit = integer(get, "limit", LOGS_DEFAULT_LIMIT, 1, LOGS_MAX_LIMIT)
    cursor = _optional(get, "cursor")
    rows = store.peer_logs(peer_id, _optional(get, "msg"), _optional(get, "target"), start, end, limit,
                           parse_cursor(cursor) if cursor else None)
    following = format_cursor(rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == limit else None
    return [{"ip_addr": r["ip_addr"], "peer_id": r["peer_id"], "msg": r["msg"], "created_at": chrono(r["created_at"]),
             "logs": r["logs"]} for r in rows], following


def peerset(logs: Dict[str, Any]) -> Dict[str, Any]:
    """``state.peerset.nodes`` of a ``system.network_state`` message (``network_state.`` in
    some versions): remote peer id -> ``{"reputation", "connected", ...}``."""
    for key in ("state", "network_state"):
        inner = logs.get(key)
        if isinstance(inner, dict):
            nodes = (inner.get("peerset") or {}).get("nodes") if isinstance(inner.get("peerset"), dict) else None
            if isinstance(nodes, dict):
                return nodes
    return {}


def _reputation(entry: Any) -> Tuple[Any, Any]:
    if not isinstance(entry, dict):
        return None, None
    rep, connected = entry.get("reputation"), entry.get("connected")
    return (rep if isinstance(rep, int) and not isinstance(rep, bool) else None,
            connected if isinstance(connected, bool) else None)


def reputation(store: TelemetryStore, get: Get, logged: bool = False) -> List[Dict[str, Any]]:
    """``GET /reputation`` (``/logged``: remote peers limited to known nodes): for each reporting
    peer its latest ``system.network_state`` within ``max_age_s``."""
    from datetime import datetime, timedelta, timezone

    from .parsing import format_utc

    max_age = integer(get, "max_age_s", REPUTATION_DEFAULT_MAX_AGE, 0, 10 * 365 * 86400)
    limit = integer(get, "limit", REPUTATION_DEFAULT_LIMIT, 1, REPUTATION_MAX_LIMIT)
    since = format_utc(datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=max_age))
    known = set(store.known_peer_ids()) if logged else None
    seen, out = set(), []
    for reporter, created_at, message in store.network_states(since):
        if reporter in seen:
            continue
        seen.add(reporter)
        remote, reps, connected = [], [], []
        for peer, entry in peerset(message).items():
            if known is not None and peer not in known:
                continue
            rep, conn = _reputation(entry)
            remote.append(peer)
            reps.append(rep)
            connected.append(conn)
        if remote or known is None:
            out.append({"reporting_peer": reporter, "remote_peer": remote, "reputation": reps,
                        "connected": connected, "ts": chrono(created_at)})
        if len(out) >= limit:
            break
    return out


def reputation_of(store: TelemetryStore, peer_id: str, get: Get) -> List[Dict[str, Any]]:
    """``GET /reputation/{peer_id}``: what other nodes reported about that peer, newest first."""
    start, end = _time(get, "start_time", EPOCH), _time(get, "end_time", now_utc())
    limit = integer(get, "limit", REPUTATION_PEER_DEFAULT_LIMIT, 1, REPUTATION_MAX_LIMIT)
    out: List[Dict[str, Any]] = []
    for reporter, created_at, message in store.network_states(start, end, mentioning=peer_id):
        nodes = peerset(message)
        if peer_id not in nodes:
            continue
        rep, conn = _reputation(nodes[peer_id])
        out.append({"reporting_peer": reporter, "reputation": rep, "connected": conn, "ts": chrono(created_at)})
        if len(out) >= limit:
            break
    return out


def pretty_size(size: int) -> str:
    """PostgreSQL's ``pg_size_pretty``."""
    limit = 10 * 1024
    if abs(size) < limit:
        return f"{size} bytes"
    size >>= 9  # one more bit, for rounding
    for unit in ("kB", "MB", "GB", "TB"):
        if abs(size) < limit * 2 - 1 or unit == "TB":
            return f"{(size + 1) // 2} {unit}"
        size >>= 10
    raise AssertionError("unreachable")


def stats_db(store: TelemetryStore) -> List[Dict[str, str]]:
    """``GET /stats/db``: ``[{"relation", "size"}]``, largest first."""
    return [{"relation": name, "size": pretty_size(size)} for name, size in store.relation_sizes()]


def version_text() -> str:
    """``GET /stats/version``: the original's ``name<br\\>version<br\\>description`` (text/html)."""
    return f"statskit<br\\>{__version__}<br\\>statskit telemetry analytics (substrate-analytics compatible)"


# -- benchmarks ------------------------------------------------------------------------

def benchmark_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"benchmark id must be an integer, not {text[:40]!r}", field="id") from None
    if not 0 < value < 2**31:
        raise NotFound(f"no benchmark {value}")
    return value


def create_benchmark(store: TelemetryStore, doc: Any) -> Dict[str, Any]:
    if not isinstance(doc, dict) or "setup" not in doc:
        raise ValidationError('the body must be a JSON object {"setup": {...}}', field="setup")
    row = store.create_benchmark(doc["setup"])
    row["created_at"] = chrono(row["created_at"])
    return row


def create_benchmark_event(store: TelemetryStore, doc: Any) -> Dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValidationError('the body must be a JSON object {"benchmark_id", "name", "phase", "created_at"}')
    for field in ("benchmark_id", "name", "phase", "created_at"):
        if field not in doc:
            raise ValidationError(f"{field} is required", field=field)
    bid = doc["benchmark_id"]
    if not isinstance(bid, int) or isinstance(bid, bool):
        raise ValidationError("benchmark_id must be an integer", field="benchmark_id")
    for field in ("name", "phase", "created_at"):
        if not isinstance(doc[field], str):
            raise ValidationError(f"{field} must be a string", field=field)
    created_at = parse_time(doc["created_at"], "created_at")
    row = store.create_benchmark_event(bid, doc["name"], doc["phase"], created_at) if 0 < bid < 2**31 else None
    if row is None:
        raise NotFound(f"no benchmark {bid}", field="benchmark_id")
    row["created_at"] = chrono(row["created_at"])
    return row


def _shown(row: Dict[str, Any]) -> Dict[str, Any]:
    row["created_at"] = chrono(row["created_at"])
    return row


def benchmarks(store: TelemetryStore) -> List[Dict[str, Any]]:
    return [_shown(r) for r in store.benchmarks()]


def benchmark_events(store: TelemetryStore, text_id: str) -> List[Dict[str, Any]]:
    bid = benchmark_id(text_id)
    if store.benchmark(bid) is None:
        raise NotFound(f"no benchmark {bid}")
    return [_shown(r) for r in store.benchmark_events(bid)]


def benchmark_targets(store: TelemetryStore, text_id: str) -> List[Dict[str, str]]:
    """The distinct targets of the node the benchmark's ``setup.substrate.peerId`` names
    (``setup.tetcore.peerId`` in tetcore-analytics)."""
    bid = benchmark_id(text_id)
    row = store.benchmark(bid)
    if row is None:
        raise NotFound(f"no benchmark {bid}")
    setup = row["setup"] if isinstance(row["setup"], dict) else {}
    peer_id = None
    for key in ("substrate", "tetcore"):
        inner = setup.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("peerId"), str):
            peer_id = inner["peerId"]
            break
    return [{"target": t} for t in store.peer_targets(peer_id)] if peer_id else []
