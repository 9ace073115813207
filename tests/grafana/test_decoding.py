"""Decoding the analytics panel's payloads as the original Go receiver did (and a bit better)."""
import json

import pytest

from grafana_payloads import NAMES, example, example_bytes, payload
from statskit.errors import ValidationError
from statskit.grafana import Payload, decode_payload, unflatten, value_text


@pytest.mark.parametrize("name", NAMES)
def test_every_example_payload_decodes(name):
    p = decode_payload(example_bytes(name))
    body = example(name)
    assert p.uuid == body["uuid"] and p.type == body["type"] and p.time == body["time"]
    assert p.options.heartbeat_interval == 60


def test_example_fields_land_where_the_original_read_them():
    p = decode_payload(example_bytes("05_start_admin_absolute_range"))
    assert (p.host.hostname, p.host.port, p.host.protocol) == ("localhost", "3000", "http:")
    assert (p.host.build_info.version, p.host.build_info.env, p.host.build_info.edition) == ("8.0.6", "development", "Enterprise")
    assert (p.host.license_info.has_license, p.host.license_info.expiry, p.host.license_info.state_info) == (True, 1735689600, "Valid")
    assert (p.dashboard.name, p.dashboard.uid) == ("Analytics Panel Example Dashboard", "ZQZXRMXMk")
    assert (p.user.login, p.user.role, p.user.theme, p.user.locale) == ("admin", "admin", "light", "de-DE")
    assert (p.time_range.from_, p.time_range.raw.to) == (1618844400, "2021-04-20T14:59:59.000Z")
    assert (p.time_zone, p.time_origin, p.variables) == ("utc", 1618899990, [])


def test_flattened_payload_gets_the_same_fields_as_the_nested_one():
    nested = decode_payload(example_bytes("02_heartbeat"))
    flat = decode_payload(example_bytes("06_heartbeat_flattened"))
    assert flat.flattened and not nested.flattened
    assert flat.to_go_json() == nested.to_go_json()  # the original saw only 6 top-level keys of it
    assert [v.name for v in flat.variables] == ["datasource", "cluster", "namespace", "interval"]
    assert flat.variables[2].values == ["kube-system", "monitoring"] and flat.variables[3].values == []


def test_unflatten_follows_npm_flat():
    assert unflatten({"a.b": 1, "a.c.0": "x", "a.c.1": "y", "d": 2}) == {"a": {"b": 1, "c": ["x", "y"]}, "d": 2}
    assert unflatten({"v.1.n": "b", "v.0.n": "a"}) == {"v": [{"n": "a"}, {"n": "b"}]}
    # an index too large to be a list stays an object (and is then no valid variables list)
    assert unflatten({"v.99999.n": "a"}) == {"v": {"99999": {"n": "a"}}}
    with pytest.raises(ValidationError, match="variables: expected an array"):
        decode_payload(b'{"uuid": "u", "variables.99999999.name": "x"}')


def test_keys_match_case_insensitively_and_unknown_keys_are_ignored():
    p = decode_payload(b'{"UUID": "u1", "Type": "end", "DASHBOARD": {"Uid": "d"}, "user": {"LOGIN": "x"},'
                       b' "whatever": {"nested": [1, 2]}, "options": {"server": 5, "flatten": "yes"}}')
    assert (p.uuid, p.type, p.dashboard.uid, p.user.login) == ("u1", "end", "d", "x")


def test_null_leaves_the_zero_value():
    body = payload()
    body.update(uuid=None, hasFocus=None, time=None, host=None, variables=None)
    body["user"]["login"] = None
    body["dashboard"] = {"uid": "d", "name": None}
    p = decode_payload(json.dumps(body).encode())
    assert (p.uuid, p.has_focus, p.time, p.host.hostname, p.user.login, p.dashboard.name) == ("", False, 0, "", "", "")
    assert p.variables is None
    p = decode_payload(b'{"uuid": "u", "variables": [null, {"label": null, "values": null}]}')
    assert [(v.name, v.label, v.values) for v in p.variables] == [("", "", None), ("", "", None)]


def test_only_the_first_json_value_counts():
    assert decode_payload(b'  {"uuid": "u", "time": 5} trailing garbage {').time == 5
    assert decode_payload(b'{"uuid": "a"}{"uuid": "b"}').uuid == "a"


def test_invalid_utf8_and_lone_surrogates_become_replacement_characters():
    assert decode_payload(b'{"uuid": "a\xffb"}').uuid == "a\ufffdb"
    assert decode_payload(b'{"uuid": "a\\ud800b"}').uuid == "a\ufffdb"
    assert decode_payload(b'{"uuid": "\\ud83d\\ude00"}').uuid == "\U0001F600"


