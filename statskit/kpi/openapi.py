"""The OpenAPI description of ``/api/v1``, and the files of the docs page that renders it:
Swagger UI, vendored in ``static/swagger-ui/`` (the boxes have no Internet access, so nothing
is loaded from a CDN), set up by ``static/docs.html`` and ``static/docs.js``.

    >>> sorted(openapi()["paths"])[:2]
    ['/api/v1/aggregations', '/api/v1/aggregations/{kind}']
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from .. import __version__

STATIC = Path(__file__).resolve().parent / "static"
DOCS_PAGE = "docs.html"


def _param(name: str, where: str, description: str, required: bool = True, schema: Any = None) -> Dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema or {"type": "string"}}


_KIND = {"type": "string", "enum": ["D", "W", "M", "Y"]}
_ERRORS = {"404": {"description": 'no such KPI value: {"detail": "KPI not found"}'},
           "422": {"description": "a missing or bad parameter"}}


def openapi() -> Dict[str, Any]:
    value_params: List[Dict[str, Any]] = [
        _param("kpi_id", "path", "2001 PackagePopularity, 2003 TotalUsage, 2004 Uptime, 2005 SharedFiles",
               schema={"type": "integer"}),
        _param("agg_kind", "query", "aggregation kind", schema=_KIND),
        _param("agg_value", "query", "aggregation value: 2024-05-01, 2024 W18, 2024-05 or 2024"),
        _param("format", "query", "csv for a CSV file", required=False, schema={"type": "string", "enum": ["csv"]})]
    return {
        "openapi": "3.0.3",
        "info": {"title": "statskit KPI API (offspot metrics compatible)", "version": __version__},
        "paths": {
            "/api/v1/aggregations": {"get": {
                "summary": "Every aggregation (kind and value) with KPI values, sorted by kind then value",
                "responses": {"200": {"description": '{"aggregations": [{"kind", "value"}]}'}}}},
            "/api/v1/aggregations/{kind}": {"get": {
                "summary": "Every KPI value of one aggregation kind",
                "parameters": [_param("kind", "path", "aggregation kind", schema=_KIND)],
                "responses": {"200": {"description": '{"aggKind", "valuesAvailable", "valuesAll", "kpis": '
                                                     '[{"kpiId", "values": [{"aggValue", "kpiValue"}]}]}'},
                              "422": _ERRORS["422"]}}},
            "/api/v1/kpis/{kpi_id}/values": {"get": {
                "summary": "One KPI value", "parameters": value_params,
                "responses": {"200": {"description": '{"kpiId", "value"}'}, **_ERRORS}}},
            "/api/v1/export": {"get": {
                "summary": "KPI values over a range of aggregation values, as CSV or JSON rows",
                "parameters": [_param("agg_kind", "query", "aggregation kind", schema=_KIND),
                               _param("from", "query", "first aggregation value (inclusive)", False),
                               _param("to", "query", "last aggregation value (inclusive)", False),
                               _param("kpi_id", "query", "only these KPIs (comma-separated)", False),
                               _param("format", "query", "csv (default) or json", False)],
                "responses": {"200": {"description": "kpi_id,kpi,agg_kind,agg_value,package,measure,value"},
                              "422": _ERRORS["422"]}}},
            "/api/v1/records": {"get": {
                "summary": "Hourly indicator records from a period on (the intermediate format)",
                "parameters": [_param("since", "query", "hour start epoch (inclusive)", False, {"type": "integer"}),
                               _param("after", "query", "the previous page's next (a record id)", False,
                                      {"type": "integer"}),
                               _param("limit", "query", "at most this many (max 10000)", False, {"type": "integer"})],
                "responses": {"200": {"description": '{"records": [{"id", "period", "indicatorId", "dimensions", '
                                                     '"value"}], "next"}'}, "422": _ERRORS["422"]}}},
        },
    }
