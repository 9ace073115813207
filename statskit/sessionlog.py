"""Deprecated: moved to :mod:`statskit.grafana.sessionlog`. This alias goes away in statskit 0.3."""
import warnings as _warnings

from statskit.grafana.sessionlog import *  # noqa: F401,F403

_warnings.warn("statskit.sessionlog is deprecated; import from statskit.grafana.sessionlog instead", DeprecationWarning, stacklevel=2)
