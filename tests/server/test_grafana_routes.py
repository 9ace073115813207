"""``/write`` and the grafana_analytics_* families through the Falcon app, in-process."""
import gzip
import json

import pytest

from grafana_payloads import ADMIN, EXAMPLES_DURATION, JDOE, NAMES, encode, example_bytes, payload, series, session, value_of
from statskit_server.cli import build_parser, settings_from_args
from support import make_settings, mint

PANEL = {"Content-Type": "text/plain;charset=UTF-8"}  # what a no-cors fetch sends
SESSIONS = "grafana_analytics_sessions_total"
DURATION = "grafana_analytics_sessions_duration_seconds_total"


@pytest.fixture
def make_client(tmp_path, app_client):
    return lambda settings=None, **overrides: app_client(settings or make_settings(tmp_path, **overrides))


@pytest.fixture
def client(make_client):
    return make_client()


def post(client, body, **kwargs):
    headers = dict(PANEL, **kwargs.pop("headers", {}))
    return client.simulate_post("/write", body=body, headers=headers, **kwargs)


def metrics(client):
    return client.simulate_get("/metrics").text  # a scrape first applies this worker's queue


def log_lines(client, capfd):
    client.app_runtime.services["grafana"].flush(5.0)
    return [line for line in capfd.readouterr().out.splitlines() if "session data" in line or "level=warn" in line]


def test_every_example_payload_is_accepted_and_counted(client, capfd):
    for name in NAMES:
        resp = post(client, example_bytes(name))
        assert resp.status_code == 201 and resp.content == b"" and resp.headers["content-length"] == "0"
    text = metrics(client)
    assert sorted(series(text, SESSIONS), key=lambda s: s[0]["user_login"]) == [(ADMIN, 1.0), (JDOE, 1.0)]
    assert series(text, DURATION) == [(JDOE, EXAMPLES_DURATION)]  # the admin's session has only a start
    assert value_of(text, "grafana_analytics_up") == 1.0
    assert len(log_lines(client, capfd)) == 6


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"null", b"{}", b'{"time": 1.5}', b'{"uuid": 7}',
                                  b'{"dashboard": "x"}', b'{"time": "1618803734"}'])
def test_a_body_that_is_not_a_payload_gets_400_and_changes_nothing(client, capfd, body):
    post(client, example_bytes("01_start"))
    before = metrics(client)
    log_lines(client, capfd)
    resp = post(client, body)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_input"
    after = metrics(client)
    strip = lambda text: [l for l in text.splitlines() if l.startswith("grafana_analytics_sessions")]
    assert strip(after) == strip(before) and log_lines(client, capfd) == []


def test_panel_payloads_of_any_content_type_and_gzip(client):
    for i, headers in enumerate([{"Content-Type": "application/json"}, {"Content-Type": "application/x-www-form-urlencoded"},
                                 {"Content-Type": ""}]):
        assert post(client, encode(payload(f"s{i}", "start", 100)), headers=headers).status_code == 201
    zipped = gzip.compress(encode(payload("z", "start", 100)))
    assert post(client, zipped, headers={"Content-Encoding": "gzip"}).status_code == 201
    assert value_of(metrics(client), SESSIONS) == 4.0


@pytest.mark.parametrize("method", ["POST", "PUT", "GET", "DELETE", "PATCH"])
def test_any_method_with_a_payload_is_taken_and_without_one_is_a_400_as_the_original(client, method):
    resp = client.simulate_request(method, "/write", body=encode(payload(method, "start", 1)))
    assert resp.status_code == 201 and resp.content == b"" and resp.headers["content-length"] == "0"
    resp = client.simulate_request(method, "/write")
    assert resp.status_code == 400 and resp.json["error"] == "invalid_input"
    assert value_of(metrics(client), SESSIONS) == 1.0


@pytest.mark.parametrize("path, location", [("/./write", "/write"), ("//write", "/write"), ("/x/../write", "/write"),
                                            ("/./write?token=t", "/write?token=t"), ("//metrics", "/metrics")])
