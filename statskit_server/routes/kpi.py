"""``/api/v1``: the offspot metrics REST API (its Vue dashboard works against it unchanged).

    curl http://127.0.0.1:8080/api/v1/aggregations
    curl http://127.0.0.1:8080/api/v1/aggregations/W
    curl 'http://127.0.0.1:8080/api/v1/kpis/2001/values?agg_kind=D&agg_value=2024-05-01'
    curl 'http://127.0.0.1:8080/api/v1/export?agg_kind=M&from=2024-01&to=2024-12' > kpis.csv

=====  ==================================================================================
200    the original's JSON (camelCase); ``format=csv`` on a KPI value or ``/export`` gives CSV
307    ``GET /api`` -> ``/api/v1/`` (the API docs page: Swagger UI, vendored, served offline)
404    ``{"detail": "KPI not found"}`` (no such KPI value), as the original
422    a missing or bad parameter (an aggregation kind other than D, W, M, Y, such as ``DX``
       which crashed the original with a 500; a malformed value; a kpi_id that is not a
       number): FastAPI's ``{"detail": [{"loc", "msg", "type"}]}`` plus statskit's
       ``error``/``message``
=====  ==================================================================================

The routes are read-only and need no token, as in the original (the box is a local hotspot);
CORS allows the ``ALLOWED_ORIGINS`` (``|``-separated). The built-in dashboard over this API is
served at ``/dashboard/`` (``kpi_dashboard.py``).
"""
from __future__ import annotations

import csv
import io
import os
import re
from typing import Any, List, Optional

import falcon

from statskit.kpi import KpiService
from statskit.kpi.kpis import KPI_NAMES
from statskit.kpi.openapi import DOCS_PAGE, STATIC, openapi
from statskit.kpi.periods import BadPeriod, check_kind, first_day

from . import Web
from .kpi_dashboard import Files, Index, load, mount_dashboard, page

MAX_RECORDS = 10000
_ID = re.compile(r"^[0-9]{1,9}$")  # ASCII digits only (str.isdigit() takes '²'), and no SQLite overflow
_EPOCH = re.compile(r"^-?[0-9]{1,12}$")


def _unprocessable(resp: falcon.Response, field: str, message: str, where: str = "query") -> Any:
    """Answer 422 as FastAPI did; returns None, for ``return _unprocessable(...)``."""
    resp.status = falcon.HTTP_422
    resp.media = {"detail": [{"loc": [where, field], "msg": message, "type": "value_error"}],
                  "error": "unprocessable_entity", "message": f"{field}: {message}"}


def _csv(resp: falcon.Response, header: List[str], rows: List[Any], filename: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    resp.text = out.getvalue()
    resp.content_type = "text/csv; charset=utf-8"
    resp.set_header("Content-Disposition", f'attachment; filename="{filename}"')


def _kind_and_value(req: falcon.Request, resp: falcon.Response, value_param: str = "agg_value") -> Optional[tuple]:
    kind, value = req.get_param("agg_kind"), req.get_param(value_param)
    if kind is None:
        return _unprocessable(resp, "agg_kind", "field required")
    try:
        check_kind(kind)
    except BadPeriod as exc:
        return _unprocessable(resp, "agg_kind", str(exc))
    if value is None:
        return _unprocessable(resp, value_param, "field required")
    return kind, value


class Aggregations:
    def __init__(self, kpi: KpiService) -> None:
        self.kpi = kpi

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"aggregations": self.kpi.aggregations()}


class Aggregation:
    def __init__(self, kpi: KpiService) -> None:
        self.kpi = kpi

    def on_get(self, req: falcon.Request, resp: falcon.Response, kind: str) -> None:
        try:
            resp.media = self.kpi.aggregation(kind)
        except BadPeriod as exc:
            _unprocessable(resp, "agg_kind", str(exc), "path")


class KpiValues:
    def __init__(self, kpi: KpiService) -> None:
        self.kpi = kpi

    def on_get(self, req: falcon.Request, resp: falcon.Response, kpi_id: str) -> None:
        if not _ID.match(kpi_id):
            return _unprocessable(resp, "kpi_id", "value is not a valid integer", "path")
        found = _kind_and_value(req, resp)
        if found is None:
            return None
        kind, value = found
        value_data = self.kpi.kpi_value(int(kpi_id), kind, value)
        if value_data is None:
            resp.status = falcon.HTTP_404
            resp.media = {"detail": "KPI not found"}
            return None
        if req.get_param("format") == "csv":
            rows = [r[1:] for r in self.kpi.export(kind, value, value, [int(kpi_id)])]
            return _csv(resp, ["kpi", "agg_kind", "agg_value", "package", "measure", "value"], rows,
                        f"kpi-{kpi_id}-{kind}-{value}.csv")
        resp.media = {"kpiId": int(kpi_id), "value": value_data}
        return None


