"""Deprecated: moved to :mod:`statskit.grafana.metrics`. This alias goes away in statskit 0.3."""
import warnings as _warnings

from statskit.grafana.metrics import *  # noqa: F401,F403

_warnings.warn("statskit.grafana_metrics is deprecated; import from statskit.grafana instead", DeprecationWarning, stacklevel=2)
