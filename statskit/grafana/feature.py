"""The Grafana feature: its ``[grafana]`` options and how its service is built."""
from __future__ import annotations

from ..config import Option, Settings, choice, parse_bool, parse_duration, parse_list
from ..feature import Built, Context
from ..sinks.relay import BacklogMetrics
from .metrics import GrafanaMetrics
from .tracker import SessionTracker

_B, _D, _I, _L = parse_bool, parse_duration, int, parse_list

OPTIONS = [
    Option("grafana", "enabled", True, _B, None, None, "mount POST /write for the analytics panel"),
    Option("grafana", "require_token", False, _B, "WRITE_REQUIRE_TOKEN", None, "/write needs a token (header or ?token=)"),
    Option("grafana", "session_timeout", 0.0, _D, "SESSION_TIMEOUT", "--session-timeout",
           "max credited heartbeat gap; 0 = 1.25 x the panel's heartbeat interval"),
    Option("grafana", "max_cache_size", 100000, _I, "MAX_CACHE_SIZE", "--max-cache-size", "sessions kept (0 = unlimited)"),
    Option("grafana", "idle_timeout", 3600.0, _D, None, None, "a session with no payload for this long may be evicted"),
    Option("grafana", "log_format", "logfmt", choice("logfmt", "json"), "LOG_FORMAT", "--log-format", "session log lines: logfmt or json"),
    Option("grafana", "log_raw", False, _B, "LOG_RAW", "--log-raw", "log the whole decoded payload as JSON"),
    Option("grafana", "disable_user_metrics", False, _B, "DISABLE_USER_METRICS", "--disable-user-metrics",
           "drop user_login and user_name labels"),
    Option("grafana", "disable_session_log", False, _B, "DISABLE_SESSION_LOG", "--disable-session-log", "no session log lines"),
    Option("grafana", "disable_variable_log", False, _B, "DISABLE_VARIABLE_LOG", "--disable-variable-log",
           "omit dashboard variables from session log lines"),
    Option("grafana", "cors_origins", ["*"], _L, "WRITE_CORS_ORIGINS", None, "origins allowed to POST /write with CORS"),
]


class GrafanaFeature:
    """Sessions from the Grafana analytics panel (``POST /write``) and ``grafana_analytics_*``."""

    name = "grafana"
    options = OPTIONS

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.grafana.enabled)

    def build(self, ctx: Context) -> Built:
        settings = ctx.settings
        tracker = SessionTracker.from_settings(settings, ctx.state, ctx.pipeline.sinks)
        if tracker.log is not None:  # the original's start-up lines, which log pipelines may key on
            try:
                tracker.log.write(tracker.log.startup_lines())
            except OSError:  # stdout closed: the lines are a courtesy, never a reason not to start
                pass
        metrics = GrafanaMetrics(ctx.state, not settings.grafana.disable_user_metrics, before_collect=tracker.flush)
        sources: list = [metrics]
        if tracker.relays:  # the session points waiting for InfluxDB: statskit_sink_backlog_events{sink="influxdb.sessions"}
            sources.append(BacklogMetrics(tracker.relays))
        return Built(tracker, metric_sources=sources, closers=[tracker.close])


FEATURE = GrafanaFeature()
