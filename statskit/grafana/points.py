"""Session changes as InfluxDB points (measurement ``grafana_sessions``)."""
from __future__ import annotations

import time as _time
from typing import Any, Dict, Optional

from ..events import Event, new_id
from .payload import Payload
from .sessions import POINT_MEASUREMENT, Step

# --------------------------------------------------------------------------- InfluxDB points

MAX_POINT_VARIABLES = 32
MAX_POINT_TEXT = 256


def session_point(payload: Payload, step: Step, user_metrics: bool = True, variables: bool = True,
                  time_ns: Optional[int] = None) -> Event:
    """One point per payload in measurement ``grafana_sessions``, stamped with the server's
    receive time (``time_ns``, default now; nanoseconds, so that two tabs of one user never
    overwrite each other's point).

    Tags (low cardinality, what dashboards group by): dashboard_uid, dashboard_name, user_login,
    user_name (both dropped by ``--disable-user-metrics``, as is the user_id field), user_role,
    user_theme, grafana_host, grafana_env, type (start/heartbeat/end). Fields: session (the uuid:
    a field, never a tag), user_id,
    duration_seconds (the session's duration so far, as credited), delta_seconds (what this
    payload added), has_focus, ended, heartbeat_interval, time_from/time_to (the dashboard's
    raw time range), user_timezone, user_locale, dashboard_timezone, and ``var_<name>`` per
    dashboard variable (values joined by ","; left out with ``--disable-variable-log``).
    """
    host, user = payload.host, payload.user
    tags: Dict[str, str] = {
        "dashboard_uid": payload.dashboard.uid,
        "dashboard_name": payload.dashboard.name,
        "user_role": user.role,
        "user_theme": user.theme,
        "grafana_host": host.hostname + ":" + host.port,
        "grafana_env": host.build_info.env,
        "type": step.kind,
    }
    if user_metrics:
        tags["user_login"], tags["user_name"] = user.login, user.name
    tags = {k: _clip(v) for k, v in tags.items() if v}  # line protocol has no empty tag values
    fields: Dict[str, Any] = {
        "session": payload.uuid,
        "duration_seconds": float(step.credited),
        "delta_seconds": float(step.delta),
        "has_focus": payload.has_focus,
        "ended": step.ended,
        "heartbeat_interval": payload.options.heartbeat_interval,
        "time_from": _clip(payload.time_range.raw.from_),
        "time_to": _clip(payload.time_range.raw.to),
        "user_timezone": _clip(user.timezone),
        "user_locale": _clip(user.locale),
        "dashboard_timezone": _clip(payload.time_zone),
    }
    if user_metrics:
        fields["user_id"] = user.id
    if variables:
        for variable in (payload.variables or ())[:MAX_POINT_VARIABLES]:
            key = "var_" + "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in variable.name)[:64]
            fields[key] = _clip(",".join(variable.value_texts()))
    now_ns = _time.time_ns() if time_ns is None else time_ns
    return Event(new_id(), now_ns, POINT_MEASUREMENT, tags, fields)


def _clip(text: str) -> str:
    # Control characters would break line protocol and tell nothing in a dashboard.
    text = text[:MAX_POINT_TEXT]
    return "".join(ch if ch >= " " else " " for ch in text) if any(ch < " " for ch in text) else text