def test_unclean_paths_are_redirected_as_go_did(client, path, location):
    target, _, query = path.partition("?")
    resp = client.simulate_post(target, query_string=query or None, body=encode(payload("r", "start", 1)))
    assert resp.status_code == 301 and resp.headers["location"] == location
    assert "grafana_analytics_sessions_total" not in metrics(client)  # nothing applied


def test_scripted_session_durations(make_client):
    client = make_client(grafana__session_timeout=90.0)  # --session-timeout 90s
    for body in session("a", [("start", 0), ("heartbeat", 60), ("heartbeat", 300), ("end", 310)]):
        assert post(client, body).status_code == 201
    for body in session("b", [("start", 0), ("end", 4000)]):  # no heartbeats: capped by the timeout
        post(client, body)
    for body in session("c", [("start", 0), ("start", 10), ("heartbeat", 50)], **{"dashboard.uid": "new"}):
        post(client, body)  # unsaved dashboard: not counted
    text = metrics(client)
    assert value_of(text, SESSIONS, JDOE) == 2.0
    assert value_of(text, DURATION, JDOE) == 60 + 90 + 10 + 90.0


def test_disable_user_metrics_drops_user_labels(make_client):
    client = make_client(grafana__disable_user_metrics=True)
    post(client, example_bytes("01_start"))
    post(client, example_bytes("02_heartbeat"))
    labels = {k: v for k, v in JDOE.items() if k not in ("user_login", "user_name")}
    text = metrics(client)
    assert series(text, SESSIONS) == [(labels, 1.0)] and series(text, DURATION) == [(labels, 60.0)]


def test_counters_survive_a_restart_and_cache_trimming(make_client, tmp_path):
    client = make_client(grafana__max_cache_size=3)
    for n in range(10):
        for body in session(f"s{n}", [("start", 0), ("heartbeat", 60), ("end", 100)]):
            post(client, body)
    text = metrics(client)
    assert value_of(text, SESSIONS, JDOE) == 10.0 and value_of(text, DURATION, JDOE) == 1000.0
    assert len(client.app_runtime.services["grafana"].cache) <= 3
    client.app_runtime.close(2.0)  # a graceful stop, then a new server on the same data directory
    again = make_client(grafana__max_cache_size=3)
    assert value_of(metrics(again), SESSIONS, JDOE) == 10.0
    post(again, encode(payload("s9", "heartbeat", 160)))  # s9 is still cached: reopened
    text = metrics(again)  # 0, 60, 160: 60 + 75 (the 100 s gap capped) = 135, 35 more than its 100
    assert value_of(text, SESSIONS, JDOE) == 10.0 and value_of(text, DURATION, JDOE) == 1035.0


def test_scrapes_are_counted(client):
    assert value_of(metrics(client), "grafana_analytics_exporter_scrapes_total") == 1.0
    client.simulate_head("/metrics")
    assert value_of(metrics(client), "grafana_analytics_exporter_scrapes_total") == 2.0


# --------------------------------------------------------------------------- tokens and CORS

def token(scopes=("write",)):
    return mint(scopes, "panel")


def test_token_is_optional_by_default_and_required_when_configured(make_client):
    first = make_client()
    assert post(first, encode(payload("a", "start", 1))).status_code == 201
    assert value_of(metrics(first), SESSIONS) == 1.0  # applied and stored (the apps share a data dir)
    client = make_client(grafana__require_token=True)
    body = encode(payload("b", "start", 1))
    assert post(client, body).status_code == 401
    assert post(client, body, query_string="token=nonsense").status_code == 401
    assert post(client, body, query_string="token=" + token(("read",))).status_code == 403
    assert post(client, body, query_string="token=" + token()).status_code == 201  # the panel's way
    assert post(client, body, headers={"Authorization": "Token " + token()}).status_code == 201
    assert value_of(metrics(client), SESSIONS) == 2.0  # "a", and "b" once though it was posted twice


