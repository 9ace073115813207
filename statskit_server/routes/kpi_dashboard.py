"""The built-in KPI dashboard: the static files of ``statskit_server/dashboard`` at ``/dashboard/``.

    curl -I http://127.0.0.1:8080/dashboard/
    curl -H 'Accept: text/html' http://127.0.0.1:8080/        # with [kpi] dashboard_at_root

Plain HTML, CSS and JavaScript (Chart.js vendored in ``dashboard/vendor/``), read once when the
routes are mounted. Only the files shipped are served; any other path is a 404, as the
original's UI serving. Every answer carries a strict Content-Security-Policy (scripts, styles
and requests from this server only, no inline code, no frames), ``nosniff`` and an ETag.

Caching: the page links each file with ``?v=<hash of its content>``; a request naming the
current hash is cacheable for a year (``immutable``), anything else (the page itself, an old or
no ``v``) is ``no-cache`` and revalidated with its ETag, so an upgrade is seen at once.

``[kpi] dashboard_at_root``: ``GET /`` from a browser (``Accept`` naming ``text/html`` and
preferring it to JSON) gets the same page; ``/`` for JSON clients, ``/healthz`` and ``/ping``
keep answering the health JSON.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import falcon

from .health import Health

FOLDER = Path(__file__).resolve().parents[1] / "dashboard"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".md": "text/markdown; charset=utf-8",
         ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         "": "text/plain; charset=utf-8"}  # LICENSE, NOTICE
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Cross-Origin-Resource-Policy": "same-origin"}
IMMUTABLE, REVALIDATE = "public, max-age=31536000, immutable", "no-cache"
_LINK = re.compile(r'(src|href)="([A-Za-z0-9_./-]+)"')


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # the first hex digits of the content's sha256

    @property
    def etag(self) -> str:
        return self.version


def _asset(body: bytes, name: str) -> Asset:
    return Asset(body, TYPES.get(Path(name).suffix, "application/octet-stream"), hashlib.sha256(body).hexdigest()[:16])


def load(folder: Path = FOLDER) -> Dict[str, Asset]:
    """Every file under ``folder`` by its relative path (``vendor/chart.umd.min.js``)."""
    return {path.relative_to(folder).as_posix(): _asset(path.read_bytes(), path.name)
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(".")}


def page(assets: Dict[str, Asset], prefix: str = "", name: str = "index.html") -> Asset:
    """The page ``name`` with ``?v=<version>`` on the links to shipped files (``prefix`` before
    them: ``dashboard/`` for the copy served at ``/``)."""

    def link(match: "re.Match[str]") -> str:
        name = match.group(2)
        if name not in assets:
            return match.group(0)
        return f'{match.group(1)}="{prefix}{name}?v={assets[name].version}"'

    html = _LINK.sub(link, assets[name].body.decode("utf-8"))
    return _asset(html.encode("utf-8"), name)


def send(req: falcon.Request, resp: falcon.Response, asset: Asset) -> None:
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)
    versioned = req.get_param("v") == asset.version and not asset.content_type.startswith("text/html")
    resp.cache_control = [IMMUTABLE if versioned else REVALIDATE]
    resp.etag = asset.etag
    if any(tag == "*" or tag == asset.etag for tag in req.if_none_match or ()):
        resp.status = falcon.HTTP_304
        resp.content_type = None  # a 304 has no body, so no type
        return
    resp.content_type = asset.content_type
    resp.data = asset.body


class Index:
    def __init__(self, asset: Asset) -> None:
        self.asset = asset

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(req, resp, self.asset)

    on_head = on_get


class Files:
    """``/dashboard/{name}`` and ``/dashboard/vendor/{name}`` (or the API docs page's files):
    shipped files only."""

    def __init__(self, assets: Dict[str, Asset], folder: str = "", what: str = "dashboard file") -> None:
        self.assets = assets
        self.folder = folder
        self.what = what

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        asset = self.assets.get(self.folder + name)
        if asset is None:
            raise falcon.HTTPNotFound(description=f"no such {self.what}: {self.folder + name}")
        send(req, resp, asset)

    on_head = on_get


class AddSlash:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Relative, so it also works behind a proxy that serves statskit under a prefix.
        query = f"?{req.query_string}" if req.query_string else ""
        raise falcon.HTTPPermanentRedirect(f"dashboard/{query}")

    on_head = on_get


class Root:
    """``/``: the dashboard for a browser, the health JSON for everyone else."""

    def __init__(self, html: Optional[Asset], health: Health) -> None:
        self.html = html  # None: an external ui_location, reached by a redirect
        self.health = health

    @staticmethod
    def wants_html(req: falcon.Request) -> bool:
        return "text/html" in req.accept and req.client_prefers([falcon.MEDIA_JSON, falcon.MEDIA_HTML]) == falcon.MEDIA_HTML

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, self.health.on_get)

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, self.health.on_head)

    def _answer(self, req: falcon.Request, resp: falcon.Response,
                health: Callable[[falcon.Request, falcon.Response], None]) -> None:
        resp.append_header("Vary", "Accept")  # one URL, two answers: caches must keep both
        if not self.wants_html(req):
            health(req, resp)
        elif self.html is None:
            raise falcon.HTTPTemporaryRedirect("dashboard/")
        else:
            send(req, resp, self.html)


def mount_dashboard(app: falcon.App, ui_location: str, at_root: bool) -> None:
    """The built-in dashboard at ``/dashboard/`` (unless ``ui_location`` serves another one
    there, mounted by the caller), and ``/`` for browsers when ``at_root``."""
    root_page = None
    if not ui_location:
        assets = load()
        index = page(assets)
        app.add_route("/dashboard", AddSlash())
        app.add_route("/dashboard/", Index(index))
        app.add_route("/dashboard/{name}", Files({**assets, "index.html": index}))  # the page, links versioned
        app.add_route("/dashboard/vendor/{name}", Files(assets, "vendor/"))
        root_page = page(assets, "dashboard/")
    if at_root:
        app.add_route("/", Root(root_page, Health()))  # replaces the health route at / only
