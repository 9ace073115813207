"""``POST /event`` and one-shot ``/metrics`` through the Falcon app, in-process."""
import re

import pytest
from falcon import testing

import support
from statskit.config import load_settings
from statskit_server.cli import build_parser, settings_from_args
from statskit_server.peer import client_address

PROM_A, PROM_B = "10.0.0.1", "10.0.0.2"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def make_settings(tmp_path, **overrides):
    limits = {"limits__max_body_bytes": 10_000, "limits__max_event_bytes": 2_000}
    return support.make_settings(tmp_path, **{**limits, **overrides})


@pytest.fixture
def make_client(tmp_path, app_client):
    return lambda **overrides: app_client(make_settings(tmp_path, **overrides))


@pytest.fixture
def client(make_client):
    return make_client()


def events(client, remote_addr=PROM_A, **kwargs):
    """The one-shot samples a scrape hands out, as ``{series: value}`` lines in order."""
    text = client.simulate_get("/metrics", remote_addr=remote_addr, **kwargs).text
    return re.findall(r"^(events_to_metrics\{.*\}) (\S+)$", text, re.M)


def post(client, query="", **kwargs):
    return client.simulate_post("/event", query_string=query, **kwargs)


token = support.mint


def test_posted_event_reaches_each_scraper_exactly_once(client):
    assert events(client, PROM_A) == [] and events(client, PROM_B) == []  # both now tracked
    resp = post(client, "type=deploy&service=api&value=2.5")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok", "series": 'events_to_metrics{service="api",type="deploy"}', "value": 2.5}
    expected = [('events_to_metrics{service="api",type="deploy"}', "2.5")]
    assert events(client, PROM_A) == expected
    assert events(client, PROM_A) == []
    assert events(client, PROM_B) == expected
    assert events(client, PROM_B) == []


def test_default_value_is_one_and_form_body_labels_count(client):
    events(client)
    assert post(client, "type=deploy", body="service=api&region=eu", headers=FORM).status_code == 200
    assert events(client) == [('events_to_metrics{region="eu",service="api",type="deploy"}', "1.0")]


def test_a_scraper_gets_nothing_posted_before_its_first_scrape(client):
    post(client, "type=early")
    assert events(client) == []
    post(client, "type=late")
    assert events(client) == [('events_to_metrics{type="late"}', "1.0")]


def test_metrics_show_event_count_and_scraper_backlogs(client):
    events(client, PROM_A)
    events(client, PROM_B)
    post(client, "type=a")
    post(client, "type=b")
    text = client.simulate_get("/metrics", remote_addr=PROM_A).text
    assert "events_to_metrics_event_count 2.0" in text
    assert f'events_to_metrics_scraper_counts{{scraper="{PROM_A}"}} 2.0' in text
    assert f'events_to_metrics_scraper_counts{{scraper="{PROM_B}"}} 2.0' in text
    assert "statskit_build_info" in text  # alongside the other statskit metrics


@pytest.mark.parametrize("query, reason", [
    ("1abc=x", "not a valid Prometheus label name"),
    ("type=deploy&value=lots", "not a number"),
    ("type=%zz", "invalid URL escape"),
    ("type=a;b=c", "semicolon"),
    ("type=", "empty value"),
    ("type=+padded", "white space"),
    ("type=a&type=b", "given twice"),
    ("__name__=x", "reserves"),
])
def test_unrepresentable_events_get_400_saying_why_and_register_nothing(client, query, reason):
    events(client)
    resp = post(client, "ok=1&" + query)
    assert resp.status_code == 400 and reason in resp.json["message"]
    assert events(client) == []
    assert "events_to_metrics_event_count 0.0" in client.simulate_get("/metrics").text


def test_bad_form_body_is_a_400_too(client):
    resp = post(client, "type=a", body="x=%zz", headers=FORM)
    assert resp.status_code == 400 and "body" in resp.json["message"]


