"""What the KPI routes and ``/metrics`` read: aggregations, KPI values, records, exports.

Reads use their own connection per thread on ``kpi.db`` (WAL): they never wait for the tailer.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..metrics import Scrape
from ..state.sqlite import SQLiteDB
from . import kpis, periods, store
from .runner import Processor


def _data(text: str) -> Any:
    stored = orjson.loads(text)
    return stored.get("data", stored) if isinstance(stored, dict) else stored


class KpiService:
    def __init__(self, db: SQLiteDB, processor: Optional[Processor] = None) -> None:
        self.db = db
        self.processor = processor

    def close(self, timeout: Optional[float] = None) -> None:
        if self.processor is not None:
            self.processor.close(timeout)
        self.db.close()

    # ------------------------------------------------------------------ the original's API
    def aggregations(self) -> List[Dict[str, str]]:
        rows = self.db.connection().execute("SELECT DISTINCT agg_kind, agg_value FROM kpi ORDER BY agg_kind, agg_value")
        return [{"kind": kind, "value": value} for kind, value in rows]

    def aggregation(self, kind: str) -> Dict[str, Any]:
        periods.check_kind(kind)
        conn = self.db.connection()
        by_kpi: Dict[int, List[Dict[str, Any]]] = {}
        available: set = set()
        for kpi_id, value, text in conn.execute(
                "SELECT kpi_id, agg_value, kpi_value FROM kpi WHERE agg_kind = ? ORDER BY kpi_id, agg_value", (kind,)):
            by_kpi.setdefault(kpi_id, []).append({"aggValue": value, "kpiValue": _data(text)})
            available.add(value)
        values = sorted(available)
        return {"aggKind": kind, "valuesAvailable": values, "valuesAll": periods.values_all(kind, values),
                "kpis": [{"kpiId": kpi_id, "values": vals} for kpi_id, vals in sorted(by_kpi.items())]}

    def kpi_value(self, kpi_id: int, kind: str, value: str) -> Optional[Any]:
        row = self.db.connection().execute(
            "SELECT kpi_value FROM kpi WHERE kpi_id = ? AND agg_kind = ? AND agg_value = ?",
            (kpi_id, kind, value)).fetchone()
        return None if row is None else _data(row[0])

    # ------------------------------------------------------------------ beyond the original
    def export(self, kind: str, first: str = "", last: str = "",
               kpi_ids: Optional[Iterable[int]] = None) -> List[Tuple[Any, ...]]:
        """``(kpi_id, kpi name, kind, aggregation value, package, measure, value)`` rows."""
        periods.check_kind(kind)
        wanted = set(kpi_ids) if kpi_ids else None
        rows = []
        for kpi_id, value, text in self.db.connection().execute(
                "SELECT kpi_id, agg_value, kpi_value FROM kpi WHERE agg_kind = ? AND agg_value >= ? "
                "AND (? = '' OR agg_value <= ?) ORDER BY agg_value, kpi_id", (kind, first, last, last)):
            if wanted is not None and kpi_id not in wanted:
                continue
            name = kpis.KPI_NAMES.get(kpi_id, str(kpi_id))
            for package, measure, number in kpis.csv_rows(kpi_id, _data(text)):
                rows.append((kpi_id, name, kind, value, package, measure, number))
        return rows

    def records(self, since: int, after: int, limit: int) -> List[Dict[str, Any]]:
        """Hourly indicator records of periods from ``since`` on, with an id above ``after``
        (the cursor of the previous page), by id: the intermediate format."""
        rows = self.db.connection().execute(
            "SELECT r.id, r.period_id, r.indicator_id, d.value0, d.value1, d.value2, r.value FROM indicator_record r "
            "JOIN indicator_dimension d ON d.id = r.dimension_id WHERE r.period_id >= ? AND r.id > ? "
            "ORDER BY r.id LIMIT ?", (since, after, limit))
        return [{"id": rid, "period": period, "indicatorId": ind, "dimensions": [v for v in (v0, v1, v2) if v is not None],
                 "value": value} for rid, period, ind, v0, v1, v2, value in rows]

    # ------------------------------------------------------------------ /metrics
    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        conn = self.db.connection()
        lines = CounterMetricFamily("statskit_kpi_log_lines", "Complete access-log lines processed, by result.",
                                    labels=["result"])
        dropped = CounterMetricFamily("statskit_kpi_inputs_dropped", "Indicator inputs dropped, by reason.",
                                      labels=["reason"])
        seen = {"accepted": 0, "too_long": 0, "not_json": 0, "not_handled_request": 0, "bad_timestamp": 0}
        drops = {"too_wide_usage": 0, "indicator_error": 0}
        consumed = 0
        for name, reason, value in store.counters(conn):
            if name == "lines":
                seen["accepted"] += value
            elif name == "lines_skipped":
                seen[reason] = seen.get(reason, 0) + value
            elif name == "inputs_dropped":
                drops[reason] = drops.get(reason, 0) + value
            elif name == "events":
                consumed += value
        for result, value in sorted(seen.items()):
            lines.add_metric([result], value)
        for reason, value in sorted(drops.items()):
            dropped.add_metric([reason], value)
        events = CounterMetricFamily("statskit_kpi_events_consumed", "Posted events fed into the KPI engine.")
        events.add_metric([], consumed)
        files = GaugeMetricFamily("statskit_kpi_log_files", "Access-log files followed.")
        files.add_metric([], conn.execute("SELECT COUNT(*) FROM log_file").fetchone()[0])
        values = GaugeMetricFamily("statskit_kpi_values", "KPI values stored, by aggregation kind.", labels=["kind"])
        for kind, count in conn.execute("SELECT agg_kind, COUNT(*) FROM kpi GROUP BY agg_kind ORDER BY agg_kind"):
            values.add_metric([kind], count)
        beat = store.get_meta(conn, "heartbeat")
        heartbeat = GaugeMetricFamily("statskit_kpi_processing_heartbeat_timestamp_seconds",
                                      "When the KPI processing last committed a batch or an idle check (0: never); "
                                      "stale by more than [kpi] inactivity: no process is tailing.")
        heartbeat.add_metric([], float(orjson.loads(beat)["time"]) if beat else 0.0)
        return [lines, dropped, events, files, values, heartbeat]
