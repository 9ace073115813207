"""Durable acknowledgement (issue 15): what the commit before the answer costs.

``POST /log/event`` (one event) against bare Falcon in the same run, with:

* ``no durable sink``: ``--sinks prometheus`` (counters only: no commit on the request path);
* ``sqlite, commit_wait 2 ms`` (the default): the answer after the group commit holding it;
* ``sqlite, commit_wait 0``: group commit without waiting for company;
* the same two with gunicorn's sync worker (``--threads 1``: one request per process at a
  time, so one transaction per request).

Throughput as ratios to bare Falcon (gunicorn gthread with statskit's default threads, same
workers), and wrk's p50/p99 latency; the latency the durable commit adds is the sqlite rows
minus the ``no durable sink`` row.
Bounded: each load run lasts ``duration`` seconds; servers are stopped by PID; loopback only.
"""
from __future__ import annotations

import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

from harness import WORKERS, BareServer, Scenario, StatskitServer
from report import record
import subprocess

EVENT = Scenario("POST /log/event", "POST", "/log/event", body=b'{"uid": "user-1", "event": "signup", "plan": "pro"}',
                 auth=True)
CONFIGS: List[Tuple[str, List[str], str]] = [
    ("no durable sink", ["--sinks", "prometheus"], ""),
    ("sqlite, commit_wait 2 ms", ["--sinks", "sqlite,prometheus"], "[sqlite]\ncommit_wait = 0.002\n"),
    ("sqlite, commit_wait 0", ["--sinks", "sqlite,prometheus"], "[sqlite]\ncommit_wait = 0\n"),
    ("no durable sink, sync", ["--sinks", "prometheus", "--threads", "1"], ""),
    ("sqlite, sync worker", ["--sinks", "sqlite,prometheus", "--threads", "1"], ""),
]


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, headers: Dict[str, str], duration: float, connections: int, workdir: Path) -> Tuple[float, float, float]:
    """(2xx requests/s, p50 ms, p99 ms); fails loudly on any non-2xx answer."""
    (workdir / "body.bin").write_bytes(EVENT.body)
    lines = ['wrk.method = "POST"', f'local f = io.open("{workdir / "body.bin"}", "rb"); wrk.body = f:read("*a"); f:close()',
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    (workdir / "load.lua").write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "--latency", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s", "-s",
                          str(workdir / "load.lua"), url + EVENT.path], capture_output=True, text=True,
                         timeout=duration + 30).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    return rate, p50, p99


WARMUP = 1.0  # seconds of load before each measured run, not measured


def main(duration: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for connections in (1, 16):
            runs: Dict[str, List[Tuple[float, float, float]]] = {}
            for round_ in range(rounds):  # alternated, medians reported: the machine is shared and noisy
                with BareServer() as bare:
                    wrk(bare.url, {}, WARMUP, connections, workdir)  # as harness.run: a fresh server's first second
                    runs.setdefault("bare Falcon", []).append(wrk(bare.url, {}, duration, connections, workdir))
                for name, args, ini in CONFIGS:
                    data = workdir / re.sub(r"\W+", "_", f"{name}{connections}-{round_}")
                    data.mkdir()
                    if ini:
                        (data / "bench.ini").write_text(ini)
                        args = [*args, "--config", str(data / "bench.ini")]
                    server = StatskitServer(data, workers=WORKERS, args=args)
                    with server:
                        auth = {"Authorization": f"Token {server.token()}"}
                        wrk(server.url, auth, WARMUP, connections, workdir)
                        runs.setdefault(name, []).append(wrk(server.url, auth, duration, connections, workdir))
            base = statistics.median(r[0] for r in runs["bare Falcon"])
            print(f"{connections} connection(s), medians of {rounds} runs:", flush=True)
            for name, figures in runs.items():
                rate = statistics.median(r[0] for r in figures)
                p50 = statistics.median(r[1] for r in figures)
                p99 = statistics.median(r[2] for r in figures)
                if name != "bare Falcon":
                    record(f"POST /log/event, {name}, {connections} conn.", rate, baseline=base, unit="req/s")
                    if name in ("no durable sink", "sqlite, commit_wait 2 ms"):  # the default, and without its commit
                        record(f"POST /log/event, {name}, {connections} conn., p99 latency", p99, unit="ms")
                print(f"   {name:<26} {rate:>7,.0f} req/s  ratio {rate / base:.2f}  p50 {p50:.2f} ms  p99 {p99:.2f} ms",
                      flush=True)


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    main(2.0 if quick else 4.0, 1 if quick else 3)
