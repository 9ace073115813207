"""Deprecated: moved to :mod:`statskit.grafana.stores`. This alias goes away in statskit 0.3."""
import warnings as _warnings

from statskit.grafana.stores import *  # noqa: F401,F403

_warnings.warn("statskit.state.sessions is deprecated; import from statskit.grafana.stores instead", DeprecationWarning, stacklevel=2)
