"""The built-in KPI dashboard's HTTP side in-process: its files, content types, caching, CSP,
404s, the setting that serves it at / for browsers, and that an install ships every file.
(What a user sees in a real browser: test_kpi_browser.py.)"""
from __future__ import annotations

import configparser
import fnmatch
import re
from pathlib import Path

import pytest

from statskit_server.routes.kpi_dashboard import CSP, FOLDER

from test_kpi_api import settings_for

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(tmp_path, app_client):
    return app_client(settings_for(tmp_path, **{"kpi.processing_disabled": True}))


@pytest.fixture
def root_client(tmp_path, app_client):
    return app_client(settings_for(tmp_path, **{"kpi.processing_disabled": True, "kpi.dashboard_at_root": True}))


def links(html: str) -> dict:
    """``{file: version}`` of the page's script and stylesheet links."""
    return dict(re.findall(r'(?:src|href)="(?:dashboard/)?([a-z./-]+)\?v=([0-9a-f]+)"', html))


def test_the_page_is_html_with_a_strict_policy_and_links_to_versioned_files(client):
    resp = client.simulate_get("/dashboard/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe" not in CSP and "default-src 'none'" in CSP
    assert "frame-ancestors 'none'" in CSP
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "no-cache"  # revalidated: an upgrade shows at once
    assert set(links(resp.text)) == {"style.css", "vendor/chart.umd.min.js", "app.js"}
    assert "http://" not in resp.text and "https://" not in resp.text  # no CDN, nothing outside the box


@pytest.mark.parametrize("name, content_type", [("app.js", "text/javascript; charset=utf-8"),
                                                ("style.css", "text/css; charset=utf-8"),
                                                ("vendor/chart.umd.min.js", "text/javascript; charset=utf-8")])
def test_linked_files_have_their_type_and_are_cached_for_their_version_only(client, name, content_type):
    version = links(client.simulate_get("/dashboard/").text)[name]
    current = client.simulate_get(f"/dashboard/{name}", params={"v": version})
    assert current.status_code == 200 and current.headers["content-type"] == content_type
    assert current.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert current.content == (FOLDER / name).read_bytes()
    assert current.headers["content-security-policy"] == CSP
    for params in ({}, {"v": "0123456789abcdef"}):  # unversioned or an old version: revalidate
        assert client.simulate_get(f"/dashboard/{name}", params=params).headers["cache-control"] == "no-cache"


def test_an_unchanged_file_is_a_304_without_body(client):
    first = client.simulate_get("/dashboard/app.js")
    again = client.simulate_get("/dashboard/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.simulate_get("/dashboard/app.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_chart_js_is_vendored_with_its_licences(client):
    chart = client.simulate_get("/dashboard/vendor/chart.umd.min.js").text
    assert chart.startswith("/*!\n * Chart.js v4.") and "Released under the MIT License" in chart
    for licence in ("chart.js-LICENSE.md", "kurkle-color-LICENSE.md"):
        resp = client.simulate_get(f"/dashboard/vendor/{licence}")
        assert resp.status_code == 200 and "MIT License" in resp.text
        assert resp.headers["content-type"] == "text/markdown; charset=utf-8"


@pytest.mark.parametrize("path", ["/dashboard/nope.js", "/dashboard/popularity", "/dashboard/vendor/nope.js",
                                  "/dashboard/vendor/", "/dashboard/a/b/c.js", "/dashboard/../setup.cfg",
                                  "/dashboard/vendor/..%2F..%2Fapp.py", "/dashboard/%2e%2e/setup.cfg"])
def test_unknown_paths_are_404_json(client, path):
    resp = client.simulate_get(path)
    assert resp.status_code == 404
    assert resp.json["error"] == "not_found"


def test_the_folder_without_slash_redirects_and_index_html_is_the_page(client):
    resp = client.simulate_get("/dashboard", query_string="kind=W")
    assert resp.status_code == 308 and resp.headers["location"].endswith("dashboard/?kind=W")
    assert links(client.simulate_get("/dashboard/index.html").text) == links(client.simulate_get("/dashboard/").text)
    assert client.simulate_head("/dashboard/").status_code == 200


def test_off_with_the_setting_or_the_feature(tmp_path, app_client):
    off = app_client(settings_for(tmp_path, **{"kpi.processing_disabled": True, "kpi.dashboard": False}))
    assert off.simulate_get("/dashboard/").status_code == 404
    no_kpi = app_client(settings_for(tmp_path, **{"kpi.enabled": False, "kpi.dashboard_at_root": True}))
    assert no_kpi.simulate_get("/dashboard/").status_code == 404
    assert no_kpi.simulate_get("/", headers={"Accept": BROWSER_ACCEPT}).json["status"] == "ok"


def test_an_explicit_ui_location_replaces_the_built_in_dashboard(tmp_path, app_client):
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "index.html").write_text("<html>vue</html>")
    client = app_client(settings_for(tmp_path, **{"kpi.processing_disabled": True, "kpi.ui_location": str(ui),
                                                 "kpi.dashboard_at_root": True}))
    assert client.simulate_get("/dashboard/").text == "<html>vue</html>"
    assert client.simulate_get("/dashboard/vendor/chart.umd.min.js").text == "<html>vue</html>"  # its fallback
    at_root = client.simulate_get("/", headers={"Accept": BROWSER_ACCEPT})
    assert at_root.status_code == 307 and at_root.headers["location"] == "dashboard/"


def test_without_the_setting_a_browser_at_root_gets_the_health_json(client):
    resp = client.simulate_get("/", headers={"Accept": BROWSER_ACCEPT})
    assert resp.json["status"] == "ok"


def test_at_root_a_browser_gets_the_page_and_every_other_client_the_health_json(root_client):
    page = root_client.simulate_get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CSP and "Accept" in page.headers["vary"]
    versions = links(page.text)
    assert 'src="dashboard/app.js?v=' in page.text and versions == links(root_client.simulate_get("/dashboard/").text)
    assert root_client.simulate_get("/dashboard/app.js", params={"v": versions["app.js"]}).status_code == 200
    assert root_client.simulate_head("/", headers={"Accept": BROWSER_ACCEPT}).headers["content-type"].startswith("text/html")
    for accept in (None, "*/*", "application/json", "application/json, text/html;q=0.5"):
        resp = root_client.simulate_get("/", headers={"Accept": accept} if accept else {})
        assert resp.json["status"] == "ok", accept
        assert "Accept" in resp.headers["vary"]
    for path in ("/healthz", "/ping"):
        assert root_client.simulate_get(path, headers={"Accept": BROWSER_ACCEPT}).json["status"] == "ok"
    assert root_client.simulate_get("/app.js").status_code == 404  # only / itself is the page


def test_an_install_ships_every_dashboard_file():
    """setup.cfg's package_data globs match each file (else a wheel install serves 404s)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    globs = [g.strip() for g in config["options.package_data"]["statskit_server"].split(",")]
    shipped = [p.relative_to(FOLDER.parent).as_posix() for p in FOLDER.rglob("*") if p.is_file()]
    assert len(shipped) >= 7
    for name in shipped:
        assert any(fnmatch.fnmatch(name, g) and name.count("/") == g.count("/") for g in globs), name
