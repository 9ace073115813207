"""Deprecated: moved to :mod:`statskit.grafana`. This alias goes away in statskit 0.3."""
from statskit._moved import alias

__getattr__, __dir__ = alias(__name__, "statskit.grafana.sessions", "statskit.grafana.tracker", "statskit.grafana.points", "statskit.grafana.stores")
