"""The session log lines: what a Loki/promtail pipeline built for the original parses."""
import json

import pytest

from grafana_payloads import encode, example_bytes, payload
from statskit.logfmt import encode_line
from statskit.grafana import decode_payload
from statskit.grafana.sessionlog import SessionLog, go_json, logfmt_line, session_logfmt, session_pairs
from statskit.grafana import Step

START_LINE = (
    'level=info msg="Received session data" uuid=3f2b9c1e-7d4a-4e55-9a0b-2c6d8e1f4a77 type=start has_focus=true '
    'host=https://grafana.example.com: build="(commit=615c153b3a, edition=Open Source, env=production, '
    'version=7.5.4)" license="(state=, expiry=0, license=false)" dashboard_name="Kubernetes / Cluster Overview" '
    'dashboard_uid=k8s-cluster-ov dashboard_timezone=browser user_id=42 user_login=jdoe user_email=jdoe@example.com '
    'user_name="Jane Doe" user_theme=dark user_role=editor user_locale=en-US user_timezone=browser '
    'time_from=1618782134 time_to=1618803734 time_from_raw=now-6h time_to_raw=now timeorigin=1618803700 '
    'time=1618803734 datasource="(label=Data source, type=datasource, multi=false, count=1, values=[Prometheus])" '
    'cluster="(label=Cluster, type=query, multi=false, count=1, values=[prod-eu-1])" '
    'namespace="(label=, type=query, multi=true, count=2, values=[kube-system,monitoring])" '
    'interval="(label=Interval, type=interval, multi=false, count=0, values=[])"')

ADMIN_LINE = (
    'level=info msg="Received session data" uuid=a1d0c6e2-0c3b-4b8e-8f3e-5d2f7a9b1c00 type=start has_focus=true '
    'host=http://localhost:3000 build="(commit=b6ae2a6a1d, edition=Enterprise, env=development, version=8.0.6)" '
    'license="(state=Valid, expiry=1735689600, license=true)" dashboard_name="Analytics Panel Example Dashboard" '
    'dashboard_uid=ZQZXRMXMk dashboard_timezone=utc user_id=1 user_login=admin user_email=admin@localhost '
    'user_name=admin user_theme=light user_role=admin user_locale=de-DE user_timezone=utc time_from=1618844400 '
    'time_to=1618930799 time_from_raw=2021-04-19T15:00:00.000Z time_to_raw=2021-04-20T14:59:59.000Z '
    'timeorigin=1618899990 time=1618900000')


def lines_for(body, kind=None, **options):
    written = []
    log = SessionLog(write=written.extend, **options)
    p = decode_payload(body)
    step = Step(kind or (p.type if p.type in ("start", "heartbeat", "end") else "heartbeat"))
    log.write(log.lines(p, step))
    return written


def test_logfmt_line_is_the_originals():
    assert lines_for(example_bytes("01_start")) == [START_LINE]
    assert lines_for(example_bytes("05_start_admin_absolute_range")) == [ADMIN_LINE]


def test_flattened_payload_logs_like_the_nested_one():
    nested = lines_for(example_bytes("02_heartbeat"))[0]
    assert lines_for(example_bytes("06_heartbeat_flattened")) == [nested]  # the original lost its fields


@pytest.mark.parametrize("text", ["plain", "", "two words", 'say "hi"', "back\\slash", "new\nline", "tab\there",
                                  "a=b", "\u00e9t\u00e9 \u2603", "\ufffd", "ctl\x01\x7f", "crlf\r\n", "=", '"'])
def test_quoting_agrees_with_go_logfmt(text):
    body = payload("u", "heartbeat", 5, **{"dashboard.name": text, "user.name": text,
                                           "variables": [{"name": "v", "label": text, "type": "query",
                                                          "multi": False, "values": [text]}]})
    p = decode_payload(encode(body))
    assert session_logfmt(p) == encode_line(session_pairs(p))


def test_variable_names_lose_what_a_key_cannot_hold_and_an_empty_one_drops_the_line():
    def with_variable(name):
        body = payload("u", "heartbeat", 5, variables=[{"name": name, "label": "", "type": "custom",
                                                         "multi": False, "values": ["x"]}])
        return lines_for(encode(body))

    assert with_variable('my "var"=x').pop().endswith(' myvarx="(label=, type=custom, multi=false, count=1, values=[x])"')
    assert with_variable("") == [] and with_variable(" = ") == []  # go-logfmt drops the whole line


def test_non_string_variable_values_are_logged_not_crashing():
    body = payload("u", "heartbeat", 5, variables=[{"name": "n", "label": None, "type": "custom", "multi": True,
                                                     "values": [1, 2.5, True, None]}])
    line = lines_for(encode(body))[0]
    assert line.endswith(' n="(label=, type=custom, multi=true, count=4, values=[1,2.5,true,])"')


