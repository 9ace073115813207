"""Deprecated: moved to :mod:`statskit.grafana.decoding` and :mod:`statskit.grafana.payload`. This alias goes away in statskit 0.3."""
import warnings as _warnings

from statskit.grafana.decoding import *  # noqa: F401,F403
from statskit.grafana.decoding import decode_payload, unflatten  # noqa: F401
from statskit.grafana.payload import *  # noqa: F401,F403
from statskit.grafana.structs import *  # noqa: F401,F403
from statskit.grafana.payload import Payload  # noqa: F401
from statskit.grafana.structs import value_text  # noqa: F401

_warnings.warn("statskit.panel is deprecated; import from statskit.grafana instead", DeprecationWarning, stacklevel=2)
