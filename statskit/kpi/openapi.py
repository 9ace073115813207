"""The OpenAPI description of ``/api/v1`` and an offline docs page that renders it (the boxes
have no Internet access, so nothing is loaded from a CDN).

    >>> sorted(openapi()["paths"])[:2]
    ['/api/v1/aggregations', '/api/v1/aggregations/{kind}']
"""
from __future__ import annotations

from typing import Any, Dict, List

from .. import __version__


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


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>statskit KPI API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
section{border:1px solid #ccc;border-radius:4px;margin:1em 0;padding:.5em 1em}
code{background:#f4f4f4;padding:0 .2em}pre{background:#f4f4f4;padding:.5em;overflow:auto;max-height:20em}
label{display:block;margin:.2em 0}</style></head>
<body><h1>statskit KPI API</h1><p>OpenAPI description: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a></p>
<div id="paths"></div>
<script>
fetch("/api/v1/openapi.json").then(function (r) { return r.json(); }).then(function (spec) {
  var root = document.getElementById("paths");
  Object.keys(spec.paths).forEach(function (path) {
    var op = spec.paths[path].get, box = document.createElement("section");
    box.innerHTML = "<h2><code>GET " + path + "</code></h2><p>" + op.summary + "</p>";
    var form = document.createElement("form"), out = document.createElement("pre");
    (op.parameters || []).forEach(function (p) {
      var l = document.createElement("label");
      l.textContent = p.name + " (" + p.in + (p.required ? ", required" : "") + "): ";
      var i = document.createElement("input"); i.name = p.name; i.title = p.description; i.dataset.in = p.in;
      l.appendChild(i); form.appendChild(l);
    });
    var b = document.createElement("button"); b.textContent = "Try it"; form.appendChild(b);
    form.onsubmit = function (e) {
      e.preventDefault(); var url = path, q = [];
      Array.prototype.forEach.call(form.elements, function (i) {
        if (!i.name || !i.value) return;
        if (i.dataset.in === "path") url = url.replace("{" + i.name + "}", encodeURIComponent(i.value));
        else q.push(encodeURIComponent(i.name) + "=" + encodeURIComponent(i.value));
      });
      if (q.length) url += "?" + q.join("&");
      fetch(url).then(function (r) { return r.text().then(function (t) { out.textContent = r.status + " " + url + "\\n" + t; }); });
    };
    box.appendChild(form); box.appendChild(out); root.appendChild(box);
  });
});
</script></body></html>
"""
