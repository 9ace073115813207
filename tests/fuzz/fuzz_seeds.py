"""What the fuzz strategies draw from: tokens, every route's valid payloads and query strings,
parameter names and values near what the routes expect, odd headers."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from grafana_payloads import NAMES as GRAFANA_NAMES, example as grafana_example
from support import mint

RW = mint(["write", "read"], name="fuzz")
TOKENS = [RW, mint(["write"]), mint(["read"]), mint(["write", "read"], secret="another-secret"),
          mint(["write", "read"], name="x" * 128), RW[:-3], RW + "x", "", "x" * 5000]
AUTH_SCHEMES = ["Token", "Bearer", "token", "BEARER", "Basic", "Digest", "", "Token  ", "Token\t"]

VALID_EVENT = {"uid": "user-1", "event": "signup", "plan": "pro", "n": 3, "tags": {"source": "web"},
               "time": 1_700_000_000_000_000_000, "event_id": "entry_018bcfe568000123456789abcdef0123"}
VALID_POINT = {"measurement": "clicks", "tags": {"page": "home"}, "fields": {"count": 1, "ratio": 0.5},
               "time": "2023-11-14T22:13:20Z"}
VALID_BENCHMARK = {"setup": {"substrate": {"peerId": "QmA"}, "nodes": 3}}
VALID_BENCHMARK_EVENT = {"benchmark_id": 1, "name": "start", "phase": "begin", "created_at": "2024-01-01T00:00:00"}
SEEDS: List[Any] = ([VALID_EVENT, [VALID_POINT, VALID_POINT], [VALID_EVENT], VALID_BENCHMARK, VALID_BENCHMARK_EVENT]
                    + [grafana_example(name) for name in GRAFANA_NAMES])
ONESHOT_FORMS = ["type=deploy&service=api&value=2.5", "type=deploy&value=NaN", "type=x&le=%zz",
                 "type=a&type=b", "type=&service=api", "value=-Inf&type=t", "type=t&token=" + RW]

# Parameter names some route reads, and values near what it expects.
PARAMS = ["token", "uid", "event", "since", "until", "limit", "cursor", "type", "value", "service", "scraper",
          "peer_id", "msg", "target", "max_age_s", "start_time", "end_time", "agg_kind", "agg_value", "from",
          "to", "kpi_id", "format", "after", "v", "le", "__name__", "job"]
NEAR_VALUES = ["", "0", "1", "-1", "2", "1000", "1001", "99999999999999999999", "1e400", "-0", "0x10", "1.5",
               "NaN", "inf", "-Inf", "true", "null", "D", "W", "M", "Y", "DX", "d", "2024-05-01", "2024-W18",
               "2024-05", "2024", "2024-13-01", "2023-02-29", "1700000000000000000", "1700000000.5",
               "2023-11-14T22:13:20Z", "2023-11-14T22:13:20.123456789+01:00", "9999-12-31T23:59:59Z",
               "json", "csv", "xml", "QmA", "block.import", "entry_018bcfe568000123456789abcdef0123",
               "\x00", "\u202e", "%", "%zz", "a" * 3000, RW]
PATH_VALUES = ["1", "0", "-1", "001", "99999999999", "1" * 40, "D", "W", "M", "Y", "DX", "index.html",
               "app.js", "style.css", "chart.umd.min.js", "..", ".", "%2e%2e", "QmA",
               "entry_018bcfe568000123456789abcdef0123", "ENTRY_018BCFE568000123456789ABCDEF0123",
               " entry_x ", "\u00b2", "\U0001f600", "a" * 2000]

# What gunicorn lets through (RFC 9110 5.5, RFC 9112 3.2): no control character in a header
# value, only printable ASCII in the request target (the rest percent-encoded).
TARGET_CHARS = "".join(chr(c) for c in range(0x21, 0x7f))
HEADER_CHARS = " " + TARGET_CHARS + "".join(chr(c) for c in range(0x80, 0x100))
TEXT_CHARS = HEADER_CHARS + "\x00\t\n\"\\\u202e\u00e9\U0001f600\ud800"
PUNCTUATION = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\n", b"\\u0000", b"\\ud800", b"1e9999", b"-",
               b"NaN", b"\xff", b"\xc3"]
ODD_BODIES = [b"null", b"[]", b"{}", b"[[]]", b"1e999", b'"\\ud800"', b"\xef\xbb\xbf{}", b"[" * 3000,
              b'{"a":' * 2000, b"0" * 25_000]
CONTENT_TYPES = [None, "application/json", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                 "application/x-ndjson", "multipart/form-data; boundary=x", "application/json; charset=latin-1"]
ENCODINGS = [None] * 8 + ["gzip", "gzip", "GZIP ", "identity", "br", "gzip, gzip"]
OPTIONAL_HEADERS = [("Origin", ["https://grafana.test", "https://evil.test", "null", "*"]),
                    ("Accept", ["text/html", "application/json", "text/html;q=0.1, */*", "*/*;q=x",
                                "application/openmetrics-text; version=1.0.0", "text/plain;version=0.0.4"]),
                    ("If-None-Match", ["*", '"abc"', 'W/"x", "y"', ""]),
                    ("X-HTTP-Method-Override", ["PUT", "delete", "GET", "x"]),
                    ("Access-Control-Request-Method", ["POST", "GET"]),
                    ("Access-Control-Request-Headers", ["content-type", "x-" + "a" * 100]),
                    ("X-Forwarded-For", ["10.0.0.9", "::1, 10.0.0.1", "garbage", ""]),
                    ("X-Prometheus-Scrape-Timeout-Seconds", ["10", "-1", "x"])]
REMOTES = ["127.0.0.1", "10.0.0.1", "10.0.0.2", "::1", "fe80::1%eth0", "", "garbage"]



KPI_QUERIES = ["agg_kind=D&agg_value=2024-05-01", "agg_kind=W&agg_value=2024-W18&format=csv",
               "agg_kind=M&agg_value=2024-05", "agg_kind=Y&agg_value=2024",
               "agg_kind=M&from=2024-01&to=2024-12&format=json", "agg_kind=D&from=2024-05-01&to=2024-04-01",
               "agg_kind=W&kpi_id=2001&kpi_id=2002&format=csv", "since=0&after=0&limit=10", "since=1700000000&limit=1"]
TELEMETRY_QUERIES = ["peer_id=QmA", "peer_id=QmA&msg=block.import&limit=2", "peer_id=QmA&target=babe&limit=1",
                     "peer_id=QmA&start_time=2020-01-01T00:00:00Z&end_time=2020-01-01T00:00:03Z",
                     "peer_id=QmA&cursor=x", "max_age_s=600&limit=10", "max_age_s=-1", "limit=0",
                     "start_time=2020-01-01T00:00:00Z&end_time=2030-01-01T00:00:00Z&limit=1000"]


# Route prefix -> (valid bodies, valid query strings): what a near-valid case of that route
# starts from. A route without an entry starts from any of them.
ROUTE_SEEDS: Dict[str, Tuple[List[Any], List[str]]] = {
    "/log/event": ([VALID_EVENT, [VALID_POINT, VALID_POINT], [VALID_EVENT, VALID_POINT], {"uid": "u", "event": "e"}],
                   ["uid=user-1&event=signup&limit=10", "since=1700000000000000000&until=1800000000000000000",
                    "since=2023-11-14T22:13:20Z&limit=1000", "limit=1001", "until=1.5e18"]),
    "/write": ([grafana_example(name) for name in GRAFANA_NAMES], ["token=" + RW, "", "token=" + TOKENS[2]]),
    "/event": ([], ONESHOT_FORMS + ["token=" + RW + "&" + form for form in ONESHOT_FORMS]),
    "/metrics": ([], ["", "token=" + RW, "token=" + TOKENS[1], "token=x"]),
    "/benchmarks": ([VALID_BENCHMARK, VALID_BENCHMARK_EVENT, {"setup": None}, {"setup": "x" * 5000}], []),
    "/api": ([], KPI_QUERIES),
    "/nodes": ([], TELEMETRY_QUERIES),
    "/reputation": ([], TELEMETRY_QUERIES),
    "/dashboard": ([], ["v=0", "v="]),
}


def seeds_for(template: str) -> Tuple[List[Any], List[str]]:
    for prefix, found in ROUTE_SEEDS.items():
        if template.startswith(prefix):
            return found[0] or SEEDS, found[1] or ONESHOT_FORMS
    return SEEDS, [q for _, qs in ROUTE_SEEDS.values() for q in qs]
