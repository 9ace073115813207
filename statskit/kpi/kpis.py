"""The KPIs (ids 2001-2999): each is computed from the indicator records of a period range.

    >>> sums = {(1001, ("Wikipedia",)): 5, (1001, ("Gutenberg",)): 5, (1001, ("TED",)): 9, (1004, ()): 60}
    >>> compute(POPULARITY, sums)
    {'items': [{'package': 'TED', 'visits': 9}, {'package': 'Gutenberg', 'visits': 5}, {'package': 'Wikipedia', 'visits': 5}], 'totalVisits': 19}
    >>> compute(UPTIME_KPI, sums)
    {'nbMinutesOn': 60}

Top lists keep 10 items, by value descending then package name ascending; totals count every
package. 2002 (PopularPages) was removed in the original and is not offered.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from .indicators import (EVENT_COUNT, EVENT_UID_INDICATOR, PACKAGE_HOME_VISIT, SHARED_FILES_OPERATIONS, TOTAL_USAGE_BY_PACKAGE, TOTAL_USAGE_OVERALL,
                         UPTIME, Dimension)

POPULARITY, TOTAL_USAGE, UPTIME_KPI, SHARED_FILES = 2001, 2003, 2004, 2005
KPI_NAMES = {POPULARITY: "PackagePopularity", TOTAL_USAGE: "TotalUsage", UPTIME_KPI: "Uptime",
             SHARED_FILES: "SharedFiles"}
KPI_IDS = tuple(sorted(KPI_NAMES))  # the original's KPIs
EVENT_COUNTS, DISTINCT_UIDS = 2101, 2102  # over statskit's event stream ([kpi] events)
EVENT_KPI_IDS = (EVENT_COUNTS, DISTINCT_UIDS)
KPI_NAMES.update({EVENT_COUNTS: "EventCounts", DISTINCT_UIDS: "DistinctUids"})
#: Which indicators each KPI reads.
KPI_INDICATORS = {POPULARITY: (PACKAGE_HOME_VISIT,), TOTAL_USAGE: (TOTAL_USAGE_OVERALL, TOTAL_USAGE_BY_PACKAGE),
                  UPTIME_KPI: (UPTIME,), SHARED_FILES: (SHARED_FILES_OPERATIONS,)}
TOP = 10
#: The original's kpi_value envelope (``{"module", "name", "data"}``): module of its classes.
MODULE = "backend.kpi_data"

Sums = Mapping[Tuple[int, Dimension], int]
#: Third-party KPIs by id (``[kpi] indicators``, statskit.kpi.extensions.Indicator), in this process.
CUSTOM: Dict[int, Any] = {}


def register(indicator: Any) -> None:
    """Make a third-party indicator's KPI known (computed, named, exported); an id keeps its
    name and indicator (the same plugin loaded again replaces it)."""
    known = CUSTOM.get(indicator.kpi_id)
    if known is not None and (known.kpi_name, known.indicator_id) != (indicator.kpi_name, indicator.indicator_id):
        raise LookupError(f"KPI {indicator.kpi_id} is already {known.kpi_name!r}")
    CUSTOM[indicator.kpi_id] = indicator
    KPI_NAMES[indicator.kpi_id] = indicator.kpi_name


def _top(sums: Sums, indicator: int, key: str, name_key: str = "package") -> Tuple[List[Dict[str, Any]], int]:
    per_package = [(dim[0], value) for (ind, dim), value in sums.items() if ind == indicator and dim]
    per_package.sort(key=lambda item: (-item[1], item[0]))
    total = sum(value for _, value in per_package)
    return [{name_key: name, key: value} for name, value in per_package[:TOP]], total


def compute(kpi_id: int, sums: Sums) -> Dict[str, Any]:
    """The KPI's data (camelCase, as the original's API shows it) from summed records."""
    if kpi_id == POPULARITY:
        items, total = _top(sums, PACKAGE_HOME_VISIT, "visits")
        return {"items": items, "totalVisits": total}
    if kpi_id == TOTAL_USAGE:
        items, _ = _top(sums, TOTAL_USAGE_BY_PACKAGE, "minutesActivity")
        # The overall indicator, not the sum per package: two packages used in the same
        # 10 minutes are 10 minutes of activity.
        return {"items": items, "totalMinutesActivity": sums.get((TOTAL_USAGE_OVERALL, ()), 0)}
    if kpi_id == UPTIME_KPI:
        return {"nbMinutesOn": sums.get((UPTIME, ()), 0)}
    if kpi_id == SHARED_FILES:
        return {"filesCreated": sums.get((SHARED_FILES_OPERATIONS, ("FILE_CREATED",)), 0),
                "filesDeleted": sums.get((SHARED_FILES_OPERATIONS, ("FILE_DELETED",)), 0)}
    if kpi_id == EVENT_COUNTS:
        items, total = _top(sums, EVENT_COUNT, "count", "event")
        return {"items": items, "totalEvents": total}
    if kpi_id == DISTINCT_UIDS:
        return {"distinctUids": sum(1 for (ind, _), value in sums.items() if ind == EVENT_UID_INDICATOR and value)}
    custom = CUSTOM.get(kpi_id)
    if custom is not None:
        return custom.kpi({dim: value for (ind, dim), value in sums.items() if ind == custom.indicator_id})
    raise KeyError(kpi_id)


def envelope(kpi_id: int, data: Dict[str, Any]) -> Dict[str, Any]:
    """How the value is stored in ``kpi.kpi_value``, as the original stored it."""
    return {"module": MODULE, "name": KPI_NAMES[kpi_id] + "Value", "data": data}


def csv_rows(kpi_id: int, data: Dict[str, Any]) -> List[Tuple[str, str, Any]]:
    """``(package, measure, value)`` rows for the CSV export: one per item, then the totals
    (a third-party KPI's ``dimension`` list in the package column, joined by ``/``).

        >>> csv_rows(SHARED_FILES, {"filesCreated": 2, "filesDeleted": 1})
        [('', 'filesCreated', 2), ('', 'filesDeleted', 1)]
        >>> csv_rows(2500, {"items": [{"dimension": ["phone", "GET"], "value": 3}], "total": 3})
        [('phone/GET', 'value', 3), ('', 'total', 3)]
    """
    rows: List[Tuple[str, str, Any]] = []
    for key, value in data.items():
        if key == "items":
            for item in value:
                name_key = next((k for k in ("event", "dimension") if k in item), "package")
                name = item.get(name_key, "")
                name = "/".join(name) if isinstance(name, list) else name
                rows.extend((name, k, v) for k, v in item.items() if k != name_key)
        else:
            rows.append(("", key, value))
    return rows