@pytest.mark.parametrize("body, field", [
    (b'{"time": 1.5}', "time"),
    (b'{"time": 1.0}', "time"),            # Go's int takes no float, even a whole one
    (b'{"time": 1e3}', "time"),
    (b'{"time": "1618803734"}', "time"),
    (b'{"time": 9223372036854775808}', "time"),
    (b'{"time": true}', "time"),
    (b'{"user": {"id": 4.2}}', "user.id"),
    (b'{"options": {"heartbeatInterval": "60"}}', "options.heartbeatInterval"),
    (b'{"uuid": 5}', "uuid"),
    (b'{"hasFocus": "true"}', "hasFocus"),
    (b'{"dashboard": "k8s"}', "dashboard"),
    (b'{"variables": {"0": {}}}', "variables"),
    (b'{"variables": [{"name": "a"}, 7]}', "variables.1"),
    (b'{"variables": [{"values": "x"}]}', "variables.0.values"),
    (b'{"Host": {"BuildInfo": {"env": 5}}}', "Host.BuildInfo.env"),
])
def test_a_field_of_the_wrong_type_is_refused_with_its_path(body, field):
    with pytest.raises(ValidationError) as info:
        decode_payload(body)
    assert info.value.field == field


@pytest.mark.parametrize("body", [b"", b"   ", b"null", b"[]", b'[{"uuid": "u"}]', b'"start"', b"42", b"{}",
                                  b'{"foo": 1}', b"{", b'{"uuid": NaN}', b'{"uuid": "u",}', b"\xef\xbb\xbf{}"])
def test_a_body_that_is_not_a_payload_is_refused(body):
    with pytest.raises(ValidationError):
        decode_payload(body)


def _nested(depth, prefix=b""):
    return b'{"uuid": "x' + prefix + b'", "variables": [{"name": "a", "values": ' + b"[" * depth + b"]" * depth + b"}]}"


@pytest.mark.parametrize("body, words", [
    (b"[" * 2000, "nested deeper than 32"),
    (_nested(40), "nested deeper than 32"),            # orjson takes it; the log formatters recurse
    (_nested(1100), "nested deeper than 32"),          # orjson refuses it; the lenient decoder recursed
    (_nested(700, b"\xff"), "nested deeper than 32"),  # invalid UTF-8: the lenient decoder
    (json.dumps({"uuid": "x", "a." * 1000 + "b": 1}).encode(), "more than 32 parts"),
    (b'{"0.a": 1}', "flattened array"),
    (b'{"uuid": "x", "variables": [{"name": "a", "values": [1e400]}]}', "out of range"),  # Go: 400 too
])
def test_bodies_that_once_broke_the_decoder_are_refused(body, words):
    with pytest.raises(ValidationError, match=words):
        decode_payload(body)
    assert decode_payload(_nested(20)).variables[0].name == "a"  # real nesting is still fine


def test_variable_values_of_any_json_type_are_kept_and_have_a_text():
    p = decode_payload(b'{"variables": [{"name": "v", "values": ["a", 1, 2.5, 1.0, true, null, [1], {"b": 1, "a": 2},'
                       b' 123456789012345678901234567890]}]}')
    assert p.variables[0].value_texts() == ["a", "1", "2.5", "1", "true", "", "[1]", '{"a":2,"b":1}',
                                            "1.2345678901234568e+29"]
    assert value_text(1e21) == "1e+21" and value_text(1.5e-7) == "1.5e-7"  # Go's float64 formatting


def test_raw_form_is_the_go_struct_in_field_order_with_zero_values():
    raw = Payload().to_go_json()
    assert list(raw) == ["uuid", "type", "hasFocus", "options", "host", "dashboard", "user", "variables",
                         "timeRange", "timeZone", "timeOrigin", "time"]
    assert raw["options"] == {"postStart": False, "postEnd": False, "postHeartbeat": False,
                              "heartbeatInterval": 0, "heartbeatAlways": False}
    assert raw["variables"] is None and raw["timeRange"] == {"from": 0, "to": 0, "raw": {"from": "", "to": ""}}
    full = decode_payload(example_bytes("01_start")).to_go_json()
    assert "server" not in full["options"]  # options the Go struct does not have are gone
    assert full["variables"][2] == {"name": "namespace", "label": "", "type": "query", "multi": True,
                                    "values": ["kube-system", "monitoring"]}
