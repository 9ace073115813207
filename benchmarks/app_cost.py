"""statskit's own CPU per request on the hot routes, without HTTP: ``threads`` threads call the
WSGI app (default configuration, a temporary data directory) in a closed loop, and the process's
CPU time (user + system, every thread: request threads, group commits, relays, flushers) is
divided by the requests answered; the same loop over the bare Falcon app is subtracted.

Under gunicorn the worker adds its own ~200-300 us a request (the bare baseline of harness.py),
so this is the part of the gap to the baseline that is statskit's::

    .venv/bin/python benchmarks/app_cost.py                # the three hot routes, 4 threads
    .venv/bin/python benchmarks/app_cost.py /event 8       # one route, 8 threads
    STATSKIT_STATE=redis REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python benchmarks/app_cost.py

It also prints how many rows each group commit shared (members per transaction).
"""
from __future__ import annotations

import gc
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
from falcon import testing  # noqa: E402

import bare_app  # noqa: E402
from harness import SCENARIOS, Scenario  # noqa: E402
from support import SECRET  # type: ignore[import-not-found]  # noqa: E402
from statskit.config import load_settings  # noqa: E402
from statskit.grouping import GroupCall  # noqa: E402
from statskit.tokens import TokenSigner  # noqa: E402
from statskit_server import create_app  # noqa: E402

HOT = ("/log/event", "/event", "/write")


def _start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> None:
    if not status.startswith("2"):
        raise RuntimeError(f"answered {status}")


def _loop(app: Callable, scenario: Scenario, headers: Dict[str, str], count: int) -> None:
    path, _, query = scenario.path.partition("?")
    for _ in range(count):
        environ = testing.create_environ(path, query_string=query, method=scenario.method, body=scenario.body,
                                         headers=headers)
        for _chunk in app(environ, _start_response):
            pass


def cpu_per_request(app: Callable, scenario: Scenario, headers: Dict[str, str], requests: int,
                    threads: int) -> Tuple[float, float]:
    """(CPU us per request, requests per second) of ``threads`` threads calling ``app``."""
    each = requests // threads
    workers = [threading.Thread(target=_loop, args=(app, scenario, headers, each)) for _ in range(threads)]
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (each * threads) * 1e6, each * threads / elapsed


def measure(route: str, threads: int = 4, requests: int = 20_000) -> str:
    scenario = next(s for s in SCENARIOS if s.path.partition("?")[0] == route and s.threads > 1)
    passed = {k: os.environ[k] for k in ("STATSKIT_STATE", "REDIS_URL") if k in os.environ}
    settings = load_settings(env={"STATSKIT_SECRET_KEY": SECRET, **passed},
                             overrides={"server.data_dir": tempfile.mkdtemp(prefix="statskit-app-cost-")})
    older = {id(o) for o in gc.get_objects() if isinstance(o, GroupCall)}  # other routes' apps
    app = create_app(settings)
    headers = {"Content-Type": "application/json", **scenario.headers}
    if scenario.auth:
        headers["Authorization"] = "Token " + TokenSigner([SECRET]).mint("bench", ["write", "read"])
    for target in (app, bare_app.app):  # warm up: connections, caches, threads started
        cpu_per_request(target, scenario, headers, 2000, threads)
    bare, _ = cpu_per_request(bare_app.app, scenario, headers, requests, threads)
    kit, rate = cpu_per_request(app, scenario, headers, requests, threads)
    groups = [o for o in gc.get_objects() if isinstance(o, GroupCall) and o.groups and id(o) not in older]
    shared = ", ".join(f"{getattr(o, 'write', o.run).__qualname__} {o.rows / o.groups:.1f} rows/call" for o in groups)
    app.statskit.close(5.0)
    return (f"{route}, {threads} threads: statskit {kit:.0f} us CPU/request ({rate:,.0f} req/s), bare Falcon "
            f"{bare:.0f} us: statskit's own {kit - bare:.0f} us/request; {shared}")


def main() -> None:
    routes = [sys.argv[1]] if len(sys.argv) > 1 else list(HOT)
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    null = os.open(os.devnull, os.O_WRONLY)
    out = os.dup(1)
    os.dup2(null, 1)  # the stdout sink's and the session log's lines
    for route in routes:
        line = measure(route, threads)
        os.write(out, (line + "\n").encode())


if __name__ == "__main__":
    main()
