"""Prometheus for the tests: see servers.py."""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from servers import HOST, PathLike, RealServer, ServerStartError


# -- Prometheus ----------------------------------------------------------------------------

class Prometheus(RealServer):
    """``prometheus`` (2.42) scraping the given targets every ``scrape_interval``.

    ``scrape_targets`` ("host:port") form one job named ``job`` with ``metrics_path`` and
    ``params`` (e.g. ``{"scraper": ["prom-a"]}``, appended to the scrape URL's query string).
    ``jobs`` adds more jobs, each a dict with ``job_name`` (or ``job``) and ``targets``, plus
    optionally ``params``, ``metrics_path``, ``scrape_interval`` or any other Prometheus
    ``scrape_config`` key, passed through as is.

    Expect the FIRST scrape about 5-6 s after start: Prometheus's discovery manager hands
    targets to the scrape manager on a fixed 5 s tick (not configurable). Start Prometheus
    before (or while) the scraped app starts to overlap that wait.
    """

    binary = "prometheus"
    _fast_reload = True  # pass the hidden --scrape.discovery-reload-interval flag

    def __init__(self, tmpdir: Optional[PathLike] = None, scrape_targets: Sequence[str] = (),
                 scrape_interval: str = "1s", metrics_path: str = "/metrics",
                 params: Optional[Mapping[str, Sequence[str]]] = None, job: str = "statskit",
                 jobs: Optional[Sequence[Mapping[str, Any]]] = None, *, port: Optional[int] = None,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(tmpdir, port=port, extra_args=extra_args)
        self.config_path = self.dir / "prometheus.yml"
        self.scrape_interval = scrape_interval
        self.scrape_configs: List[Dict[str, Any]] = []
        if isinstance(scrape_targets, str):
            scrape_targets = [scrape_targets]
        if scrape_targets:
            self.scrape_configs.append(self._job({"job_name": job, "targets": list(scrape_targets),
                                                  "metrics_path": metrics_path, "params": params}))
        for spec in jobs or ():
            self.scrape_configs.append(self._job(spec))
        if not self.scrape_configs:
            raise ValueError("Prometheus needs scrape_targets or jobs")

    @staticmethod
    def _job(spec: Mapping[str, Any]) -> Dict[str, Any]:
        spec = dict(spec)
        name = spec.pop("job_name", None) or spec.pop("job", None)
        if not name:
            raise ValueError(f"scrape job without job_name: {spec!r}")
        spec.pop("job", None)
        targets = spec.pop("targets", None)
        if isinstance(targets, str):
            targets = [targets]
        if not targets:
            raise ValueError(f"scrape job {name!r} without targets")
        job: Dict[str, Any] = {"job_name": name, "static_configs": [{"targets": list(targets)}]}
        for key, value in spec.items():
            if value is not None:
                job[key] = _params(value) if key == "params" else value
        if "scrape_interval" in job and "scrape_timeout" not in job:
            job["scrape_timeout"] = job["scrape_interval"]  # timeout may not exceed the interval
        return job

    def prepare(self) -> None:
        # JSON is valid YAML, so no YAML library is needed. scrape_timeout must not exceed the
        # interval, and the 10 s default would for a 1 s interval.
        config = {"global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval,
                             "evaluation_interval": "1m"},
                  "scrape_configs": self.scrape_configs}
        self.config_path.write_text(json.dumps(config, indent=2))

    def argv(self) -> List[str]:
        return [self.executable,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
                f"--web.listen-address={HOST}:{self._port}",
                "--log.level=warn",
                # Hidden flag (2.4x): the scrape manager applies new targets every 100 ms instead
                # of on its own 5 s tick, so a first scrape can never wait for two 5 s ticks.
                *(["--scrape.discovery-reload-interval=100ms"] if self._fast_reload else []),
                *self.extra_args]

    def start(self) -> "Prometheus":
        try:
            return super().start()
        except ServerStartError as exc:
            if not self._fast_reload or "discovery-reload-interval" not in str(exc):
                raise
            self._fast_reload = False  # a Prometheus without that hidden flag: start without it
            return super().start()

    def is_ready(self) -> bool:
        return self.http.get(self.url + "/-/ready", timeout=1).status_code == 200

    def query(self, promql: str, at: Optional[float] = None) -> List[Dict[str, Any]]:
        """Instant query; returns ``data.result`` (for a vector: ``[{"metric": {...}, "value": [ts, "v"]}]``)."""
        params = {"query": promql, **({"time": str(at)} if at is not None else {})}
        resp = self.http.get(self.url + "/api/v1/query", params=params, timeout=10)
        body = resp.json()
        if resp.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"Prometheus query {promql!r} failed: {resp.status_code} {body}")
        return body["data"]["result"]

    def wait_for(self, promql: str, predicate: Callable[[List[Dict[str, Any]]], bool] = bool,
                 timeout: float = 20.0, interval: float = 0.2) -> List[Dict[str, Any]]:
        """Poll :meth:`query` until ``predicate(result)`` is true; returns that result.

        Raises AssertionError after ``timeout`` s with the last result and the targets' scrape
        errors (the usual reason). Allow for the ~5 s before the first scrape.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                targets = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError")) for t in self.targets()]
                raise AssertionError(f"{promql!r} not satisfied after {timeout} s; last result {result}; "
                                     f"targets {targets}")
            time.sleep(interval)

    def targets(self) -> List[Dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``): scrapeUrl, health, lastError, labels..."""
        resp = self.http.get(self.url + "/api/v1/targets", timeout=10)
        resp.raise_for_status()
        return resp.json()["data"]["activeTargets"]


def _params(params: Mapping[str, Any]) -> Dict[str, List[str]]:
    """Scrape ``params`` as Prometheus wants them: each name to a list of values."""
    return {k: [v] if isinstance(v, str) else [str(x) for x in v] for k, v in params.items()}
