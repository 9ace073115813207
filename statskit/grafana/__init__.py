"""Grafana dashboard sessions: the receiver for the analytics panel (macropower-analytics-panel).

The panel posts a payload at the start, every heartbeat and the end of a dashboard view;
statskit counts sessions and their duration per dashboard and user as the original
grafana-analytics exporter did, and logs each payload.

=================  ===========================================================================
module             holds
=================  ===========================================================================
``structs``        Go structs in Python: field tables, zero values, Go's decoding rules
``payload``        the original's ``Payload`` struct and its parts
``decoding``       :func:`decode_payload`: a request body to a payload (or a 400)
``sessions``       the duration rules: a session's record and how each payload advances it
``tracker``        :class:`SessionTracker`: payloads in (batched), counters and log lines out
``stores``         session caches: in memory, and in SQLite shared by a host's workers
``sessionlog``     the session log lines (logfmt or JSON, as the original printed them)
``points``         session changes as InfluxDB points
``metrics``        the ``grafana_analytics_*`` families on ``/metrics``
``feature``        the ``[grafana]`` options and how the server builds all this
=================  ===========================================================================

    >>> from statskit.state.memory import MemoryState
    >>> state = MemoryState()
    >>> tracker = SessionTracker(state, open_cache_for_tests())
    >>> _ = tracker.process(decode_payload(b'{"uuid": "s1", "type": "start", "time": 1000}'), now=1000)
    >>> [v for n, _, v in state.counters(SESSIONS)]
    [1.0]
"""
from .decoding import decode_payload, unflatten
from .feature import FEATURE
from .metrics import GrafanaMetrics
from .payload import Payload
from .structs import value_text
from .sessions import (
           DURATION,
           PREFIX,
           SESSIONS,
           SessionCache,
           SessionRecord,
           Step,
           label_names,
           session_labels,
)
from .stores import open_cache_for_tests
from .tracker import SessionTracker

__all__ = ["DURATION", "FEATURE", "PREFIX", "SESSIONS", "GrafanaMetrics", "Payload", "SessionCache", "SessionRecord",
           "SessionTracker", "Step", "decode_payload", "label_names", "open_cache_for_tests", "session_labels",
           "unflatten", "value_text"]
