"""Request counting and latency, kept in the shared state (see :func:`statskit.metrics.observe_request`)."""
from __future__ import annotations

import time

import falcon

from statskit.metrics import observe_request
from statskit.state import StateStore


class RequestMetrics:
    def __init__(self, state: StateStore) -> None:
        self.state = state

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        # The route template, never the raw path: ids in paths must not become label values.
        route = req.uri_template or "unmatched"
        observe_request(self.state, route, req.method, falcon.http_status_to_code(resp.status),
                        time.perf_counter() - started)
