"""``GET /metrics``: every feature's families, computed from the shared state."""
from __future__ import annotations

import falcon

from statskit.metrics import Scrape, render

from ..peer import scraper_id


class Metrics:
    """Public, except that with ``[oneshot] require_scrape_token`` one-shot events (and the
    names of the scrapers waiting for them) go only to scrapes with a token of ``read`` scope
    (Prometheus: ``authorization: {credentials: TOKEN}``, or ``params: {token: [TOKEN]}``).
    Without a token (or with another kind of Authorization, such as Basic) such a scrape
    gets every other family; a bad token is a 401, one without the read scope a 403."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.require_token = runtime.settings.oneshot.require_scrape_token

    def _may_take_events(self, req: falcon.Request) -> bool:
        if not self.require_token:
            return True
        header = req.get_header("Authorization") or ""
        scheme = header.split(None, 1)[0].lower() if header.strip() else ""
        # Basic auth (Prometheus' basic_auth, a proxy's) is no token: an anonymous scrape.
        if scheme not in ("token", "bearer") and not req.get_param("token"):
            return False
        self.runtime.auth.require(req, "read", allow_query=True)  # 401/403 for a bad token
        return True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        oneshot = self._may_take_events(req)
        scraper = scraper_id(req, self.runtime.settings) if oneshot else ""
        scrape = Scrape(scraper, consume=req.method == "GET", oneshot=oneshot)
        body, content_type = render(self.runtime.metric_sources, scrape, req.get_header("Accept"))
        resp.data = body
        resp.content_type = content_type

    # HEAD renders too (for Content-Length) but must not hand out one-shot events.
    on_head = on_get


def add_routes(app: falcon.App, runtime) -> None:
    app.add_route("/metrics", Metrics(runtime))
