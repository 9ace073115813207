"""What ``statskit_client.Analytics.log()`` costs the caller with ``defer=True``, in µs per call.

    python benchmarks/bench_client.py                          # a stub HTTP server in a subprocess
    python benchmarks/bench_client.py --url http://127.0.0.1:20080 --token "$(statskit-token ...)"

Four figures, in one run so they can be compared:

1. baselines: an empty function call and ``deque.append`` (what a queue costs at the least);
2. ``log()`` while the worker thread is idle: the enqueue cost alone (copy, time stamp, queue);
3. ``log()`` in rounds of ``--round`` events while the worker sends them to the server: the
   caller's wall time, which includes sharing the GIL with the worker's JSON encoding and HTTP;
4. ``log()`` when the queue is full (the server unreachable): the drop path.

The server runs in another process (the stub by default, answering 200 to every POST) so its
CPU does not share our GIL. Every phase is bounded; the stub is stopped by its PID.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import timeit
import warnings
from collections import deque
from typing import Callable, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from report import record  # noqa: E402
from statskit_client import Analytics  # noqa: E402

EVENT = {"uid": "user-42", "event": "purchase", "plan": "pro", "amount": 9.5}

STUB = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"count": 0, "ids": []}'
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.do_POST()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stub() -> "tuple[subprocess.Popen, str]":
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", STUB, str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    raise RuntimeError("the stub server did not start")


def per_call_us(fn: Callable[[], None], number: int, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def bench_idle(number: int) -> float:
    # A worker that never wakes up during the measurement: batch never full, latency an hour.
    client = Analytics({"url": "http://127.0.0.1:9", "access_token": "bench", "batch_size": 10**8,
                        "max_queue": 10**8, "flush_interval": 3600})
    log = client.log
    try:
        return per_call_us(lambda: log(EVENT), number)
    finally:
        client.shutdown(0)


def bench_sending(url: str, token: str, rounds: int, size: int) -> "tuple[List[float], Analytics]":
    client = Analytics({"url": url, "access_token": token})
    log = client.log
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(size):
            log(EVENT)
        samples.append((time.perf_counter() - start) / size * 1e6)
        if not client.flush(30):  # outside the timing; bounded
            break
    client.shutdown(5)
    return samples, client


def bench_full_queue(number: int) -> "tuple[float, Analytics]":
    port = free_port()  # closed again: nothing listens there
    client = Analytics({"url": f"http://127.0.0.1:{port}", "access_token": "bench", "max_queue": 100,
                        "batch_size": 10**8, "flush_interval": 3600})
    for _ in range(100):
        client.log(EVENT)
    log = client.log
    us = per_call_us(lambda: log(EVENT), number, repeat=3)
    client.shutdown(0)
    return us, client


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running statskit server (default: a stub in a subprocess)")
    parser.add_argument("--token", default="bench", help="its access token")
    parser.add_argument("--number", type=int, default=200_000, help="calls per timed loop (idle, full)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds while sending")
    parser.add_argument("--round", type=int, default=5000, help="events per round (below max_queue)")
    args = parser.parse_args(argv)

    logging.getLogger("statskit_client").setLevel(logging.CRITICAL)  # the drop phase warns, by design
    warnings.simplefilter("ignore")

    def empty(event: dict) -> None:
        pass

    queue: deque = deque()
    base_call = per_call_us(lambda: empty(EVENT), args.number)
    base_append = per_call_us(lambda: queue.append(EVENT), args.number)
    queue.clear()
    print(f"baseline: empty function call      {base_call:7.3f} µs/call")
    print(f"baseline: deque.append             {base_append:7.3f} µs/call")

    idle = bench_idle(args.number)
    print(f"log(), worker idle (enqueue only)  {idle:7.3f} µs/call  "
          f"= {idle / base_call:.0f}x a function call, {idle / base_append:.0f}x deque.append")

    proc = None
    url = args.url
    if url is None:
        proc, url = start_stub()
    try:
        samples, client = bench_sending(url, args.token, args.rounds, args.round)
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)
    median = statistics.median(samples)
    print(f"log(), worker sending to a server  {median:7.3f} µs/call  median of {len(samples)} rounds of "
          f"{args.round} (min {min(samples):.3f}, max {max(samples):.3f}); sent {client.sent}, dropped {client.dropped}")

    full, dropper = bench_full_queue(args.number)
    print(f"log(), queue full (drop path)      {full:7.3f} µs/call  ({dropper.drops.get('queue_full', 0)} dropped)")
    record("log(), worker idle (enqueue only), vs deque.append", idle, baseline=base_append, unit="µs/call",
           goal=5, goal_kind="max", goal_on="value")
    record("log(), worker sending to a server", median, unit="µs/call", goal=5, goal_kind="max")
    record("log(), queue full (drop path)", full, unit="µs/call")
    verdict = "OK" if idle < 5 and median < 5 else "OVER BUDGET"
    print(f"budget 5 µs/call: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
