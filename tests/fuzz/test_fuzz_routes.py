"""Fuzzing every route in-process (falcon.testing) with hypothesis: no input is a 5xx, every
4xx is a JSON error (or the route's documented compatibility shape) and stores nothing.

The routes come from the app's router, with every feature on (fuzz_app.py), so a new route
is fuzzed without being listed here. Cases per route: 2,000 under CI=true, 200 otherwise,
``STATSKIT_FUZZ_EXAMPLES=N`` to choose. No example database is kept (no ``.hypothesis``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List

import pytest
from falcon import testing
from hypothesis import HealthCheck, Phase, given, settings

from fuzz_app import METHODS, Ledger, Route, build_app, routes, settings_for
from fuzz_strategies import Case, json_body, requests_for
from statskit.feature import load_features

pytestmark = pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")  # odd methods, on purpose

CI = os.environ.get("CI") == "true"
EXAMPLES = int(os.environ.get("STATSKIT_FUZZ_EXAMPLES") or (2000 if CI else 200))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                phases=(Phase.explicit, Phase.generate, Phase.shrink),
                suppress_health_check=list(HealthCheck))
# Documented 4xx answers that are not {"error", "message"} (README, the route's docstring).
COMPAT_4XX = {("/api/v1/kpis/{kpi_id}/values", 404): {"detail"}}  # offspot's {"detail": "KPI not found"}
ERROR_KEYS = {"error", "message"}


def _collect() -> List[Route]:
    with tempfile.TemporaryDirectory(prefix="statskit-fuzz-") as folder:
        app = build_app(Path(folder))
        try:
            return routes(app)
        finally:
            app.statskit.close(1.0)


ROUTES = _collect()


def test_every_feature_is_on_and_every_route_found(tmp_path):
    """The fuzzed app has every feature on (a new feature off by default fails here: switch it
    on in fuzz_app.settings_for), and the router walk finds each feature's routes."""
    settings = settings_for(tmp_path)
    off = [f.name for f in load_features() if not f.enabled(settings)]
    assert off == [], f"features the fuzz tests do not switch on: {off} (see tests/fuzz/fuzz_app.py)"
    names = {r.template for r in ROUTES}
    assert {"/", "/log/event", "/log/event/{event_id}", "/write", "/event", "/metrics", "/api/v1/export",
            "/dashboard/{name}", "/nodes/logs", "/benchmarks/{benchmark_id}/events"} <= names
    assert all(r.methods for r in ROUTES), [r.template for r in ROUTES if not r.methods]


def check(client: testing.TestClient, ledger: Ledger, route: Route, case: Case) -> None:
    resp = client.simulate_request(case.method, case.path, query_string=case.query, headers=case.headers,
                                   body=case.body, remote_addr=case.remote_addr or None)
    status = resp.status_code
    assert status < 500, f"{status} {resp.text[:500]}"
    changed = ledger.changed()
    if status < 400:
        return
    assert changed is None, f"a {status} changed what is stored: {changed} ({resp.text[:300]})"
    if case.method == "HEAD":
        return
    doc = json_body(resp.text)
    compat = COMPAT_4XX.get((route.template, status), ERROR_KEYS)
    assert isinstance(doc, dict) and (ERROR_KEYS <= set(doc) or compat <= set(doc)), \
        f"{status} is not a JSON error: {resp.text[:300]!r}"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_route_fuzz(route: Route, tmp_path: Path) -> None:
    app = build_app(tmp_path)
    client = testing.TestClient(app)
    ledger = Ledger(app)
    try:
        @FUZZ
        @given(requests_for(route.templates, route.methods, METHODS, route.fields))
        def fuzz(case: Case) -> None:
            check(client, ledger, route, case)

        fuzz()
    finally:
        ledger.close()
        app.statskit.close(2.0)
