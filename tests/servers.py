"""Launchers for the real servers the test suite talks to (no pytest in here).

    with InfluxDB1(tmp_path) as influx:        # influxd on a free 127.0.0.1 port
        influx.create_database("stats")
        ...
        influx.stop(); influx.start()          # same port, same data directory

Each launcher runs one Debian-packaged binary (``.ci/install-servers.sh`` installs them) in a
subprocess that binds 127.0.0.1 only and keeps all its files under the directory it is given
(or a fresh ``tempfile`` directory, removed on exit). ``start()`` waits until the server
answers (bounded), ``stop()`` sends SIGTERM then SIGKILL to the PID. Output goes to
``<dir>/<binary>.log``; its tail is in every start-up error.

The base (:class:`RealServer`) and Redis are here; InfluxDB 1.x and VictoriaMetrics are in
``servers_influx.py``, Prometheus in ``servers_prometheus.py``.

A missing binary raises :class:`ServerUnavailable` from the constructor, so callers can skip.
On Linux a server also dies with the thread that started it (PR_SET_PDEATHSIG), so a killed
test run leaves nothing behind; start servers from the main thread or a long-lived one.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import requests

HOST = "127.0.0.1"
PathLike = Union[str, "os.PathLike[str]"]


class ServerUnavailable(RuntimeError):
    """The server's binary is not installed (run ``.ci/install-servers.sh``)."""


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time; the message has its log tail."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def find_binary(name: str) -> str:
    """Absolute path of ``name``: PATH first, then the Debian locations (sbin is not always on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable(f"{name} is not installed; run .ci/install-servers.sh")


def _load_prctl() -> Optional[Callable[..., int]]:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once here, in the parent: the child between fork and exec should do as little as
# possible (no dlopen there, other threads of the test process may hold its locks).
_prctl = _load_prctl() if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: Linux SIGKILLs the server when the test process
    # dies without its teardown (pytest killed, interpreter crash), so no server outlives a run.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Started:
    """``with thing as started:`` calls ``start()`` (and ``close()`` when that fails), then
    ``close()`` on the way out."""

    def start(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RealServer(Started):
    """A server subprocess on a free loopback port with its own data directory.

    Subclasses set ``binary`` and implement :meth:`argv` and :meth:`is_ready`; :meth:`prepare`
    writes config files before every start.
    """

    binary = ""
    ready_timeout = 30.0   # seconds for start() to see the server answer
    stop_timeout = 5.0     # seconds between SIGTERM and SIGKILL

    def __init__(self, tmpdir: Optional[PathLike] = None, *, port: Optional[int] = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.executable = find_binary(self.binary)  # first, so nothing is left behind on failure
        self._own_dir = tmpdir is None
        self.dir = Path(tempfile.mkdtemp(prefix=f"statskit-{self.binary}-") if tmpdir is None else tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.dir / f"{self.binary}.log"
        self.http = requests.Session()
        self.http.trust_env = False  # never send loopback requests through an http_proxy

    # -- what subclasses provide ---------------------------------------------------------

    def argv(self) -> List[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files; called before every start (ports may have changed)."""

    def _pick_ports(self) -> None:
        """Choose fresh ports (only before the first successful start)."""
        self._port = free_port()

    # -- properties ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def pid(self) -> Optional[int]:
        """PID of the running process, None when stopped."""
        return self.proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> "RealServer":
        """Start (no-op when running) and wait until ready; same port and data dir as before."""
        if self.running:
            return self
        # free_port() is racy (another test may grab the port before the server binds it):
        # on the very first start, retry a couple of times on fresh ports. Restarts keep theirs.
        first_start = self.proc is None and not self._fixed_port
        attempts = 3 if first_start else 1
        for attempt in range(attempts):
            try:
                return self._start_once()
            except ServerStartError as exc:
                if attempt + 1 == attempts or "address already in use" not in str(exc).lower():
                    raise
                self.proc = None
                self._pick_ports()
        raise AssertionError("unreachable")

    def _start_once(self) -> "RealServer":
        self.prepare()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}  # influxd reads them
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), cwd=str(self.dir), env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent if _prctl is not None else None)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.binary} exited with status {self.proc.returncode} while starting:\n{self.tail()}")
            try:
                if self.is_ready():
                    return self
            except (requests.RequestException, OSError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"{self.binary} not ready after {self.ready_timeout:.0f} s on port {self._port}:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> Optional[int]:
        """Graceful stop: SIGTERM to the PID, SIGKILL after ``stop_timeout`` s. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """A crash: SIGKILL the PID (no flush)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> "RealServer":
        self.stop()
        return self.start()

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server's combined stdout/stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop, and remove the data directory if this object created it."""
        try:
            self.stop()
        finally:
            self.kill()
            self.http.close()
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid} dir={self.dir}>"


# -- Redis ---------------------------------------------------------------------------------

class RedisError(RuntimeError):
    """An error reply (``-ERR ...``) from Redis."""


class Redis(RealServer):
    """``redis-server`` (7.0) on loopback, no persistence by default.

    With the default ``appendonly=False`` a stop loses every key (``--save ''``). Pass
    ``appendonly=True`` (AOF, fsync always) for tests that restart Redis and expect their data back.
    """

    binary = "redis-server"

    def __init__(self, tmpdir: Optional[PathLike] = None, *, appendonly: bool = False,
                 port: Optional[int] = None, extra_args: Sequence[str] = ()) -> None:
        super().__init__(tmpdir, port=port, extra_args=extra_args)
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self._port}/0"

    def argv(self) -> List[str]:
        return [self.executable, "--port", str(self._port), "--bind", HOST, "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always", "--daemonize", "no", "--protected-mode", "yes",
                "--loglevel", "warning", "--logfile", "", *self.extra_args]

    def is_ready(self) -> bool:
        try:
            return self.execute("PING") == "PONG"
        except RedisError:
            return False  # e.g. -LOADING while the AOF is replayed

    def execute(self, *args: Union[str, bytes, int, float]) -> Any:
        """Send one command over a fresh socket and return the decoded reply.

        Simple strings and bulk strings come back as str (None for nil), integers as int,
        arrays as lists; an error reply raises :class:`RedisError`.
        """
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with socket.create_connection((HOST, self._port), timeout=5) as sock:
            sock.sendall(request)
            return _read_reply(sock.makefile("rb"))


def _read_reply(stream: Any) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"unexpected Redis reply {line!r}")


class ReplyCutter:
    """A loopback TCP proxy to a real Redis that, once armed, forwards the next request holding
    ``command`` (EXEC: a transaction; EVALSHA: a script) and then closes the connection instead
    of passing the answer back: Redis applied it, the client only sees its connection break.
    With ``forward=False`` the request itself is dropped too: the same break, and Redis never
    saw it."""

    def __init__(self, target_port: int, command: bytes = b"EXEC", forward: bool = True) -> None:
        self.target_port = target_port
        self.command = command
        self.forward = forward
        self.armed = threading.Event()
        self.closed = threading.Event()
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():  # bounded by close()
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            server = socket.create_connection((HOST, self.target_port), timeout=10)
            cut = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, cut, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, cut, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut: threading.Event, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not upstream and cut.is_set():
                    break  # the answer to the command: dropped
                if upstream and self.command in data and self.armed.is_set():
                    self.armed.clear()
                    cut.set()  # before forwarding: the answer may come back at once
                    if not self.forward:
                        break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # a FIN now, though the other pump still reads it
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
