"""Telemetry messages as InfluxDB points, when the ``influxdb`` sink is on.

==============  ==========================================================================
measurement     ``[telemetry] influxdb_measurement`` (default ``substrate_telemetry``)
tags            ``peer_id``, ``msg``, ``name`` (node name), ``chain`` (empty ones left out)
fields          every number of the message, nested objects flattened with ``_``
                (``{"bandwidth": {"up": 5}}`` -> ``bandwidth_up``), always as floats so that a
                value sent as ``1`` by one node and ``1.5`` by another never conflicts;
                ``count=1i`` (sum it for message counts); ``event_id`` as every statskit point
time            the message's ``ts``
==============  ==========================================================================

Points are queued on the existing batched InfluxDB sink after the batch is committed to the
telemetry store. Expiring (``/``) and audit (``/audit``) points go to different retention
policies (v1: ``influxdb_rp`` / ``influxdb_audit_rp``) or buckets (v2: ``influxdb_bucket`` /
``influxdb_audit_bucket``); empty means the ``[influxdb]`` one.

    >>> from statskit.telemetry.parsing import parse_frame
    >>> e = to_event(parse_frame('{"msg":"system.interval","ts":"2021-01-01T00:00:00Z","peers":3,'
    ...                          '"bw":{"up":1.5},"best":"0xab","ok":true}'), {"peer_id": "Qm", "name": "n"})
    >>> e.measurement, e.tags, e.fields, e.time_ns
    ('substrate_telemetry', {'peer_id': 'Qm', 'name': 'n', 'msg': 'system.interval'}, {'count': 1, 'peers': 3.0, 'bw_up': 1.5}, 1609459200000000000)
"""
from __future__ import annotations

import calendar
import copy
import math
from typing import Any, Dict, List, Optional, Sequence

from ..events import Event, new_id
from .parsing import Message

MAX_DEPTH = 8
_SKIP = frozenset({"ts", "msg", "envelope_id", "time"})


def _flatten(obj: Dict[str, Any], out: Dict[str, Any], prefix: str, depth: int) -> None:
    for key, value in obj.items():
        if not isinstance(key, str) or (not prefix and key in _SKIP):
            continue
        name = prefix + key
        kind = type(value)
        if kind is int or kind is float:
            number = float(value)
            if math.isfinite(number) and name not in out:
                out[name] = number
        elif kind is dict and depth < MAX_DEPTH:
            _flatten(value, out, name + "_", depth + 1)


def to_event(message: Message, tags: Dict[str, str], measurement: str = "substrate_telemetry") -> Event:
    fields: Dict[str, Any] = {"count": 1}
    _flatten(message.logs, fields, "", 0)
    point_tags = {k: v for k, v in tags.items() if v}
    if message.msg:
        point_tags["msg"] = message.msg
    c = message.created_at  # YYYY-MM-DDTHH:MM:SS.ffffff, UTC
    seconds = calendar.timegm((int(c[0:4]), int(c[5:7]), int(c[8:10]), int(c[11:13]), int(c[14:16]), int(c[17:19])))
    time_ns = max(0, seconds * 1_000_000_000 + int(c[20:26]) * 1000)  # InfluxDB keeps no times before 1970
    return Event(new_id(), time_ns, measurement, point_tags, fields)


class PointSinks:
    """The two InfluxDB sinks: expiring and audit points."""

    def __init__(self, expiring: Any, audit: Any, measurement: str) -> None:
        self.expiring, self.audit, self.measurement = expiring, audit, measurement

    @classmethod
    def from_settings(cls, settings: Any, state: Any) -> "PointSinks":
        from ..sinks.influxdb import InfluxDBSink

        tel = settings.telemetry

        def sink(rp: str, bucket: str) -> Any:
            shaped = copy.deepcopy(settings)
            if rp:
                shaped.influxdb.retention_policy = rp
            if bucket:
                shaped.influxdb.bucket = bucket
            shaped.influxdb.read_events = False
            return InfluxDBSink.from_settings(shaped, state)

        return cls(sink(tel.influxdb_rp, tel.influxdb_bucket), sink(tel.influxdb_audit_rp, tel.influxdb_audit_bucket),
                   tel.influxdb_measurement)

    def emit(self, rows: Sequence[Any]) -> None:
        expiring: List[Event] = []
        audit: List[Event] = []
        for row in rows:
            (audit if row.audit else expiring).append(to_event(row.message, row.tags or {}, self.measurement))
        if expiring:
            self.expiring.emit(expiring)
        if audit:
            self.audit.emit(audit)

    def close(self, timeout: Optional[float] = None) -> None:
        self.expiring.close(timeout)
        self.audit.close(timeout)
