"""``GET /metrics``: every registered source's families, computed from the shared state."""
from __future__ import annotations

from typing import Sequence

import falcon

from statskit.metrics import MetricSource, Scrape, render

from ..peer import scraper_id
from . import Web


class Metrics:
    """Public. A source may keep something for scrapes with a ``read``-scope token
    (``Scrape.may_read``; Prometheus: ``authorization: {credentials: TOKEN}``, or
    ``params: {token: [TOKEN]}``); a scrape without one (or with another kind of Authorization,
    such as Basic) gets the rest, a bad token is a 401, one without the read scope a 403."""

    def __init__(self, sources: Sequence[MetricSource], web: Web) -> None:
        self.sources = sources
        self.web = web

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def may_read() -> bool:
            header = req.get_header("Authorization") or ""
            scheme = header.split(None, 1)[0].lower() if header.strip() else ""
            # Basic auth (Prometheus' basic_auth, a proxy's) is no token: an anonymous scrape.
            if scheme not in ("token", "bearer") and not req.get_param("token"):
                return False
            self.web.auth.require(req, "read", allow_query=True)  # 401/403 for a bad token
            return True

        scrape = Scrape(lambda: scraper_id(req, self.web.settings), consume=req.method == "GET", may_read=may_read)
        body, content_type = render(self.sources, scrape, req.get_header("Accept"))
        resp.data = body
        resp.content_type = content_type

    # HEAD renders too (for Content-Length) but must not hand out one-shot events.
    on_head = on_get


def mount(app: falcon.App, sources: Sequence[MetricSource], web: Web) -> None:
    app.add_route("/metrics", Metrics(sources, web))