def test_cors_preflight_and_allow_origin(make_client):
    client = make_client()  # cors_origins = * by default
    preflight = {"Origin": "https://grafana.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    resp = client.simulate_options("/write", headers=preflight)
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert resp.headers["access-control-allow-headers"] == "content-type"
    resp = post(client, encode(payload("a", "start", 1)), headers={"Origin": "https://grafana.example.com"})
    assert resp.status_code == 201 and resp.headers["access-control-allow-origin"] == "*"

    client = make_client(grafana__cors_origins=["https://grafana.example.com"])
    resp = client.simulate_options("/write", headers=preflight)
    assert resp.headers["access-control-allow-origin"] == "https://grafana.example.com"
    assert resp.headers["vary"] == "Origin"
    assert client.simulate_options("/write", headers=dict(preflight, Origin="https://evil.example")).status_code == 403
    resp = post(client, encode(payload("b", "start", 1)), headers={"Origin": "https://evil.example"})
    assert resp.status_code == 201 and "access-control-allow-origin" not in resp.headers
    # a token error is readable by the page too
    client = make_client(grafana__require_token=True)
    resp = post(client, b"{}", headers={"Origin": "https://grafana.example.com"})
    assert resp.status_code == 401 and resp.headers["access-control-allow-origin"] == "*"


def test_disabled_feature_mounts_nothing(make_client):
    client = make_client(grafana__enabled=False)
    assert post(client, example_bytes("01_start")).status_code == 404
    assert "grafana_analytics" not in metrics(client)


# --------------------------------------------------------------------------- logs

@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_the_originals_start_up_lines_are_on_stdout(make_client, capfd, fmt):
    """Pipelines that key on the receiver's start find its two lines (once per worker process),
    even with the session log off."""
    import platform

    from statskit import __version__

    capfd.readouterr()
    make_client(grafana__log_format=fmt, grafana__disable_session_log=True)
    out = [line for line in capfd.readouterr().out.splitlines() if "Starting server" in line or "Build context" in line]
    if fmt == "logfmt":
        assert out == [f'level=info msg="Starting server for macropower-analytics-panel" version={__version__} '
                       'branch= revision=',
                       f'level=info msg="Build context" go=python{platform.python_version()} user= date=']
    else:
        assert [json.loads(line) for line in out] == [
            {"level": "info", "msg": "Starting server for macropower-analytics-panel", "version": __version__,
             "branch": "", "revision": ""},
            {"level": "info", "msg": "Build context", "go": "python" + platform.python_version(), "user": "",
             "date": ""}]


def test_log_lines_on_stdout_follow_the_flags(make_client, capfd):
    client = make_client()
    post(client, example_bytes("05_start_admin_absolute_range"))
    post(client, encode(payload("w", "nonsense", 5)))
    lines = log_lines(client, capfd)
    assert lines[0].startswith('level=info msg="Received session data" uuid=a1d0c6e2-')
    assert lines[1] == 'level=warn msg="Session has invalid type, defaulted to heartbeat" uuid=w type=nonsense'
    assert lines[2].startswith('level=info msg="Received session data" uuid=w type=nonsense')

    client = make_client(grafana__log_format="json")
    post(client, example_bytes("01_start"))
    data = json.loads(log_lines(client, capfd)[0])
    assert data["uuid"].startswith("3f2b9c1e") and "namespace" in data

    client = make_client(grafana__log_raw=True, grafana__disable_variable_log=True)
    post(client, example_bytes("01_start"))
    data = json.loads(log_lines(client, capfd)[0])
    assert data["msg"] == "Received session data" and data["data"]["variables"] == []

    client = make_client(grafana__disable_session_log=True)
    post(client, example_bytes("01_start"))
    assert log_lines(client, capfd) == []


# --------------------------------------------------------------------------- configuration

def test_every_option_by_original_environment_name(tmp_path):
    env = {"SESSION_TIMEOUT": "1m30s", "MAX_CACHE_SIZE": "50", "LOG_FORMAT": "json", "LOG_RAW": "true",
           "DISABLE_USER_METRICS": "1", "DISABLE_SESSION_LOG": "yes", "DISABLE_VARIABLE_LOG": "true",
           "WRITE_REQUIRE_TOKEN": "true", "WRITE_CORS_ORIGINS": "https://a.example,https://b.example"}
    g = make_settings(tmp_path, env=env).grafana
    assert (g.session_timeout, g.max_cache_size, g.log_format, g.log_raw) == (90.0, 50, "json", True)
    assert g.disable_user_metrics and g.disable_session_log and g.disable_variable_log and g.require_token
    assert g.cors_origins == ["https://a.example", "https://b.example"]


def test_every_option_as_ini_key_and_flag(tmp_path):
    ini = tmp_path / "statskit.ini"
    ini.write_text("[grafana]\nsession_timeout = 15m\nmax_cache_size = 7\nidle_timeout = 2h\nlog_format = json\n"
                   "disable_user_metrics = true\ncors_origins = https://g.example\nenabled = true\n")
    g = make_settings(tmp_path, path=str(ini)).grafana
    assert (g.session_timeout, g.max_cache_size, g.idle_timeout, g.log_format) == (900.0, 7, 7200.0, "json")
    assert g.disable_user_metrics and g.cors_origins == ["https://g.example"]
    args = build_parser().parse_args(["--session-timeout", "30s", "--max-cache-size", "9", "--log-format", "json",
                                      "--log-raw", "--disable-user-metrics", "--disable-session-log",
                                      "--disable-variable-log"])
    g = settings_from_args(args).grafana
    assert (g.session_timeout, g.max_cache_size, g.log_format, g.log_raw) == (30.0, 9, "json", True)
    assert g.disable_user_metrics and g.disable_session_log and g.disable_variable_log


def test_session_timeout_from_the_environment_caps_gaps(make_client, tmp_path):
    client = make_client(make_settings(tmp_path, env={"SESSION_TIMEOUT": "30"}))
    for body in session("a", [("start", 0), ("heartbeat", 60)]):
        post(client, body)
    assert value_of(metrics(client), DURATION) == 30.0


def test_memory_state_uses_a_memory_cache(make_client):
    client = make_client(state__backend="memory")
    for body in session("a", [("start", 0), ("heartbeat", 60), ("end", 70)]):
        post(client, body)
    assert value_of(metrics(client), DURATION) == 70.0
    assert type(client.app_runtime.services["grafana"].cache).__name__ == "MemorySessionCache"


def test_mutated_panel_payloads_get_201_or_400_never_500(client):
    """Every field of the example given every JSON type, or dropped: the answer is 201 when Go's
    decoder took it and 400 when it refused it, and /metrics keeps rendering."""
    import random

    rng = random.Random(3)
    values = [None, True, 0, -1, 2**63, 1.5, "", "x" * 300, "\u2028\"\\\n", [], [None], [1, "a"], {}, {"a": None}]

    def paths(node, prefix=()):
        if isinstance(node, dict):
            for k, v in node.items():
                yield prefix + (k,)
                yield from paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield prefix + (i,)
                yield from paths(v, prefix + (i,))

    base = json.loads(example_bytes("02_heartbeat"))
    all_paths = list(paths(base))
    statuses = set()
    for n in range(400):
        body = json.loads(json.dumps(base))
        body["uuid"] = f"fuzz-{n}"
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(all_paths)
            node = body
            try:
                for part in path[:-1]:
                    node = node[part]
                if rng.random() < 0.2 and isinstance(node, dict):
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = rng.choice(values)
            except (KeyError, IndexError, TypeError):
                continue
        resp = post(client, json.dumps(body).encode())
        assert resp.status_code in (201, 400), (resp.status_code, resp.text)
        statuses.add(resp.status_code)
    assert statuses == {201, 400}
    text = metrics(client)
    assert value_of(text, "grafana_analytics_up") == 1.0 and value_of(text, SESSIONS) is not None
