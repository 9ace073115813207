"""A sample KPI data set for the dashboard tests and the README screenshot: a week of days, three
weeks and two months of a small hotspot, and no yearly value yet (the original's toolbar bug
#101). 2024-05-04 has no SharedFiles value (its tile shows "No data")."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from statskit.kpi import kpis
from statskit.kpi.store import SCHEMA, put_kpi
from statskit.state.sqlite import SQLiteDB

PACKAGES = ["Wikipédia", "Gutenberg", "TED talks", "Khan Academy", "PhET simulations", "Stack Exchange",
            "Files"]
DAYS = [f"2024-05-0{d}" for d in range(1, 8)]
WEEKS = ["2024 W17", "2024 W18", "2024 W19"]
MONTHS = ["2024-04", "2024-05"]
NO_SHARED_FILES = "2024-05-04"


def _values(seed: int, scale: int) -> Dict[int, Dict[str, Any]]:
    """The four KPIs of one period; ``seed`` varies the numbers, ``scale`` is days in it."""
    visits = sorted(((max(1, (97 * (i + 3) * (seed + 5)) % 61 * scale // (i + 1)), name)
                     for i, name in enumerate(PACKAGES)), key=lambda item: (-item[0], item[1]))
    minutes = sorted(((10 * max(1, (31 * (i + 2) * (seed + 7)) % 23 * scale // (i + 1)), name)
                      for i, name in enumerate(PACKAGES)), key=lambda item: (-item[0], item[1]))
    overall = min(max(minutes[0][0], sum(m for m, _ in minutes) * 3 // 4 // 10 * 10), scale * 1440)
    on = min(scale * 1440, scale * (1100 + (seed * 37) % 300))
    return {
        kpis.POPULARITY: {"items": [{"package": n, "visits": v} for v, n in visits],
                          "totalVisits": sum(v for v, _ in visits)},
        kpis.TOTAL_USAGE: {"items": [{"package": n, "minutesActivity": m} for m, n in minutes],
                           "totalMinutesActivity": overall},
        kpis.UPTIME_KPI: {"nbMinutesOn": on},
        kpis.SHARED_FILES: {"filesCreated": (seed * 7) % 13 * scale, "filesDeleted": (seed * 3) % 5 * scale},
    }


def sample_rows() -> List[Tuple[int, str, str, Dict[str, Any]]]:
    """``(kpi_id, kind, value, data)`` for every stored KPI value."""
    rows = []
    for kind, labels, scale in (("D", DAYS, 1), ("W", WEEKS, 7), ("M", MONTHS, 30)):
        for seed, label in enumerate(labels):
            for kpi_id, data in _values(seed + len(kind) * 11 * scale, scale).items():
                if not (kpi_id == kpis.SHARED_FILES and label == NO_SHARED_FILES):
                    rows.append((kpi_id, kind, label, data))
    return rows


def write_sample(data_dir: Path) -> Path:
    """The sample in ``<data_dir>/kpi.db`` (serve it with ``[kpi] processing_disabled``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = SQLiteDB(str(data_dir / "kpi.db"))
    db.ensure_schema(SCHEMA)
    with db.transaction() as conn:
        for kpi_id, kind, value, data in sample_rows():
            put_kpi(conn, kpi_id, kind, value, kpis.envelope(kpi_id, data))
    db.close()
    return data_dir / "kpi.db"