def test_quotes_and_newlines_are_escaped_in_the_exposition(client):
    events(client)
    assert post(client, "msg=say%20%22hi%22%0Abye").status_code == 200
    assert events(client) == [('events_to_metrics{msg="say \\"hi\\"\\nbye"}', "1.0")]


def test_same_labels_twice_between_scrapes_come_out_in_consecutive_scrapes(client):
    events(client)
    post(client, "type=deploy&value=1")
    post(client, "type=deploy&value=2")
    assert events(client) == [('events_to_metrics{type="deploy"}', "1.0")]
    assert events(client) == [('events_to_metrics{type="deploy"}', "2.0")]
    assert events(client) == []


def test_nan_and_infinity_are_accepted(client):
    events(client)
    assert post(client, "a=1&value=NaN").json["value"] == "NaN"
    assert post(client, "a=2&value=-Inf").json["value"] == "-Inf"
    assert events(client) == [('events_to_metrics{a="1"}', "NaN"), ('events_to_metrics{a="2"}', "-Inf")]


def test_head_metrics_does_not_consume(client):
    events(client)
    post(client, "type=deploy")
    head = client.simulate_head("/metrics", remote_addr=PROM_A)
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0
    assert events(client) == [('events_to_metrics{type="deploy"}', "1.0")]


def test_forwarding_headers_from_an_untrusted_peer_cannot_steal_events(client):
    events(client, PROM_A)
    post(client, "type=deploy")
    # The original believed X-Real-Ip from anyone: this client would have taken PROM_A's event.
    assert events(client, "10.6.6.6", headers={"X-Real-Ip": PROM_A, "X-Forwarded-For": PROM_A}) == []
    assert events(client, PROM_A) == [('events_to_metrics{type="deploy"}', "1.0")]


def test_trusted_proxy_forwards_the_scraper_address(make_client):
    client = make_client(server__trusted_proxies=["192.168.1.0/24"])
    via_proxy = {"remote_addr": "192.168.1.5", "headers": {"X-Forwarded-For": f"6.6.6.6, {PROM_A}"}}
    events(client, **via_proxy)
    post(client, "type=deploy")
    text = client.simulate_get("/metrics", **via_proxy).text
    assert 'events_to_metrics{type="deploy"}' in text
    assert f'events_to_metrics_scraper_counts{{scraper="{PROM_A}"}}' in text
    # X-Forwarded-For is the header read by default: an X-Real-Ip the proxy passed through
    # from the client proves nothing.
    spoofed = {"remote_addr": "192.168.1.5", "headers": {"X-Real-Ip": PROM_B, "X-Forwarded-For": "10.7.7.7"}}
    events(client, **spoofed)
    text = client.simulate_get("/metrics").text
    assert 'scraper="10.7.7.7"' in text and f'scraper="{PROM_B}"' not in text


def test_x_real_ip_counts_when_configured_and_only_then(make_client):
    client = make_client(server__trusted_proxies=["192.168.1.0/24"], server__client_ip_header="x-real-ip")
    real_ip = {"remote_addr": "192.168.1.5", "headers": {"X-Real-Ip": PROM_B, "X-Forwarded-For": PROM_A}}
    events(client, **real_ip)
    text = client.simulate_get("/metrics").text
    assert f'scraper="{PROM_B}"' in text and f'scraper="{PROM_A}"' not in text


@pytest.mark.parametrize("forwarded, expected", [
    (f"{PROM_A}:51234", PROM_A),                      # a hop written with its port
    (f"6.6.6.6, {PROM_A}:51234", PROM_A),             # ... the client's own entry left of it is ignored
    ("[2001:db8::7]:443", "2001:db8::7"),
    (f"{PROM_A}, unknown", "192.168.1.5"),            # not an address: the walk ends at the proxy
    (f"{PROM_A}, 192.168.1.9", PROM_A),               # a second trusted proxy is skipped
    ("192.168.1.8, 192.168.1.9", "192.168.1.8"),      # all trusted: the leftmost
])
def test_forwarded_for_is_walked_from_the_right(make_client, forwarded, expected):
    req = testing.create_req(remote_addr="192.168.1.5", headers={"X-Forwarded-For": forwarded})
    assert client_address(req, ["192.168.1.0/24"]) == expected


