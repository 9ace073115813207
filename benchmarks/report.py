"""Machine-readable figures from the benchmark scripts, collected by ``benchmarks/run.py``.

A script calls :func:`record` beside each figure it prints::

    record("POST /event", 6003, baseline=9631, unit="req/s", goal=0.8)          # ratio >= 0.8
    record("/metrics, 100,000 sessions", 0.93, unit="s", goal=1.0, goal_kind="max")  # value <= 1.0

When the environment names a file (``STATSKIT_BENCH_RECORDS``, set by run.py), each record is
appended to it as one JSON line (so subprocesses of a script add theirs too); otherwise nothing
is written and the script's human output is all there is. A goal applies to the ratio to the
baseline when there is a baseline, else to the value (``goal_on`` overrides): ``goal_kind`` "min"
means at least, "max" at most.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

ENV = "STATSKIT_BENCH_RECORDS"


def record(measure: str, value: float, *, baseline: Optional[float] = None, unit: str = "",
           goal: Optional[float] = None, goal_kind: str = "min", goal_on: Optional[str] = None,
           benchmark: Optional[str] = None) -> Dict[str, Any]:
    """One figure: ``value`` (statskit's) beside ``baseline`` (measured in the same run)."""
    assert goal_kind in ("min", "max"), goal_kind
    ratio = value / baseline if baseline else None
    on = goal_on or ("ratio" if baseline else "value")
    met: Optional[bool] = None
    if goal is not None:
        checked = ratio if on == "ratio" else value
        met = checked is not None and (checked >= goal if goal_kind == "min" else checked <= goal)
    row = {"benchmark": benchmark or Path(sys.argv[0]).stem, "measure": measure, "value": value,
           "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3), "unit": unit,
           "goal": goal, "goal_kind": goal_kind if goal is not None else None,
           "goal_on": on if goal is not None else None, "met": met}
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:  # one short append per line: whole lines
            out.write(json.dumps(row) + "\n")
    return row
