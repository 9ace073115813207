"""Entry points, loaded once per process: how sinks, features and backends plug in.

    >>> sorted(ep.name for ep in entry_points_of("statskit.sinks"))
    ['influxdb', 'prometheus', 'sqlite', 'stdout']
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
import sys
import threading
from typing import Any, Dict, List

log = logging.getLogger("statskit.plugins")

_loaded: Dict[str, Dict[str, Any]] = {}
_lock = threading.Lock()


def entry_points_of(group: str) -> List[Any]:
    """The installed entry points of ``group`` (not loaded)."""
    from importlib.metadata import entry_points

    if sys.version_info >= (3, 10):
        return list(entry_points(group=group))
    return list(entry_points().get(group, []))


def load_group(group: str) -> Dict[str, Any]:
    """Every entry point of ``group``, loaded (once), by name. One that fails to load is
    logged and left out, so a broken plugin cannot take the server down."""
    with _lock:
        found = _loaded.get(group)
        if found is None:
            found = {}
            for ep in entry_points_of(group):
                try:
                    found[ep.name] = ep.load()
                except Exception:
                    log.exception("cannot load %s plugin %s (%s)", group, ep.name, ep.value)
            _loaded[group] = found
        return dict(found)


FEATURE_GROUP = "statskit.features"


def features() -> Dict[str, Any]:
    """Every feature: the packages of ``statskit`` that hold a ``feature`` module (found on disk,
    so a source checkout has them without installed entry points; a bug in one is raised), then
    the ``statskit.features`` entry points (third-party features)."""
    with _lock:
        found = _loaded.get("builtin-features")
        if found is None:
            import statskit

            found = {}
            for info in pkgutil.iter_modules(statskit.__path__):
                if info.ispkg and importlib.util.find_spec(f"statskit.{info.name}.feature") is not None:
                    module = importlib.import_module(f"statskit.{info.name}")
                    found[module.FEATURE.name] = module.FEATURE
            _loaded["builtin-features"] = found
    return {**found, **{k: v for k, v in load_group(FEATURE_GROUP).items() if k not in found}}
