"""Deprecated: moved to :mod:`statskit.oneshot`. This alias goes away in statskit 0.3."""
from statskit._moved import alias

__getattr__, __dir__ = alias(__name__, "statskit.oneshot.stores", "statskit.oneshot.store_memory", "statskit.oneshot.store_sqlite", "statskit.oneshot.store_common")