def test_trusting_any_peer_still_reads_the_header_from_the_right():
    # "*" (a proxy on a unix socket has no address to list) trusts the peer, not the hops a
    # client wrote: the proxy's own entry, the rightmost, is the client.
    req = testing.create_req(remote_addr="10.0.0.2", headers={"X-Forwarded-For": f"6.6.6.6, {PROM_A}"})
    assert client_address(req, ["*"]) == PROM_A


def test_scrapers_can_name_themselves(client):
    assert events(client, PROM_A, params={"scraper": "prom-a"}) == []
    post(client, "type=deploy")
    # Same name, another address (a restarted pod): still the same scraper.
    assert events(client, PROM_B, params={"scraper": "prom-a"}) == [('events_to_metrics{type="deploy"}', "1.0")]
    assert events(client, PROM_A) == []  # the address itself was never a scraper


def test_scraper_names_that_are_addresses_are_refused(client):
    resp = client.simulate_get("/metrics", params={"scraper": PROM_A})
    assert resp.status_code == 400 and "IP address" in resp.json["message"]


def test_token_can_be_required(make_client):
    client = make_client(oneshot__require_token=True)
    assert post(client, "type=deploy").status_code == 401
    assert post(client, "type=deploy", headers={"Authorization": "Token " + token(("read",))}).status_code == 403
    assert post(client, "type=deploy", headers={"Authorization": "Token " + token()}).status_code == 200
    events(client)
    resp = post(client, f"type=deploy&token={token()}")
    assert resp.status_code == 200 and "token" not in resp.json["series"]  # a secret never becomes a label
    assert events(client) == [('events_to_metrics{type="deploy"}', "1.0")]
    # curl -d token=... -d type=deploy: the token in a form body counts too, and is no label.
    resp = post(client, body=f"type=form&token={token()}", headers=FORM)
    assert resp.status_code == 200 and resp.json["series"] == 'events_to_metrics{type="form"}'
    assert post(client, body=f"type=form&token={token(('read',))}", headers=FORM).status_code == 403


def test_scrape_token_keeps_events_and_scraper_names_from_anonymous_scrapes(make_client):
    client = make_client(oneshot__require_scrape_token=True)
    reader = {"Authorization": "Bearer " + token(("read",))}  # what Prometheus' authorization: sends
    assert events(client, params={"scraper": "prom-a"}, headers=reader) == []
    post(client, "type=deploy")
    # Anyone may read /metrics, but an anonymous scrape takes no events and sees no scraper names.
    anonymous = client.simulate_get("/metrics", params={"scraper": "prom-a"})
    assert anonymous.status_code == 200 and "events_to_metrics_event_count 1.0" in anonymous.text
    assert "events_to_metrics{" not in anonymous.text and "prom-a" not in anonymous.text
    assert client.simulate_get("/metrics", params={"scraper": "prom-a", "token": "forged"}).status_code == 401
    assert client.simulate_get("/metrics", headers={"Authorization": "Token " + token(("write",))}).status_code == 403
    basic = client.simulate_get("/metrics", params={"scraper": "prom-a"}, headers={"Authorization": "Basic cHJvbTpwdw=="})
    assert basic.status_code == 200 and "events_to_metrics{" not in basic.text  # basic_auth: anonymous
    # The real prom-a still gets its event, once.
    assert events(client, params={"scraper": "prom-a"}, headers=reader) == [('events_to_metrics{type="deploy"}', "1.0")]
    assert events(client, params={"scraper": "prom-a", "token": token(("read",))}) == []


def test_oversized_input_is_413(client):
    assert post(client, "big=" + "x" * 3000).status_code == 413
    assert post(client, "a=1", body="b=" + "x" * 20_000, headers=FORM).status_code == 413


