"""InfluxDB 1.x and VictoriaMetrics (its InfluxDB v2 write protocol) for the tests: see servers.py."""
from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from servers import HOST, PathLike, RealServer, free_port


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
