"""The telemetry feature's HTTP routes on the WSGI app: none yet (the query endpoints are
issue 14). The websocket listener runs beside it: :mod:`statskit_server.telemetry_asgi`."""
from __future__ import annotations

import falcon

from statskit.telemetry import TelemetryService

from . import Web


def mount(app: falcon.App, service: TelemetryService, web: Web) -> None:
    """Nothing to mount yet; the counters reach ``/metrics`` through the feature's metric source."""
