"""Entry points, loaded once per process: how sinks, features and backends plug in.

    >>> sorted(ep.name for ep in entry_points_of("statskit.sinks"))
    ['influxdb', 'prometheus', 'sqlite', 'stdout']
"""
from __future__ import annotations

import logging
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
