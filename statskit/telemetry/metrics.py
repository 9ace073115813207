"""Self-monitoring: the original's metric names, from counters in the shared state (so every
worker and process of a host, the websocket listener included, shows the same values).

=================================  =====  ==================================================
``substrate_message_count``        c      valid JSON messages received (``tetcore_`` twin)
``substrate_bytes_received``       c      bytes of every frame received (``tetcore_`` twin)
``nodes_connected_count``          c      websocket connections accepted
``nodes_dropped_count``            c      connections ended (closed, timed out, refused later)
``current_substrate_connections``  g      connected - dropped (``tetcore_`` twin)
``feeds_connected``                c      live feed connections accepted (``/feed``)
``feeds_disconnected``             c      live feed connections ended
``current_feed_connections``       g      feeds_connected - feeds_disconnected
``statskit_telemetry_*_total``     c      stored, rejected{reason}, dropped{reason}, refused{reason}
=================================  =====  ==================================================
"""
from __future__ import annotations

from typing import Dict, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from ..metrics import Scrape, describe
from ..state import StateStore

PREFIX = "telemetry:"
MESSAGES, BYTES, CONNECTED, DROPPED = (PREFIX + n for n in ("messages", "bytes", "connected", "dropped"))
FEEDS_CONNECTED, FEEDS_DISCONNECTED = PREFIX + "feeds_connected", PREFIX + "feeds_disconnected"
STORED, REJECTED, BUFFER_DROPS, REFUSED, RATE_LIMITED = (
    "statskit_telemetry_stored", "statskit_telemetry_rejected", "statskit_telemetry_dropped",
    "statskit_telemetry_refused", "statskit_telemetry_rate_limited")

describe(STORED, "counter", "Telemetry messages committed to the telemetry store.")
describe(REJECTED, "counter", "Telemetry frames not stored: invalid JSON, not an object, no or bad ts (reason).")
describe(BUFFER_DROPS, "counter", "Telemetry messages lost because the write buffer was full or at shutdown (reason).")
describe(REFUSED, "counter", "Telemetry connections refused: network, token, too many connections (reason).")
describe(RATE_LIMITED, "counter", "Telemetry messages dropped by the per-connection rate limit.")


class TelemetryMetrics:
    """The original's families (both ``substrate_`` and ``tetcore_`` spellings)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        values: Dict[str, float] = {}
        for name, _, value in self.state.counters(PREFIX):
            values[name] = values.get(name, 0.0) + value
        messages, received = values.get(MESSAGES, 0.0), values.get(BYTES, 0.0)
        connected, dropped = values.get(CONNECTED, 0.0), values.get(DROPPED, 0.0)
        for flavour in ("substrate", "tetcore"):
            yield _counter(f"{flavour}_message_count", "Telemetry messages received (valid JSON).", messages)
            yield _counter(f"{flavour}_bytes_received", "Bytes of telemetry frames received.", received)
            gauge = GaugeMetricFamily(f"current_{flavour}_connections", "Telemetry connections open now.")
            gauge.add_metric([], max(0.0, connected - dropped))
            yield gauge
        yield _counter("nodes_connected_count", "Telemetry connections accepted.", connected)
        yield _counter("nodes_dropped_count", "Telemetry connections ended.", dropped)
        feeds_in, feeds_out = values.get(FEEDS_CONNECTED, 0.0), values.get(FEEDS_DISCONNECTED, 0.0)
        yield _counter("feeds_connected", "Live feed (/feed) connections accepted.", feeds_in)
        yield _counter("feeds_disconnected", "Live feed (/feed) connections ended.", feeds_out)
        gauge = GaugeMetricFamily("current_feed_connections", "Live feed (/feed) connections open now.")
        gauge.add_metric([], max(0.0, feeds_in - feeds_out))
        yield gauge


def _counter(name: str, help: str, value: float) -> Metric:
    # The original's counters have no _total suffix, and prometheus_client adds one to every
    # counter family: untyped families keep the exact names existing dashboards query.
    family = Metric(name, help + " (a counter)", "unknown")
    family.add_sample(name, {}, value)
    return family
