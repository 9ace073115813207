"""Run the real ``statskit-server`` (gunicorn) on a free loopback port, for end-to-end tests.

    with StatskitServer(tmp_path, workers=2) as server:
        requests.get(server.url + "/ping")
        server.restart()          # graceful stop (SIGTERM) and start again, same port and data

The server is stopped by its PID; a graceful stop sends SIGTERM and waits for gunicorn to
flush and exit, as an operator's ``systemctl stop`` would.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests

ROOT = Path(__file__).resolve().parents[1]
from support import SECRET  # noqa: E402  (the one test secret)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StatskitServer:
    """``statskit-server`` in a subprocess; stdout/stderr go to files in ``data_dir``."""

    def __init__(self, data_dir, *, workers: int = 1, args: Optional[List[str]] = None,
                 env: Optional[Dict[str, str]] = None, port: Optional[int] = None, own_group: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.args = list(args or [])
        self.env = dict(env or {})
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.own_group = own_group  # a process group of its own: kill_group() is a kill -9 of all of it
        self.stdout_path = self.data_dir / "server.stdout"
        self.stderr_path = self.data_dir / "server.stderr"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def token(self, scopes=("write", "read"), name: str = "e2e") -> str:
        from statskit.tokens import TokenSigner

        return TokenSigner([SECRET]).mint(name, list(scopes))

    def headers(self, scopes=("write", "read")) -> Dict[str, str]:
        return {"Authorization": f"Token {self.token(scopes)}"}

    def start(self, timeout: float = 30.0) -> "StatskitServer":
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATSKIT_")}
        env.update({"STATSKIT_SECRET_KEY": SECRET, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        env.update(self.env)
        cmd = [sys.executable, "-m", "statskit_server.cli", "--bind", f"127.0.0.1:{self.port}",
               "--data-dir", str(self.data_dir), "--workers", str(self.workers), *self.args]
        self.proc = subprocess.Popen(cmd, cwd=str(self.data_dir), env=env,
                                     stdout=open(self.stdout_path, "ab"), stderr=open(self.stderr_path, "ab"),
                                     start_new_session=self.own_group)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"statskit-server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(self.url + "/ping", timeout=1).status_code == 200 and self._all_booted():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"statskit-server did not answer within {timeout} s:\n{self.tail()}")

    def _all_booted(self) -> bool:
        """Every worker asked for has booted: one answering /ping is not enough for a test that
        takes the workers' PIDs (a second one booting later would look like a restart)."""
        booted = {int(line.rsplit(":", 1)[1]) for line in self.tail(lines=10_000).splitlines()
                  if "Booting worker with pid:" in line}
        return len(booted & set(self.worker_pids())) >= self.workers

    def stop(self, timeout: float = 20.0) -> int:
        """Graceful stop: SIGTERM, wait for gunicorn to flush and exit; SIGKILL past ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"statskit-server ignored SIGTERM for {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        """A crash: SIGKILL the master and its workers (the process group is not ours, so by PID)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # The master first: killed after its workers, it could boot a replacement that
        # outlives it for a moment (holding the port and anything the worker locks).
        children = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait(10)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while children and time.monotonic() < deadline:  # until the kernel has let go of them
            children = [c for c in children if _alive(c)]
            time.sleep(0.02)

    def kill_group(self) -> None:
        """``kill -9 -PGID``: the master and every worker at once (needs ``own_group=True``)."""
        assert self.proc is not None and self.own_group
        children = _children(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while children and time.monotonic() < deadline:
            children = [c for c in children if _alive(c)]
            time.sleep(0.02)

    def worker_pids(self) -> List[int]:
        """The master's child processes (its workers, and a telemetry listener when on)."""
        assert self.proc is not None
        return sorted(_children(self.proc.pid))

    def restart(self) -> "StatskitServer":
        self.stop()
        return self.start()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "StatskitServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()


def hold_both_workers(server: "StatskitServer") -> Tuple[socket.socket, socket.socket]:
    """Two idle connections, one held by each worker of a server started with ``--threads 1``: a sync worker that accepted a connection
    serves nothing else until the request on it is done."""
    first = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    time.sleep(0.2)  # let a worker accept it before the second one arrives
    second = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    time.sleep(0.2)
    return first, second


def raw_request(sock: socket.socket, method: str, target: str, body: bytes = b"",
                content_type: str = "text/plain;charset=UTF-8",
                headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
    """One HTTP/1.0 request on an open connection (see hold_both_workers); returns the status
    and the body of the answer, and closes the connection."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with sock:
        sock.sendall(f"{method} {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{extra}"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, answer = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), answer


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped yet) holds no socket or lock any more
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> List[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(p) for p in out.split()]


def connections_by_worker(server: "StatskitServer") -> Dict[int, int]:
    """Established connections to ``server``'s port that each worker process holds (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == server.port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    held = {}
    for pid in server.worker_pids():
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
        held[pid] = count
    return held
