"""The app the fuzz tests attack: every feature on, its routes read from the router, and what a
rejected request must leave unchanged.

    app = build_app(tmp_path)
    routes(app)            # [Route("/log/event", ("/log/event", "/log/event/"), ("POST",)), ...]
    Ledger(app).changed()  # what was stored since the last look (None: nothing)
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import falcon

from statskit_server import create_app
from support import make_settings

PACKAGES_YML = """\
packages:
  - title: Wiki
    kind: zim
    url: //kiwix.box.test/viewer#wikipedia_fr_all
  - title: Shared
    kind: app
    ident: edupi.offspot.kiwix.org
    url: //edupi.box.test/
"""
# Every responder falcon knows (HEAD and OPTIONS included): the methods a route does not take
# are fuzzed too (a 404 or 405, never a 500).
METHODS = tuple(sorted(falcon.COMBINED_METHODS))


def settings_for(data_dir: Path, **overrides: Any) -> Any:
    """Every feature on, tokens required wherever a feature can require them (so the auth paths
    are fuzzed as well), the KPI API over an empty log folder without tailing."""
    logs = data_dir / "proxy-logs"
    logs.mkdir(parents=True, exist_ok=True)
    packages = data_dir / "packages.yml"
    packages.write_text(PACKAGES_YML, encoding="utf-8")
    values: Dict[str, Any] = dict(
        sinks__enabled=["sqlite", "prometheus"],
        limits__max_body_bytes=20_000, limits__max_event_bytes=4_000, limits__max_batch_events=50,
        grafana__enabled=True, grafana__require_token=True, grafana__cors_origins=["https://grafana.test"],
        oneshot__enabled=True, oneshot__require_token=True, oneshot__require_scrape_token=True,
        kpi__enabled=True, kpi__processing_disabled=True, kpi__logs_dir=str(logs),
        kpi__packages_file=str(packages), kpi__dashboard=True, kpi__dashboard_at_root=True,
        kpi__allowed_origins=["*"],
        telemetry__enabled=True, telemetry__require_token=True,
    )
    values.update(overrides)
    return make_settings(data_dir, **values)


def build_app(data_dir: Path, **overrides: Any) -> Any:
    """The app, over telemetry data (two peers, logs, network states) and one benchmark, so
    that the query routes have rows to page, filter and shape."""
    settings = settings_for(data_dir, **overrides)
    if settings.telemetry.enabled:
        fill_telemetry(settings)
    return create_app(settings)


def fill_telemetry(settings: Any) -> None:
    from statskit.telemetry import Row, open_store, parse_frame
    from statskit.telemetry.parsing import NodeInfo

    store = open_store(settings)
    try:
        a, b = store.open_connection("10.0.0.1:1", False), store.open_connection("10.0.0.2:1", True)
        store.update_connection(a, NodeInfo("QmA", name="a", chain="dev", version="1.0", authority=True,
                                            startup_time=1600000000000, implementation="substrate"))
        store.update_connection(b, NodeInfo("QmB", name="b"))
        rows = [Row(a, False, parse_frame(json.dumps({"msg": "block.import" if i % 2 else "tracing.profiling",
                                                       "ts": f"2020-01-01T00:00:0{i}Z", "height": i, "target": "babe"})))
                for i in range(6)]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        state = {"peerset": {"nodes": {"QmB": {"reputation": -5, "connected": True}, "QmX": {"reputation": 3}}}}
        rows.append(Row(a, False, parse_frame(json.dumps({"msg": "system.network_state", "ts": now, "state": state}))))
        rows.append(Row(b, True, parse_frame(json.dumps({"msg": "system.network_state", "ts": now,
                                                          "state": {"peerset": {"nodes": {"QmA": {"reputation": 2}}}}}))))
        store.insert_messages(rows)
        store.create_benchmark({"substrate": {"peerId": "QmA"}})
    finally:
        store.close()


@dataclass(frozen=True)
class Route:
    """One path, with and without a trailing slash when the app has both."""

    template: str                  # the path without its trailing slash variant ("/" for the root)
    templates: Tuple[str, ...]     # every template the resource is mounted at
    methods: Tuple[str, ...]       # the methods it has a responder for
    fields: Tuple[str, ...]        # the path's {fields}

    @property
    def name(self) -> str:
        return self.template


def _nodes(nodes: List[Any]) -> List[Any]:
    out = []
    for node in nodes:
        if node.resource is not None:
            out.append(node)
        out.extend(_nodes(node.children))
    return out


def routes(app: falcon.App) -> List[Route]:
    """Every route of ``app``'s router (a new route is fuzzed without being listed anywhere)."""
    grouped: Dict[str, List[Any]] = {}
    for node in _nodes(app._router._roots):  # falcon's CompiledRouter keeps no public list
        grouped.setdefault(node.uri_template.rstrip("/") or "/", []).append(node)
    found = []
    for key, nodes in grouped.items():
        methods = tuple(m for m in METHODS if any(hasattr(n.resource, "on_" + m.lower()) for n in nodes))
        fields = tuple(sorted({f for n in nodes for f in _fields(n.uri_template)}))
        found.append(Route(key, tuple(sorted(n.uri_template for n in nodes)), methods, fields))
    if app._static_routes or app._sinks:
        raise AssertionError("the fuzz tests know no static route or sink: teach fuzz_app.routes() them")
    return sorted(found, key=lambda r: r.template)


def _fields(template: str) -> List[str]:
    return [part[1:-1] for part in template.split("/") if part.startswith("{") and part.endswith("}")]


# Tables whose rows are what a 2xx stored (events, one-shot posts, benchmarks); a 4xx must not
# add or remove any. (Counters move on any request: they are not in this list.)
WRITE_TABLES = ("events", "oneshot_events", "benchmarks", "benchmark_events")


class Ledger:
    """What the app has stored: row counts of the write tables in every SQLite file of the data
    dir (read on a connection of our own: what another process would see) and the Grafana
    payloads accepted (they are applied by a background thread, so counted as submitted)."""

    def __init__(self, app: Any) -> None:
        runtime = app.statskit
        self.data_dir = Path(runtime.settings.server.data_dir)
        self.submitted = 0
        tracker = runtime.services.get("grafana")
        if tracker is not None:
            submit = tracker.submit

            def counting_submit(payload: Any, now: Optional[float] = None, body: Optional[bytes] = None) -> None:
                submit(payload, now, body=body)
                self.submitted += 1

            tracker.submit = counting_submit
        # Open the stores a feature opens on first use, so that their tables are counted from the start.
        telemetry = runtime.services.get("telemetry")
        if telemetry is not None:
            telemetry.store()
        oneshot = runtime.services.get("oneshot")
        if oneshot is not None:
            oneshot.queue.stored()
        self._queries: List[Tuple[sqlite3.Connection, str]] = []
        self._last = self.snapshot()

    def _connect(self) -> None:
        for conn, _ in self._queries:
            conn.close()
        self._queries = []
        for path in sorted(self.data_dir.glob("*.db")):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in WRITE_TABLES:
                if table in names:
                    self._queries.append((conn, f"SELECT count(*) FROM {table}"))

    def snapshot(self) -> Tuple[int, ...]:
        if not self._queries:
            self._connect()
        counts = tuple(conn.execute(sql).fetchone()[0] for conn, sql in self._queries)
        return counts + (self.submitted,)

    def changed(self) -> Optional[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
        """``(before, after)`` when something was stored or removed since the last call."""
        now = self.snapshot()
        before, self._last = self._last, now
        return None if now == before else (before, now)

    def close(self) -> None:
        for conn, _ in self._queries:
            conn.close()
        self._queries = []
