"""The layout's rules (ARCHITECTURE.rst), checked on the source: no import cycle among the
project's modules, the core imports no feature package, and old module paths still work for
one release with a DeprecationWarning."""
from __future__ import annotations

import ast
import importlib
import runpy
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("statskit", "statskit_server", "statskit_client")
# The root conftest.py lists the deprecated aliases (so that --doctest-modules skips them).
ALIASES = {a[:-3].replace("/", ".") for a in runpy.run_path(str(ROOT / "conftest.py"))["DEPRECATED_ALIASES"]}


def feature_packages() -> Set[str]:
    return {p.parent.name for p in (ROOT / "statskit").glob("*/feature.py")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Set[str]:
    """Every project module ``path`` imports, at top level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        found.update(t for t in targets if t.split(".")[0] in PACKAGES)
    return found


def graph() -> Dict[str, Set[str]]:
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    edges: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        if name in ALIASES:
            continue
        # "from pkg import mod" names a module when pkg.mod is one; else it is pkg's attribute.
        edges[name] = {t for t in imports_of(path) if t in modules and t != name}
    return edges


def test_no_import_cycles():
    edges = graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of logic.
    edges = {m: {t for t in ts if not (is_package(m) and t.startswith(m + "."))} for m, ts in edges.items()}
    cycles: List[List[str]] = []
    done: Set[str] = set()

    def visit(node: str, path: List[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    for module in sorted(edges):
        if module not in done:
            visit(module, [module])
    assert cycles == []


def is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").exists()


def test_the_core_imports_no_feature_package():
    features = feature_packages()
    assert {"grafana", "oneshot"} <= features
    leaks = sorted((m, t) for m, ts in graph().items() if m.startswith("statskit.")
                   and m.split(".")[1] not in features for t in ts
                   if t.startswith("statskit.") and t.split(".")[1] in features)
    assert leaks == []


def test_no_module_is_over_about_400_lines():
    long = {module_name(p): n for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if (n := p.read_text().count("\n")) > 420}
    assert long == {}


# What each old module exported at 0.1.0 (before the layout by feature): still importable.
OLD_NAMES = {
    "statskit.sessions": ["Change", "DURATION", "END", "HEARTBEAT", "LABEL_NAMES", "MAX_LABEL_VALUE", "MAX_POINT_TEXT",
                          "MAX_POINT_VARIABLES", "MAX_UUID", "POINT_MEASUREMENT", "PREFIX", "SESSIONS", "START",
                          "SessionCache", "SessionRecord", "SessionTracker", "Step", "UNSAVED_DASHBOARD", "USER_LABELS",
                          "WINDOW", "add_point", "advance", "duration", "gap_cap", "kind_of", "label_names",
                          "open_cache_for_tests", "session_key", "session_labels", "session_point"],
    "statskit.panel": ["ANY_LIST", "BOOL", "BuildInfo", "Dashboard", "Host", "INT", "INT64_MAX", "INT64_MIN",
                       "LicenseInfo", "MAX_DEPTH", "MAX_FLAT_INDEX", "Options", "Payload", "RawTimeRange", "STR",
                       "TimeRange", "User", "Variable", "decode_payload", "unflatten", "value_text"],
    "statskit.sessionlog": ["INVALID_TYPE_MSG", "MSG", "SessionLog", "go_json", "invalid_type_pairs", "json_line",
                            "logfmt_line", "raw_line", "session_logfmt", "session_pairs", "session_pairs_variables"],
    "statskit.grafana_metrics": ["FLUSH_TIMEOUT", "GrafanaMetrics", "QUERY_FAILURES", "SCRAPES", "build_labels"],
    "statskit.state.sessions": ["MAINTAIN_INTERVAL", "MemorySessionCache", "SEEN_RESOLUTION", "SQLiteSessionCache",
                                "low_water", "open_session_cache"],
    "statskit.grafana.journal": ["ADOPT_EVERY", "MAX_DECODED", "PayloadJournal", "SCHEMA"],
    "statskit.state.oneshot": ["FLUSH_INTERVAL", "MAX_PENDING_REASON", "MemoryQueue", "Plan", "SERIES_MEMORY_MS",
                               "SQLiteQueue", "TIMEOUT_REASON", "open_queue", "order_times", "plan_delivery",
                               "trim_cursor"],
    "statskit.oneshot": ["COUNTER_PREFIX", "DROPPED", "Delivery", "EVENT_COUNT", "LabelKey", "MAX_SCRAPER_NAME",
                         "MAX_VALUE_TEXT", "METRIC", "OneShot", "OneShotEvent", "OneShotQueue", "Pairs", "QueueLimits",
                         "REFUSED", "Reporter", "SCRAPER_COUNTS", "ScrapeResult", "TOKEN_PARAM", "VALUE_PARAM",
                         "check_label", "check_scraper_name", "open_queue", "parse_event", "parse_form",
                         "parse_value", "query_bytes", "series_key"],
}


def test_every_old_module_path_is_an_alias():
    assert ALIASES | {"statskit.oneshot"} == set(OLD_NAMES)


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_module_paths_still_work_and_warn(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
        missing = [name for name in OLD_NAMES[old] if not hasattr(module, name)]
    assert missing == []
    if old in ALIASES:
        assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in caught)


def test_the_readme_imports_work_without_deprecation_warnings():
    lines = [ln.strip() for ln in (ROOT / "README.rst").read_text().splitlines()
             if ln.strip().startswith(("from statskit", "import statskit"))]
    assert lines
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for line in lines:
            exec(line, {})
