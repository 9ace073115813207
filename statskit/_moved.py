"""Deprecated aliases of moved modules: ``alias("statskit.sessions", "statskit.grafana.sessions", ...)``
gives the old module a ``__getattr__`` that finds each old name in the new modules, so every
``from statskit.sessions import X`` that worked still does, for one release."""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, List, Tuple


def alias(old: str, *targets: str) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    warnings.warn(f"{old} is deprecated; import from {targets[0].rsplit('.', 1)[0] if len(targets) > 1 else targets[0]} "
                  "instead", DeprecationWarning, stacklevel=3)

    def getattr_(name: str) -> Any:
        for target in targets:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    def dir_() -> List[str]:
        return sorted({n for t in targets for n in dir(importlib.import_module(t)) if not n.startswith("__")})

    return getattr_, dir_
