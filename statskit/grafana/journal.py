"""Deprecated: moved to :mod:`statskit.journal` (``table=`` is now required, and ``apply``
receives ``(payload, received, seq)``). This alias goes away in statskit 0.3."""
from statskit._moved import alias

__getattr__, __dir__ = alias(__name__, "statskit.journal")
