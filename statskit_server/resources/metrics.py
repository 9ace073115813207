"""``GET /metrics``: every feature's families, computed from the shared state."""
from __future__ import annotations

import falcon

from statskit.metrics import Scrape, render

from ..peer import scraper_id


class Metrics:
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        scrape = Scrape(scraper_id(req, self.runtime.settings), consume=req.method == "GET")
        body, content_type = render(self.runtime.metric_sources, scrape, req.get_header("Accept"))
        resp.data = body
        resp.content_type = content_type

    # HEAD renders too (for Content-Length) but must not hand out one-shot events.
    on_head = on_get


def add_routes(app: falcon.App, runtime) -> None:
    app.add_route("/metrics", Metrics(runtime))