def test_max_pending_drops_oldest_and_counts(make_client):
    client = make_client(oneshot__max_pending=2)
    events(client)
    for i in range(4):
        post(client, f"n={i}")
    assert events(client) == [('events_to_metrics{n="2"}', "1.0"), ('events_to_metrics{n="3"}', "1.0")]
    assert 'events_to_metrics_dropped_total{reason="max_pending"} 2.0' in client.simulate_get("/metrics").text


def test_max_scrapers_refuses_the_next_scraper(make_client):
    client = make_client(oneshot__max_scrapers=1)
    events(client, PROM_A)
    events(client, PROM_B)
    post(client, "type=deploy")
    assert events(client, PROM_B) == []
    assert events(client, PROM_A) == [('events_to_metrics{type="deploy"}', "1.0")]
    assert "events_to_metrics_scrapers_refused_total 2.0" in client.simulate_get("/metrics", remote_addr=PROM_A).text


def test_explicit_timestamps_stamp_each_sample(make_client):
    client = make_client(oneshot__use_explicit_timestamps=True)
    events(client)
    post(client, "type=deploy")
    text = client.simulate_get("/metrics", remote_addr=PROM_A).text
    assert re.search(r'^events_to_metrics\{type="deploy"\} 1\.0 \d{13}$', text, re.M), text
    # The count lines too carry a stamp, the scrape's time, as the original's did.
    events(client, PROM_B)
    post(client, "type=again")
    text = client.simulate_get("/metrics", remote_addr=PROM_A).text
    assert re.search(r'^events_to_metrics_event_count 2\.0 \d{13}$', text, re.M), text
    assert re.search(r'^events_to_metrics_scraper_counts\{scraper="10\.0\.0\.2"\} 1\.0 \d{13}$', text, re.M), text


def test_options_on_event_is_a_405_as_the_original(client):
    resp = client.simulate_options("/event")
    assert resp.status_code == 405 and resp.json["error"] == "method_not_allowed"
    assert resp.headers.get("allow") == "POST"


def test_backfill_window_gives_a_new_scraper_recent_events(make_client):
    client = make_client(oneshot__backfill=300.0)
    post(client, "type=deploy")
    assert events(client) == [('events_to_metrics{type="deploy"}', "1.0")]


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_root_and_healthz_answer_get_and_head(client, path):
    assert client.simulate_get(path).json["status"] == "ok"
    assert client.simulate_head(path).status_code == 200


def test_event_only_takes_post(client):
    resp = client.simulate_get("/event")
    assert resp.status_code == 405 and resp.json["error"] == "method_not_allowed"


def test_disabled_feature_mounts_nothing(make_client):
    client = make_client(oneshot__enabled=False)
    assert post(client, "type=deploy").status_code == 404
    assert "events_to_metrics" not in client.simulate_get("/metrics").text


def test_settings_from_environment_and_flags():
    env = {"USE_EXPLICIT_TIMESTAMPS": "true", "MAX_SCRAPERS": "3", "MAX_PENDING_EVENTS": "50",
           "SCRAPER_TIMEOUT": "2m", "BACKFILL_WINDOW": "30s", "HTTP_ADDRESS": "127.0.0.1:9999",
           "EVENT_REQUIRE_TOKEN": "yes"}
    oneshot = load_settings(env=env).oneshot
    assert (oneshot.use_explicit_timestamps, oneshot.max_scrapers, oneshot.max_pending, oneshot.scraper_timeout,
            oneshot.backfill, oneshot.require_token) == (True, 3, 50, 120.0, 30.0, True)
    args = build_parser().parse_args(["--bind", "127.0.0.1:7777", "--use-explicit-timestamps", "--max-scrapers", "4",
                                      "--max-pending-events", "9", "--scraper-timeout", "90s",
                                      "--backfill-window", "1m"])
    settings = settings_from_args(args)
    assert settings.server.bind == "127.0.0.1:7777"
    assert (settings.oneshot.use_explicit_timestamps, settings.oneshot.max_scrapers, settings.oneshot.max_pending,
            settings.oneshot.scraper_timeout, settings.oneshot.backfill) == (True, 4, 9, 90.0, 60.0)
