"""Third-party indicators and log formats, registered through entry points.

A distribution declares them in its metadata (``setup.cfg`` / ``pyproject.toml``)::

    [options.entry_points]
    statskit.kpi.indicators =
        devices = my_box.kpi:DEVICES          # an Indicator (or a function returning one)
    statskit.kpi.log_formats =
        nginx = my_box.kpi:parse_nginx        # bytes -> Fields, raises Skipped

and the ini names them: ``[kpi] indicators = devices``, ``[kpi] log_format = nginx``. A name
that no installed distribution registers, or an entry point that does not load, stops the start
with a :class:`LookupError` naming the group and what is installed (the feature turns it into
a ``ConfigError``).

Each :class:`Indicator` is an hourly indicator fed by every accepted log line (its
``dimensions``: the dimension tuples, of up to 3 strings, the line counts once each; from the
line alone, as identical lines of a minute are counted together) and the KPI over it, rolled into D/W/M/Y, served by ``/api/v1`` and exported like the built-in ones.

    >>> top = Indicator(1500, "Methods", lambda line: [(line.method,)], 2500, "Methods")
    >>> top.kpi({("GET",): 7, ("POST",): 2})
    {'items': [{'dimension': ['GET'], 'value': 7}, {'dimension': ['POST'], 'value': 2}], 'total': 9}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from ..plugins import entry_points_of
from .indicators import Dimension
from .inputs import LOG_FORMATS, MAX_TS, Fields, LogLine, Skipped

INDICATORS_ENTRY_POINT = "statskit.kpi.indicators"
LOG_FORMATS_ENTRY_POINT = "statskit.kpi.log_formats"
#: Ids left to third parties (statskit's own: 1001-1006 and 1101-1102, 2001-2005 and 2101-2102).
INDICATOR_IDS, KPI_IDS = range(1500, 2000), range(2500, 3000)
TOP = 10


@dataclass(frozen=True)
class Indicator:
    """A third-party hourly indicator (id in 1500-1999) and its KPI (id in 2500-2999).

    ``usage``: count 10-minute slots of activity per dimension, as TotalUsage does (values in
    minutes), instead of lines. ``compute``: the KPI's data from the indicator's values summed
    over a period, by dimension; by default the top 10 dimensions and the total."""

    indicator_id: int
    name: str
    dimensions: Callable[[LogLine], Iterable[Dimension]]
    kpi_id: int
    kpi_name: str
    usage: bool = False
    compute: Optional[Callable[[Mapping[Dimension, int]], Dict[str, Any]]] = None

    def kpi(self, sums: Mapping[Dimension, int]) -> Dict[str, Any]:
        if self.compute is not None:
            return self.compute(sums)
        ranked = sorted(sums.items(), key=lambda item: (-item[1], item[0]))
        return {"items": [{"dimension": list(dim), "value": value} for dim, value in ranked[:TOP]],
                "total": sum(sums.values())}


def _entry_point(group: str, name: str, what: str, builtins: Sequence[str]) -> Any:
    """The object the entry point ``name`` of ``group`` names, loaded; LookupError if none
    is installed or it does not load."""
    found = [ep for ep in entry_points_of(group) if ep.name == name]
    if not found:
        installed = sorted({*builtins, *(ep.name for ep in entry_points_of(group))})
        raise LookupError(f"unknown {what} {name!r}: installed: {', '.join(installed) or 'none'}; others "
                          f"register under the {group!r} entry point of an installed distribution")
    try:
        return found[0].load()
    except Exception as exc:  # a broken plugin: said at start, not a traceback in a thread
        raise LookupError(f"{what} {name!r} ({group} entry point {found[0].value}) does not load: "
                          f"{type(exc).__name__}: {exc}") from None


def log_format(name: str) -> Callable[[bytes], Fields]:
    """The line parser called ``name``: built-in ``caddy``, or the ``statskit.kpi.log_formats``
    entry point ``name``: a callable from one line (bytes, no newline) to :data:`Fields`,
    raising :class:`Skipped` for a line that is no request, whose answers are checked
    (:func:`checked`).

        >>> log_format("caddy") is LOG_FORMATS["caddy"]
        True
    """
    if name in LOG_FORMATS:
        return LOG_FORMATS[name]
    parse = _entry_point(LOG_FORMATS_ENTRY_POINT, name, "log format", list(LOG_FORMATS))
    if not callable(parse):
        raise LookupError(f"log format {name!r} is not callable: {parse!r}")
    return checked(parse)


def checked(parse: Callable[[bytes], Any]) -> Callable[[bytes], Fields]:
    """A third-party parser whose failures skip the line: an exception other than
    :class:`Skipped` is ``format_error``, an answer that is not ``(ts, host, uri, method,
    status, headers)`` with those types ``not_handled_request``, a time outside 1970-2999
    ``bad_timestamp``.

        >>> checked(lambda raw: (1.5e9, "h", "/", "GET", 200, {}))(b"x")
        (1500000000.0, 'h', '/', 'GET', 200, {})
        >>> checked(lambda raw: [1e18, "h", "/", "GET", 200, {}])(b"x")
        Traceback (most recent call last):
        ...
        statskit.kpi.inputs.Skipped: bad_timestamp
    """
    def parse_checked(raw: bytes) -> Fields:
        try:
            found = tuple(parse(raw))
        except Skipped:
            raise
        except Exception:
            raise Skipped("format_error") from None
        if len(found) != 6 or tuple(map(type, found[1:])) != (str, str, str, int, dict) \
                or type(found[0]) not in (int, float):
            raise Skipped("not_handled_request")
        ts = float(found[0])
        if not 0.0 <= ts < MAX_TS:
            raise Skipped("bad_timestamp")
        return (ts, *found[1:])

    return parse_checked


def load_indicators(names: Sequence[str]) -> List[Indicator]:
    """The ``statskit.kpi.indicators`` entry points ``names``, checked: ids in their ranges and
    not used twice."""
    loaded: List[Indicator] = []
    for name in names:
        found = _entry_point(INDICATORS_ENTRY_POINT, name, "KPI indicator", [])
        if not isinstance(found, Indicator) and callable(found):
            found = found()
        if not isinstance(found, Indicator):
            raise LookupError(f"KPI indicator {name!r} is not a statskit.kpi.extensions.Indicator: {found!r}")
        if found.indicator_id not in INDICATOR_IDS or found.kpi_id not in KPI_IDS:
            raise LookupError(f"KPI indicator {name!r}: ids must be in 1500-1999 (indicator) and 2500-2999 "
                              f"(KPI), not {found.indicator_id} and {found.kpi_id}")
        for other in loaded:
            if other.indicator_id == found.indicator_id or other.kpi_id == found.kpi_id:
                raise LookupError(f"KPI indicators {other.name!r} and {found.name!r} use the same id")
        loaded.append(found)
    return loaded
