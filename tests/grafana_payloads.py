"""Analytics-panel payloads for the Grafana session tests: the six spec examples, and a builder
for scripted sessions (the example heartbeat with another uuid, type, time, ...)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "payloads"
if not SPEC.is_dir():  # a checkout elsewhere: the spec next to the repository's parent
    SPEC = Path("/work/shared/spec/payloads")

NAMES = ["01_start", "02_heartbeat", "03_heartbeat_unfocused", "04_end", "05_start_admin_absolute_range",
         "06_heartbeat_flattened"]

# Labels of the examples' two sessions, as the original exposes them.
JDOE = {"dashboard_name": "Kubernetes / Cluster Overview", "dashboard_timezone": "browser",
        "dashboard_uid": "k8s-cluster-ov", "grafana_env": "production", "grafana_host": "grafana.example.com:",
        "user_locale": "en-US", "user_login": "jdoe", "user_name": "Jane Doe", "user_role": "editor",
        "user_theme": "dark", "user_timezone": "browser"}
ADMIN = {"dashboard_name": "Analytics Panel Example Dashboard", "dashboard_timezone": "utc",
         "dashboard_uid": "ZQZXRMXMk", "grafana_env": "development", "grafana_host": "localhost:3000",
         "user_locale": "de-DE", "user_login": "admin", "user_name": "admin", "user_role": "admin",
         "user_theme": "light", "user_timezone": "utc"}
# The examples in order: start 734, heartbeats 794 and 854, end 900 (60 + 60 + 46), then the
# admin's start, then a flattened heartbeat at 794 that arrives after the end (it is older
# than the end, so it changes nothing).
EXAMPLES_DURATION = 166.0


def example_bytes(name: str) -> bytes:
    return (SPEC / f"{name}.json").read_bytes()


def example(name: str) -> Dict[str, Any]:
    return json.loads(example_bytes(name))


def payload(uuid: str = "sess-1", kind: str = "heartbeat", time: int = 1_700_000_000, *,
            interval: int = 60, base: str = "02_heartbeat", **changes: Any) -> Dict[str, Any]:
    """The example heartbeat (or ``base``) with another uuid, type, time and heartbeat interval;
    ``changes`` set more fields by dotted path, e.g. ``**{"dashboard.uid": "other"}``."""
    body = copy.deepcopy(example(base))
    body.update(uuid=uuid, type=kind, time=time)
    body["options"]["heartbeatInterval"] = interval
    for path, value in changes.items():
        node = body
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def session(uuid: str, events: List[Tuple[str, int]], interval: int = 60, **changes: Any) -> List[bytes]:
    """Encoded payloads for ``[(kind, time), ...]`` of one session."""
    return [encode(payload(uuid, kind, t, interval=interval, **changes)) for kind, t in events]


def series(text: str, name: str) -> List[Tuple[Dict[str, str], float]]:
    """The samples of ``name`` in a Prometheus text exposition, as (labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), sample.value))
    return out


def value_of(text: str, name: str, labels: Optional[Dict[str, str]] = None) -> Optional[float]:
    for found, value in series(text, name):
        if labels is None or found == labels:
            return value
    return None
