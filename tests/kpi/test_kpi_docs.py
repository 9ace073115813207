"""The API docs page ``/api/v1/`` (the original's Swagger UI): vendored Swagger UI served by
statskit itself, in-process (types, caching, 404 JSON) and in a real headless Chromium against a
real statskit-server (gunicorn): every route of the OpenAPI description is shown, "Try it out"
reaches the API, and no request goes anywhere but the server (the boxes are offline)."""
from __future__ import annotations

import hashlib
from typing import Any, Dict, List

import pytest
import requests

from browser import Chromium
from conftest import make_real_server
from gunicorn_server import StatskitServer
from statskit.kpi.openapi import STATIC

from dashboard_sample import write_sample
from test_kpi_api import settings_for

VENDORED = STATIC / "swagger-ui"
ASSETS = {"swagger-ui/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
          "swagger-ui/swagger-ui.css": "text/css; charset=utf-8",
          "swagger-ui/favicon-32x32.png": "image/png",
          "swagger-ui/LICENSE": "text/plain; charset=utf-8",
          "docs.js": "text/javascript; charset=utf-8"}


@pytest.fixture
def client(tmp_path, app_client):
    return app_client(settings_for(tmp_path, **{"kpi.processing_disabled": True}))


def linked(html: str) -> Dict[str, str]:
    """``{file: ?v= value}`` of every ``static/...`` link of the page."""
    found = {}
    for part in html.split('"'):
        if part.startswith("static/") and "?v=" in part:
            name, version = part[len("static/"):].split("?v=")
            found[name] = version
    return found


def test_the_docs_page_links_the_vendored_files_by_version(client):
    page = client.simulate_get("/api/v1/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache" and "script-src 'self'" in page.headers["content-security-policy"]
    assert "//cdn" not in page.text and "https://" not in page.text
    links = linked(page.text)
    assert set(links) == {"swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css",
                          "swagger-ui/favicon-32x32.png", "docs.js"}
    for name, version in links.items():
        assert version == hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:16]


@pytest.mark.parametrize("name, content_type", sorted(ASSETS.items()))
def test_each_asset_is_served_from_the_package_with_its_type_and_cache_headers(client, name, content_type):
    body = (STATIC / name).read_bytes()
    version = hashlib.sha256(body).hexdigest()[:16]
    got = client.simulate_get(f"/api/v1/static/{name}", params={"v": version})
    assert got.status_code == 200 and got.content == body
    assert got.headers["content-type"] == content_type
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert got.headers["x-content-type-options"] == "nosniff"
    unversioned = client.simulate_get(f"/api/v1/static/{name}")
    assert unversioned.headers["cache-control"] == "no-cache" and unversioned.content == body
    again = client.simulate_get(f"/api/v1/static/{name}", headers={"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", ["/api/v1/static/swagger-ui/swagger-ui.js", "/api/v1/static/nothing.js",
                                  "/api/v1/static/swagger-ui/..%2F..%2Fopenapi.py", "/api/v1/static/swagger-ui/"])
def test_a_missing_asset_is_a_404_json(client, path):
    got = client.simulate_get(path)
    assert got.status_code == 404 and got.headers["content-type"].startswith("application/json")
    assert got.json["error"] == "not_found"


def test_the_vendored_copy_says_its_version_and_ships_with_the_package():
    readme = (VENDORED / "README.txt").read_text()
    assert "swagger-ui-dist@5." in readme and "npm pack" in readme
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE",
                 "swagger-ui-bundle.js.LICENSE.txt"):
        assert f"{hashlib.sha256((VENDORED / name).read_bytes()).hexdigest()}  {name}" in readme, name
    setup_cfg = (STATIC.parents[2] / "setup.cfg").read_text()
    assert "statskit = kpi/static/*, kpi/static/swagger-ui/*" in setup_cfg


# ------------------------------------------------------------------ a real browser
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("docs") / "data"
    write_sample(data)
    with StatskitServer(data, env={"STATSKIT_KPI_ENABLED": "true", "PROCESSING_DISABLED": "true"}) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with make_real_server(lambda: Chromium(tmp_path_factory.mktemp("chromium"))) as chromium:
        yield chromium


SHOWN = """[...document.querySelectorAll('.opblock')].map(op => [
  op.querySelector('.opblock-summary-method').textContent,
  op.querySelector('.opblock-summary-path').dataset.path,
  op.querySelector('.opblock-summary-description').textContent])"""


def requested(events: List[Dict[str, Any]]) -> List[str]:
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


@pytest.mark.e2e
def test_swagger_ui_shows_every_route_and_nothing_leaves_the_server(browser, server):
    spec = requests.get(server.url + "/api/v1/openapi.json", timeout=10).json()
    page = browser.page(1280, 900)
    try:
        page.send("Network.enable")
        page.goto(server.url + "/api")  # the original's entry: 307 to /api/v1/
        page.wait_for("document.body.dataset.state === 'ready' && document.querySelectorAll('.opblock').length > 0")
        assert page.evaluate("location.pathname") == "/api/v1/"
        assert page.evaluate("document.querySelector('.info .title').textContent").startswith(spec["info"]["title"])
        assert page.evaluate(SHOWN) == [["GET", path, ops["get"]["summary"]] for path, ops in spec["paths"].items()]

        # Try it out on one operation: the request goes to this server and its answer is shown.
        op = "#operations-default-get_api_v1_aggregations"
        page.click(f"{op} .opblock-summary-control")
        page.wait_for(f"!!document.querySelector('{op} .try-out__btn')")
        page.click(f"{op} .try-out__btn")
        page.wait_for(f"!!document.querySelector('{op} .execute')")
        page.click(f"{op} .execute")
        answer = f"{op} .live-responses-table tbody"
        page.wait_for(f"!!document.querySelector('{answer} .response-col_status')")
        status = page.evaluate(f"document.querySelector('{answer} .response-col_status').textContent.trim()")
        body = page.evaluate(f"document.querySelector('{answer} .response-col_description pre').textContent")
        assert status == "200" and '"kind": "D"' in body
        assert page.errors() == []  # no script error, no CSP violation, no failed load
        urls = requested(page.events)
        assert f"{server.url}/api/v1/openapi.json" in urls and f"{server.url}/api/v1/aggregations" in urls
        assert [u for u in urls if not u.startswith((server.url + "/", "data:"))] == []  # data: is inline
    finally:
        page.close()
