"""Access-log KPIs: the offspot metrics system (web-server logs into business KPIs).

Caddy JSON access logs under ``[kpi] logs_dir`` are followed (:mod:`.tailer`), each handled
request becomes indicator inputs according to the offspot ``packages.yml`` (:mod:`.packages`,
:mod:`.inputs`), the inputs feed hourly indicators (:mod:`.indicators`), and each finished hour
updates the day/week/month/year KPIs (:mod:`.kpis`, :mod:`.periods`, :mod:`.engine`), all in
``<data_dir>/kpi.db`` (:mod:`.store`). One process per data dir tails (:mod:`.runner`); every
worker serves the original's REST API (``statskit_server/routes/kpi.py``).
"""
from .feature import FEATURE, KpiFeature
from .service import KpiService

__all__ = ["FEATURE", "KpiFeature", "KpiService"]
