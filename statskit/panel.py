"""Deprecated: moved to :mod:`statskit.grafana`. This alias goes away in statskit 0.3."""
from statskit._moved import alias

__getattr__, __dir__ = alias(__name__, "statskit.grafana.decoding", "statskit.grafana.payload", "statskit.grafana.structs", "statskit.constants")
