"""``/``, ``/healthz``, ``/ping``: public liveness answers, as stats-service gave them."""
from __future__ import annotations

import falcon

from statskit import __version__

BODY = {"status": "ok", "name": "statskit", "version": __version__}


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = BODY

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON


def mount(app: falcon.App, service: None, web: object) -> None:
    health = Health()
    for path in ("/", "/healthz", "/ping", "/ping/"):
        app.add_route(path, health)
