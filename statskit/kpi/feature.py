"""The KPI feature: its ``[kpi]`` options and how its service is built (off by default)."""
from __future__ import annotations

import logging
import os

from ..config import ConfigError, Option, Settings, parse_bool, parse_list, parse_positive_duration, parse_size
from ..feature import Built, Context
from ..state.sqlite import SQLiteDB
from . import kpis
from .events import EventInbox
from .extensions import load_indicators, log_format
from .inputs import Generators
from .packages import PackagesConf, PackagesError, load_packages
from .runner import Processor
from .service import KpiService
from .store import SCHEMA
from .tailer import Tailer

log = logging.getLogger("statskit.kpi")

DATABASE_NAME, LOCK_NAME = "kpi.db", "kpi.lock"
_B, _PD = parse_bool, parse_positive_duration


def parse_origins(value: str) -> list:
    """``ALLOWED_ORIGINS``, split on ``|`` as the original did."""
    return [item.strip() for item in value.split("|") if item.strip()]


OPTIONS = [
    Option("kpi", "enabled", False, _B, None, None, "tail access logs into KPIs and mount /api/v1 (the offspot API)"),
    Option("kpi", "logs_dir", "/reverse-proxy-logs", str, "REVERSE_PROXY_LOGS_LOCATION", None,
           "folder of Caddy JSON access logs, followed recursively"),
    Option("kpi", "pattern", "caddy_access_logs*.json", str, "REVERSE_PROXY_LOGS_PATTERN", None,
           "file names followed in logs_dir"),
    Option("kpi", "log_format", "caddy", str, None, None,
           "how log lines are read: caddy, or a statskit.kpi.log_formats entry point"),
    Option("kpi", "indicators", [], parse_list, None, None,
           "third-party indicators and their KPIs: statskit.kpi.indicators entry point names"),
    Option("kpi", "packages_file", "/conf/packages.yml", str, "PACKAGE_CONF_FILE", None,
           "the offspot packages.yml: hosts and URLs of the content packages"),
    Option("kpi", "processing_disabled", False, _B, "PROCESSING_DISABLED", None, "serve the KPIs without tailing"),
    Option("kpi", "allowed_origins", [], parse_origins, "ALLOWED_ORIGINS", None, "CORS origins of /api, split on |"),
    Option("kpi", "dashboard", True, _B, None, None, "serve the built-in KPI dashboard at /dashboard/"),
    Option("kpi", "dashboard_at_root", False, _B, None, None,
           "GET / from a browser (asking for HTML) gets the dashboard; JSON clients, /healthz, /ping unchanged"),
    Option("kpi", "ui_location", "", str, "UI_LOCATION", None,
           "folder of another built KPI dashboard (the original's Vue app), served at /dashboard/ instead"),
    Option("kpi", "database", "", str, None, None, "the KPI SQLite file (default: <data_dir>/kpi.db)"),
    Option("kpi", "legacy_state_dir", "", str, "LOGWATCHER_DATA_FOLDER", None,
           "folder of the original's log_watcher_state.json, whose offsets are imported once"),
    Option("kpi", "max_line_bytes", 64 * 1024, parse_size, None, None, "longer log lines are skipped and counted"),
    Option("kpi", "read_gzip", False, _B, None, None,
           "also read <pattern>.gz files (Caddy's roll_gzip); one compressed from a followed file continues it"),
    Option("kpi", "poll_interval", 1.0, _PD, None, None, "how often the log folder is looked at"),
    Option("kpi", "inactivity", 10.0, _PD, None, None, "with no log line for this long, ticks follow the clock"),
    Option("kpi", "lock_retry", 2.0, _PD, None, None, "how often a worker tries to become the tailer"),
    Option("kpi", "events", False, _B, None, None,
           "also feed events posted to /log/event(s) into KPIs 2101 EventCounts and 2102 DistinctUids"),
    Option("kpi", "event_names", [], parse_list, None, None, "only these event names (default: every event)"),
]


class KpiFeature:
    """Access-log KPIs (the offspot metrics system): indicators, D/W/M/Y KPIs, ``/api/v1``."""

    name = "kpi"
    options = OPTIONS

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.kpi.enabled)

    def build(self, ctx: Context) -> Built:
        conf = ctx.settings.kpi
        data_dir = ctx.settings.server.data_dir
        os.makedirs(data_dir, exist_ok=True)
        db = SQLiteDB(conf.database or os.path.join(data_dir, DATABASE_NAME))
        db.ensure_schema(SCHEMA)
        try:
            extra = load_indicators(conf.indicators)
            for indicator in extra:  # known to the API (names, export) even without processing
                kpis.register(indicator)
        except LookupError as exc:
            db.close()
            raise ConfigError(f"[kpi] indicators: {exc}") from None
        processor = None
        if not conf.processing_disabled:
            packages = PackagesConf()  # an empty packages_file: no access-log inputs (events only)
            if conf.packages_file:
                try:
                    packages = load_packages(conf.packages_file)
                except PackagesError as exc:
                    raise ConfigError(f"[kpi] packages_file (PACKAGE_CONF_FILE): {exc}") from None
            try:
                parse = log_format(conf.log_format)
            except LookupError as exc:
                raise ConfigError(f"[kpi] log_format: {exc}") from None
            tailer = Tailer(conf.logs_dir, conf.pattern, conf.max_line_bytes, read_gzip=conf.read_gzip)
            processor = Processor(db, tailer, Generators(packages.packages, extra), os.path.join(data_dir, LOCK_NAME),
                                  poll_interval=conf.poll_interval, inactivity=conf.inactivity,
                                  lock_retry=conf.lock_retry, legacy_state_dir=conf.legacy_state_dir,
                                  events=conf.events, parse=parse)
            if conf.events:
                # Fed from the durable event log (exactly once, see kpi/events.py).
                ctx.pipeline.add(EventInbox(db, conf.event_names))
            processor.start()
        service = KpiService(db, processor)
        return Built(service, metric_sources=[service], closers=[service.close])


FEATURE = KpiFeature()
