"""Deprecated: moved to :mod:`statskit.grafana.sessions` and :mod:`statskit.grafana.tracker`. This alias goes away in statskit 0.3."""
import warnings as _warnings

from statskit.grafana.points import session_point  # noqa: F401
from statskit.grafana.sessions import *  # noqa: F401,F403
from statskit.grafana.tracker import SessionTracker  # noqa: F401

_warnings.warn("statskit.sessions is deprecated; import from statskit.grafana instead", DeprecationWarning, stacklevel=2)
