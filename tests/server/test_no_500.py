"""No input may produce a 500: hostile bodies, headers and parameters on every route."""
import json
import random

import pytest
from falcon import testing

from statskit.config import load_settings
from statskit.tokens import TokenSigner
from statskit_server import create_app

from support import SECRET  # noqa: E402  (the one test secret)

SEEDS = [
    b"", b"null", b"[]", b"{}", b"[[]]", b"[null]", b'"x"', b"0", b"-1e999", b"1e400", b"NaN", b"\x00\xff",
    b'{"uid": null, "event": null}', b'{"uid": [], "event": {}}', b'{"uid": "u", "event": "e", "time": "\x00"}',
    b'{"uid": "u", "event": "e", "time": 1e300}', b'{"uid": "u", "event": "e", "time": true}',
    b'{"uid": "u", "event": "e", "tags": {"": ""}}', b'{"uid": "u", "event": "e", "a": 99999999999999999999999}',
    b'{"uid": "u", "event": "e", "event_id": 5}', b'[{"measurement": 5, "fields": []}]',
    b'{"measurement": "m", "fields": {"f": {"g": {"h": {"i": {"j": 1}}}}}}',
    b'{"uuid": 5, "type": [], "dashboard": "x", "variables": {"a": 1}, "time": "now"}',
    b'{"uuid": "a", "type": "start", "time": 1e30, "options": {"heartbeatInterval": -5}}',
    "{\"uid\": \"\u202e\", \"event\": \"\ud800\"}".encode("utf-8", "surrogatepass"),
]

ROUTES = ["/log/event", "/log/event/", "/log/events", "/write", "/event", "/metrics", "/", "/ping/",
          "/log/event/%00", "/log/event/" + "a" * 5000]


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randint(0, len(data)) if data else 0
        if op < 0.4 and data:
            data[min(pos, len(data) - 1)] = rng.randint(0, 255)
        elif op < 0.7:
            data[pos:pos] = rng.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\n", b"1e9999"])
        elif data:
            del data[pos:pos + rng.randint(1, 5)]
    return bytes(data)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = load_settings(env={}, overrides={
        "server.data_dir": str(tmp_path_factory.mktemp("fuzz")), "auth.secret_key": [SECRET],
        "sinks.enabled": ["sqlite", "prometheus"], "limits.max_body_bytes": 100_000})
    app = create_app(settings)
    yield testing.TestClient(app)
    app.statskit.close(1.0)


def test_random_bodies_never_500(client):
    token = TokenSigner([SECRET]).mint("fuzz", ["write", "read"])
    rng = random.Random(20261122)
    headers_choices = [
        {"Authorization": f"Token {token}", "Content-Type": "application/json"},
        {"Authorization": f"Bearer {token}", "Content-Type": "text/plain;charset=UTF-8"},
        {"Authorization": f"Token {token}", "Content-Encoding": "gzip"},
        {"Authorization": f"Token {token}", "Content-Encoding": "br"},
        {"Authorization": "Token " + "x" * 10000},
        {"Authorization": f"Token {token}", "Content-Type": "application/x-www-form-urlencoded"},
        {},
    ]
    failures = []
    for i in range(1500):
        body = mutate(rng, rng.choice(SEEDS)) if i % 3 else rng.choice(SEEDS)
        route = rng.choice(ROUTES)
        method = rng.choice(["POST", "POST", "GET", "PUT", "HEAD", "OPTIONS", "DELETE"])
        query = rng.choice(["", "token=" + token, "value=NaN&type=x", "a=%zz", "a=b;c=d", "limit=-1&since=x",
                            "scraper=" + "\u00e9" * 300, "type=" + "x" * 5000])
        resp = client.simulate_request(method, route, body=body, headers=rng.choice(headers_choices),
                                       query_string=query, remote_addr=rng.choice(["127.0.0.1", "::1", "10.1.1.1"]))
        if resp.status_code >= 500:
            failures.append((method, route, query[:40], body[:80], resp.status_code, resp.text[:200]))
        elif resp.status_code >= 400 and method != "HEAD" and resp.text:
            try:
                json.loads(resp.text)
            except ValueError:
                # A compatibility route may answer in its original's format; it must still be an answer.
                if route not in ("/write", "/event"):
                    failures.append((method, route, query[:40], body[:80], resp.status_code, "non-JSON error"))
    assert failures == []
