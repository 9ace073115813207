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

A missing binary raises :class:`ServerUnavailable` from the constructor, so callers can skip.
On Linux a server also dies with the thread that started it (PR_SET_PDEATHSIG), so a killed
test run leaves nothing behind; start servers from the main thread or a long-lived one.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

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


# -- InfluxDB 1.x --------------------------------------------------------------------------

class InfluxDB1(RealServer):
    """``influxd run -config FILE`` (InfluxDB 1.6.7): v1 ``/write`` and InfluxQL ``/query``.

    Starts in well under a second. ``/write`` to a database that does not exist answers 404
    ``database not found`` (run ``CREATE DATABASE`` first). All meta/data/wal files live in the
    given directory, so ``stop()`` + ``start()`` keeps every point.
    """

    binary = "influxd"

    def __init__(self, tmpdir: Optional[PathLike] = None, *, port: Optional[int] = None,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(tmpdir, port=port, extra_args=extra_args)
        self.rpc_port = free_port()  # backup/restore RPC; defaults to 8088, which would clash
        self.config_path = self.dir / "influxdb.conf"

    def _pick_ports(self) -> None:
        super()._pick_ports()
        self.rpc_port = free_port()

    def prepare(self) -> None:
        d = self.dir
        # Everything not listed keeps influxd's defaults; every listener is either on a loopback
        # port of ours or disabled, and nothing writes to /var/lib/influxdb.
        self.config_path.write_text(f"""\
reporting-enabled = false
bind-address = "{HOST}:{self.rpc_port}"

[meta]
  dir = "{d / 'meta'}"
  logging-enabled = false

[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{HOST}:{self._port}"
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[subscriber]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
""")

    def argv(self) -> List[str]:
        return [self.executable, "run", "-config", str(self.config_path), *self.extra_args]

    def is_ready(self) -> bool:
        return self.http.get(self.url + "/ping", timeout=1).status_code == 204

    def query(self, q: str, db: Optional[str] = None, epoch: Optional[str] = "ns") -> Dict[str, Any]:
        """Run InfluxQL and return the JSON answer as is (statement errors are in ``results[i].error``).

        SELECT/SHOW go as GET /query; anything else (CREATE, DROP, ...) as POST, which
        InfluxDB requires for writes. Raises for HTTP errors (e.g. 400 on a syntax error).
        """
        params: Dict[str, str] = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        read_only = (q.split() or [""])[0].upper() in ("SELECT", "SHOW")
        if read_only:
            resp = self.http.get(self.url + "/query", params=params, timeout=10)
        else:
            resp = self.http.post(self.url + "/query", data=params, timeout=10)
        if resp.status_code >= 400:
            raise RuntimeError(f"InfluxDB {resp.status_code} for {q!r}: {resp.text}")
        return resp.json()

    def create_database(self, name: str) -> None:
        self._check(self.query(f'CREATE DATABASE "{_quote(name)}"'))

    def databases(self) -> List[str]:
        series = self._check(self.query("SHOW DATABASES"))[0].get("series", [])
        return [row[0] for s in series for row in s.get("values", [])]

    def write(self, db: str, lines: Union[str, Sequence[str]], precision: Optional[str] = None) -> None:
        """POST line protocol to ``/write?db=...`` (v1 API); raises unless 204."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = {"db": db, **({"precision": precision} if precision else {})}
        resp = self.http.post(self.url + "/write", params=params, data=body.encode(), timeout=10)
        if resp.status_code != 204:
            raise RuntimeError(f"InfluxDB /write {resp.status_code}: {resp.text}")

    def points(self, db: str, measurement: str) -> List[Dict[str, Any]]:
        """All rows of ``measurement`` as ``{column: value}`` dicts, oldest first.

        ``time`` is an int of nanoseconds since the epoch (queried with ``epoch=ns``); tags and
        fields are plain columns (a tag or field absent from a row is None). Returns [] when the
        measurement or the database does not exist.
        """
        answer = self.query(f'SELECT * FROM "{_quote(measurement)}"', db=db, epoch="ns")
        result = answer["results"][0]
        if "database not found" in result.get("error", ""):
            return []
        self._check(answer)
        rows: List[Dict[str, Any]] = []
        for series in result.get("series", []):
            rows.extend(dict(zip(series["columns"], values)) for values in series["values"])
        return rows

    @staticmethod
    def _check(answer: Dict[str, Any]) -> List[Dict[str, Any]]:
        for result in answer.get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxQL error: {result['error']}")
        if "error" in answer:
            raise RuntimeError(f"InfluxQL error: {answer['error']}")
        return answer["results"]


def _quote(identifier: str) -> str:
    return identifier.replace("\\", "\\\\").replace('"', '\\"')


# -- VictoriaMetrics ---------------------------------------------------------------------

class VictoriaMetrics(RealServer):
    """``victoria-metrics`` (1.79): a real server for the InfluxDB v2 ``/api/v2/write`` protocol.

    Line-protocol mapping (checked against 1.79): ``m,tag=a f=1.5,g=2i`` becomes two series,
    ``m_f{tag="a"} 1.5`` and ``m_g{tag="a"} 2`` (metric ``{measurement}_{field}``, tags as
    labels, integers and booleans as floats, string fields stored as 0). ``/api/v2/write``
    adds no label for ``org``/``bucket``; v1 ``/write?db=x`` adds ``db="x"``. Points without
    a timestamp get the server's receive time (ms). Unparsable lines are logged and dropped,
    yet the write still answers 204.

    Read-after-write: a new series was invisible to queries and exports for up to ~10 s
    (measured; VM's in-memory buffers and index caches) unless ``/internal/force_flush`` is called,
    and anything newer than ``-search.latencyOffset`` (1 s here) is hidden from a query or
    export ending "now". :meth:`export` does both fixes (flush, and ``end`` in the future), so
    it sees every point acknowledged before the call.
    """

    binary = "victoria-metrics"

    def argv(self) -> List[str]:
        return [self.executable,
                f"-httpListenAddr={HOST}:{self._port}",
                f"-storageDataPath={self.dir / 'victoria-metrics-data'}",
                "-search.latencyOffset=1s",  # default 30 s hides recent points from queries
                "-retentionPeriod=100y",     # tests write old explicit timestamps; keep them
                "-loggerLevel=WARN",
                *self.extra_args]

    def is_ready(self) -> bool:
        return self.http.get(self.url + "/health", timeout=1).status_code == 200

    def write(self, lines: Union[str, Sequence[str]], org: str = "statskit", bucket: str = "statskit",
              precision: Optional[str] = None) -> None:
        """POST line protocol to ``/api/v2/write`` (the influxdb-client path); raises unless 204."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = {"org": org, "bucket": bucket, **({"precision": precision} if precision else {})}
        resp = self.http.post(self.url + "/api/v2/write", params=params, data=body.encode(), timeout=10)
        if resp.status_code != 204:
            raise RuntimeError(f"VictoriaMetrics /api/v2/write {resp.status_code}: {resp.text}")

    def flush(self) -> None:
        """Make every acknowledged point searchable now (``/internal/force_flush``)."""
        self.http.get(self.url + "/internal/force_flush", timeout=10).raise_for_status()

    def export(self, match: str = '{__name__=~".+"}') -> List[Dict[str, Any]]:
        """All series matching ``match`` via ``/api/v1/export``, flushed first.

        Each item is ``{"metric": {"__name__": ..., label: value}, "values": [...],
        "timestamps": [ms, ...]}``, sorted by metric name then labels.
        """
        self.flush()
        params = {"match[]": match, "start": "0", "end": str(int(time.time()) + 3600)}
        resp = self.http.get(self.url + "/api/v1/export", params=params, timeout=30)
        resp.raise_for_status()
        series = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        return sorted(series, key=lambda s: (s["metric"].get("__name__", ""), sorted(s["metric"].items())))


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