class Export:
    """Every KPI (or ``kpi_id``s) of one kind over ``from``..``to`` (inclusive labels), as CSV
    (default) or JSON rows: what the hotspot users asked for, for their funders."""

    def __init__(self, kpi: KpiService) -> None:
        self.kpi = kpi

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = req.get_param("agg_kind")
        if kind is None:
            return _unprocessable(resp, "agg_kind", "field required")
        try:
            check_kind(kind)
            for name in ("from", "to"):
                given = req.get_param(name)
                if given:
                    first_day(kind, given)
        except BadPeriod as exc:
            return _unprocessable(resp, "agg_kind/from/to", str(exc))
        ids = req.get_param_as_list("kpi_id") or []
        if not all(_ID.match(i) and int(i) in KPI_NAMES for i in ids):
            return _unprocessable(resp, "kpi_id", f"must be among {sorted(KPI_NAMES)}")
        rows = self.kpi.export(kind, req.get_param("from") or "", req.get_param("to") or "", [int(i) for i in ids])
        fmt = req.get_param("format") or "csv"
        if fmt == "json":
            keys = ("kpiId", "kpi", "aggKind", "aggValue", "package", "measure", "value")
            resp.media = {"rows": [dict(zip(keys, row)) for row in rows]}
        elif fmt == "csv":
            _csv(resp, ["kpi_id", "kpi", "agg_kind", "agg_value", "package", "measure", "value"], rows,
                 f"kpis-{kind}.csv")
        else:
            _unprocessable(resp, "format", "must be csv or json")
        return None


class Records:
    """The hourly indicator records (the seed's intermediate format), read-only, paged by id."""

    def __init__(self, kpi: KpiService) -> None:
        self.kpi = kpi

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        since, after = req.get_param("since") or "0", req.get_param("after") or "0"
        limit = req.get_param("limit") or str(MAX_RECORDS)
        if not _EPOCH.match(since) or not _EPOCH.match(after) or not _ID.match(limit):
            return _unprocessable(resp, "since/after/limit", "value is not a valid integer")
        if not 1 <= int(limit) <= MAX_RECORDS:
            return _unprocessable(resp, "limit", f"must be between 1 and {MAX_RECORDS}")
        records = self.kpi.records(int(since), int(after), int(limit))
        # the next page: ?since=<same>&after=<next>
        resp.media = {"records": records, "next": records[-1]["id"] if len(records) == int(limit) else None}
        return None


class Redirect:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPTemporaryRedirect("/api/v1/")


class OpenAPI:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = openapi()


class Cors:
    """CORS for ``/api`` only, from ``ALLOWED_ORIGINS`` (``*`` allows any)."""

    def __init__(self, origins: List[str]) -> None:
        self.origins = origins

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, done: bool) -> None:
        origin = req.get_header("Origin")
        if not origin or not req.path.startswith("/api") or not ("*" in self.origins or origin in self.origins):
            return
        resp.set_header("Access-Control-Allow-Origin", origin)
        resp.set_header("Access-Control-Allow-Credentials", "true")
        resp.append_header("Vary", "Origin")
        if req.method == "OPTIONS" and req.get_header("Access-Control-Request-Method"):
            resp.set_header("Access-Control-Allow-Methods", "GET, OPTIONS")
            resp.set_header("Access-Control-Allow-Headers", req.get_header("Access-Control-Request-Headers") or "*")
            resp.set_header("Access-Control-Max-Age", "600")


def mount_docs(app: falcon.App) -> None:
    """``/api/v1/``: Swagger UI over ``/api/v1/openapi.json``, as the original's (FastAPI's) docs
    page, with its files served from the package under ``/api/v1/static/`` (versioned links,
    cached for a year; the page itself revalidated), the dashboard's headers and CSP."""
    assets = load(STATIC)
    app.add_route("/api/v1/", Index(page(assets, "static/", DOCS_PAGE)))
    app.add_route("/api/v1/static/{name}", Files(assets, what="docs file"))
    app.add_route("/api/v1/static/swagger-ui/{name}", Files(assets, "swagger-ui/", "docs file"))


def mount(app: falcon.App, kpi: KpiService, web: Web) -> None:
    app.add_route("/api", Redirect())
    app.add_route("/api/v1", Redirect())  # (the original's framework added the slash too)
    mount_docs(app)
    app.add_route("/api/v1/openapi.json", OpenAPI())
    app.add_route("/api/v1/aggregations", Aggregations(kpi))
    app.add_route("/api/v1/aggregations/{kind}", Aggregation(kpi))
    app.add_route("/api/v1/kpis/{kpi_id}/values", KpiValues(kpi))
    app.add_route("/api/v1/export", Export(kpi))
    app.add_route("/api/v1/records", Records(kpi))
    conf = web.settings.kpi
    if conf.ui_location:
        # The original served the UI at /; here / is the health check, so under /dashboard.
        app.add_static_route("/dashboard", os.path.abspath(conf.ui_location), fallback_filename="index.html")
    if conf.ui_location or conf.dashboard:
        mount_dashboard(app, conf.ui_location, conf.dashboard_at_root)
    if web.settings.kpi.allowed_origins:
        app.add_middleware(Cors(web.settings.kpi.allowed_origins))
