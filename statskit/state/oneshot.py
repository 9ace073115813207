"""Deprecated: moved to :mod:`statskit.oneshot.stores`. This alias goes away in statskit 0.3."""
import warnings as _warnings

from statskit.oneshot.store_memory import MemoryQueue  # noqa: F401
from statskit.oneshot.store_sqlite import SQLiteQueue  # noqa: F401
from statskit.oneshot.stores import open_queue  # noqa: F401

_warnings.warn("statskit.state.oneshot is deprecated; import from statskit.oneshot.stores instead", DeprecationWarning, stacklevel=2)