def test_disable_variable_log_leaves_variables_out():
    line = lines_for(example_bytes("01_start"), variables=False)[0]
    assert line == START_LINE.split(" datasource=")[0]


def test_json_line_has_sorted_keys_and_typed_values():
    line = lines_for(example_bytes("05_start_admin_absolute_range"), fmt="json")[0]
    data = json.loads(line)
    assert list(data) == sorted(data)
    assert data["level"] == "info" and data["msg"] == "Received session data"
    assert data["user_id"] == 1 and data["has_focus"] is True and data["time"] == 1618900000
    assert data["license"] == "(state=Valid, expiry=1735689600, license=true)"
    assert line.startswith('{"build":"(commit=b6ae2a6a1d, edition=Enterprise, env=development, version=8.0.6)",')


def test_json_line_variable_named_like_a_fixed_key_overwrites_it():
    body = payload("u", "heartbeat", 5, variables=[{"name": "uuid", "label": "", "type": "custom",
                                                     "multi": False, "values": ["x"]}])
    data = json.loads(lines_for(encode(body), fmt="json")[0])
    assert data["uuid"] == "(label=, type=custom, multi=false, count=1, values=[x])"


def test_raw_line_is_the_whole_payload_as_the_go_struct():
    line = lines_for(example_bytes("01_start"), raw=True)[0]
    assert line.startswith('{"data":{"uuid":"3f2b9c1e-7d4a-4e55-9a0b-2c6d8e1f4a77","type":"start","hasFocus":true,'
                           '"options":{"postStart":true,"postEnd":true,"postHeartbeat":true,"heartbeatInterval":60,'
                           '"heartbeatAlways":false},"host":{"hostname":"grafana.example.com",')
    assert line.endswith('"timeZone":"browser","timeOrigin":1618803700,"time":1618803734},"level":"info",'
                         '"msg":"Received session data"}')
    data = json.loads(line)["data"]
    assert data["variables"][0] == {"name": "datasource", "label": "Data source", "type": "datasource",
                                    "multi": False, "values": ["Prometheus"]}
    assert json.loads(lines_for(example_bytes("01_start"), raw=True, variables=False)[0])["data"]["variables"] == []
    no_vars = payload("u", "heartbeat", 5)
    del no_vars["variables"]
    assert json.loads(lines_for(encode(no_vars), raw=True, variables=False)[0])["data"]["variables"] is None


def test_raw_line_keeps_non_string_values():
    body = payload("u", "heartbeat", 5, variables=[{"name": "n", "values": [1, 1.5, {"b": 2, "a": 1}]}])
    data = json.loads(lines_for(encode(body), raw=True)[0])["data"]
    assert data["variables"][0]["values"] == [1, 1.5, {"a": 1, "b": 2}]


def test_unknown_type_warns_before_the_session_line():
    lines = lines_for(encode(payload("u", "bogus", 5)), kind="heartbeat")
    assert lines[0] == 'level=warn msg="Session has invalid type, defaulted to heartbeat" uuid=u type=bogus'
    assert lines[1].startswith('level=info msg="Received session data" uuid=u type=bogus ')
    lines = lines_for(encode(payload("u", "", 5)), kind="heartbeat", fmt="json")
    assert json.loads(lines[0]) == {"level": "warn", "msg": "Session has invalid type, defaulted to heartbeat",
                                    "type": "", "uuid": "u"}
    # an unsaved dashboard is not processed, so not warned about
    assert len(lines_for(encode(payload("u", "bogus", 5, **{"dashboard.uid": "new"})), kind="heartbeat")) == 1


def test_disable_session_log_writes_only_warnings():
    assert lines_for(example_bytes("02_heartbeat"), enabled=False) == []
    assert len(lines_for(encode(payload("u", "x", 5)), kind="heartbeat", enabled=False)) == 1


def test_go_json_escapes_as_go_does():
    assert go_json({"k": "a\u2028b\bc\fd<>&\"\\\n\x01\x7f\u00e9"}) == \
        '{"k":"a\\u2028b\\u0008c\\u000cd<>&\\"\\\\\\n\\u0001\x7f\u00e9"}'
    assert go_json({"b": 1, "a": [10**30]}, sort_keys=True) == '{"a":[1000000000000000000000000000000],"b":1}'


def test_logfmt_line_helper_drops_lines_with_empty_keys():
    assert logfmt_line([("level", "info"), ("a b", 1)]) == "level=info ab=1"
    assert logfmt_line([("level", "info"), ("", 1)]) is None
