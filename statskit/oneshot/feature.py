"""The one-shot feature: its ``[oneshot]`` options and how its service is built."""
from __future__ import annotations

from ..config import (
    Option,
    Settings,
    parse_bool,
    parse_duration,
    parse_positive_duration,
    parse_positive_int,
)
from ..feature import Built, Context
from ..state.sqlite import SQLiteDB, database_path
from .collector import OneShot
from .queue import QueueLimits, Reporter
from .stores import open_queue

_B, _D, _P, _PD = parse_bool, parse_duration, parse_positive_int, parse_positive_duration

OPTIONS = [
    Option("oneshot", "enabled", True, _B, None, None, "mount POST /event and one-shot samples on /metrics"),
    Option("oneshot", "require_token", False, _B, "EVENT_REQUIRE_TOKEN", None, "/event needs a token"),
    Option("oneshot", "require_scrape_token", False, _B, "SCRAPE_REQUIRE_TOKEN", None,
           "one-shot events go only to /metrics scrapes with a read-scope token"),
    Option("oneshot", "use_explicit_timestamps", False, _B, "USE_EXPLICIT_TIMESTAMPS", "--use-explicit-timestamps",
           "stamp each one-shot sample with its event time"),
    Option("oneshot", "max_scrapers", 10, _P, "MAX_SCRAPERS", "--max-scrapers", "scrapers tracked at once"),
    Option("oneshot", "max_pending", 10000, _P, "MAX_PENDING_EVENTS", "--max-pending-events", "events waiting per scraper (oldest dropped)"),
    Option("oneshot", "scraper_timeout", 600.0, _PD, "SCRAPER_TIMEOUT", "--scraper-timeout", "forget a scraper silent for this long"),
    Option("oneshot", "backfill", 0.0, _D, "BACKFILL_WINDOW", "--backfill-window", "a new scraper also gets events this recent"),
]


class OneShotFeature:
    """One-shot events (``POST /event``), each handed once to every scraper of ``/metrics``."""

    name = "oneshot"
    options = OPTIONS

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.oneshot.enabled)

    def build(self, ctx: Context) -> Built:
        settings = ctx.settings
        queue = open_queue(ctx.state, QueueLimits.from_settings(settings.oneshot), Reporter(ctx.state),
                           host_db=lambda: SQLiteDB(database_path(settings.server.data_dir)),
                           commit_wait=settings.sqlite.commit_wait)
        oneshot = OneShot(queue, ctx.state, explicit_timestamps=settings.oneshot.use_explicit_timestamps,
                          max_event_bytes=settings.limits.max_event_bytes,
                          require_scrape_token=settings.oneshot.require_scrape_token)
        # close() commits buffered posts at a graceful stop.
        return Built(oneshot, metric_sources=[oneshot], closers=[oneshot.close])


FEATURE = OneShotFeature()
