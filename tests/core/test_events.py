"""The event model: what is accepted, what is refused and why."""
import json
import re

import pytest

from statskit.errors import TooLarge, ValidationError
from statskit.events import (check_item_sizes, decode_batch, decode_json, format_time, parse_item, parse_items,
                             parse_time)


def test_v1_event_keeps_every_field_and_gets_an_entry_id():
    ev = parse_item({"uid": "user-1", "event": "signup", "plan": "pro", "seats": 3, "trial": True, "score": 1.5},
                    table_name="analytics")
    assert re.fullmatch(r"entry_[0-9a-f]{32}", ev.id)
    assert ev.measurement == "analytics"
    assert ev.tags == {"uid": "user-1", "event": "signup"}
    assert ev.fields == {"plan": "pro", "seats": 3, "trial": True, "score": 1.5}
    assert ev.to_dict()["plan"] == "pro" and ev.to_dict()["event_id"] == ev.id


def test_nested_dicts_flatten_like_stats_client_v1_and_tags_become_tags():
    ev = parse_item({"uid": 7, "event": "click", "agent": {"browser": {"name": "firefox"}}, "tags": {"env": "prod"}})
    assert ev.uid == "7"
    assert ev.fields == {"agent_browser_name": "firefox"}
    assert ev.tags == {"env": "prod", "uid": "7", "event": "click"}


def test_v2_point_keeps_field_types_and_stringifies_tags():
    ev = parse_item({"measurement": "cpu", "tags": {"host": "a", "core": 1}, "fields": {"value": 0.5, "n": 2}})
    assert ev.is_point and ev.name == "cpu"
    assert ev.tags == {"host": "a", "core": "1"}
    assert ev.fields == {"value": 0.5, "n": 2}


@pytest.mark.parametrize("value, expected_ns", [
    ("2026-11-22T10:00:00Z", 1795341600 * 10**9),
    ("2026-11-22T11:00:00+01:00", 1795341600 * 10**9),
    ("2026-11-22T10:00:00", 1795341600 * 10**9),  # naive = UTC, what utcnow().isoformat() sends
    (1795341600, 1795341600 * 10**9),  # seconds
    (1795341600123, 1795341600123 * 10**6),  # JavaScript milliseconds
    (1795341600.5, 1795341600500000000),
])
def test_client_time_is_honoured(value, expected_ns):
    assert parse_time(value) == expected_ns
    assert parse_item({"uid": "u", "event": "e", "time": value}).time_ns == expected_ns


def test_format_time_round_trips():
    assert parse_time(format_time(1795341600123456000)) == 1795341600123456000


@pytest.mark.parametrize("obj, field", [
    ({"event": "x"}, "uid"),
    ({"uid": "u"}, "event"),
    ({"uid": "", "event": "x"}, "uid"),
    ({"uid": "u", "event": 5}, "event"),
    ({"uid": "u", "event": "x", "bad key": 1}, "bad key"),
    ({"uid": "u", "event": "x", "list": [1, 2]}, "list"),
    ({"uid": "u", "event": "x", "nan": float("nan")}, "nan"),
    ({"uid": "u", "event": "x", "time": "yesterday"}, "time"),
    ({"uid": "u", "event": "x", "time": -5}, "time"),
    ({"uid": "u", "event": "x", "event_id": "no spaces please"}, "event_id"),
    ({"uid": "u", "event": "x", "tags": ["a"]}, "tags"),
    ({"measurement": "m", "fields": {}}, "fields"),
    ({"measurement": "", "fields": {"a": 1}}, "measurement"),
    ({"measurement": "m", "fields": {"a": 1}, "tags": {"t": {"x": 1}}}, "t"),
])
def test_bad_events_say_which_field(obj, field):
    with pytest.raises(ValidationError) as info:
        parse_item(obj)
    assert info.value.field == field
    assert info.value.status == 400


def test_a_batch_is_validated_whole_and_names_the_bad_index():
    with pytest.raises(ValidationError) as info:
        parse_items([{"uid": "u", "event": "ok"}, {"uid": "u"}])
    assert info.value.index == 1


def test_client_event_id_makes_retries_idempotent():
    ev = parse_item({"uid": "u", "event": "x", "event_id": " Entry_ABC "})
    assert ev.id == "entry_abc"


def test_decode_json_errors_are_explained():
    with pytest.raises(ValidationError, match="malformed JSON"):
        decode_json(b"{nope")
    with pytest.raises(ValidationError, match="empty body"):
        decode_json(b"  ")
    with pytest.raises(ValidationError, match="UTF-8"):
        decode_json(b"\xff\xfe")
    with pytest.raises(ValidationError, match="malformed JSON"):
        decode_json(b'{"uid": "u", "event": "x", "v": NaN}')
    deep = b'{"uid": "u", "event": "x", "a": ' + b'{"b": ' * 5000 + b"1" + b"}" * 5001
    with pytest.raises(ValidationError, match="nested|malformed"):  # refused, never a RecursionError
        parse_item(decode_json(deep))


def test_decode_batch_reads_arrays_and_ndjson():
    assert decode_batch(b'[{"a":1},{"b":2}]', 10) == [{"a": 1}, {"b": 2}]
    assert decode_batch(b'{"a":1}\n\n{"b":2}\n', 10) == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValidationError) as info:
        decode_batch(b'{"a":1}\n{oops\n', 10)
    assert "line 2" in info.value.message
    with pytest.raises(TooLarge):
        decode_batch(json.dumps([{}] * 11).encode(), 10)


def test_oversized_event_in_a_batch_is_413_with_its_index():
    items = [{"uid": "u", "event": "x"}, {"uid": "u", "event": "x", "blob": "x" * 2000}]
    with pytest.raises(TooLarge) as info:
        check_item_sizes(items, body_length=5000, max_event_bytes=1000)
    assert info.value.index == 1 and info.value.status == 413
    check_item_sizes(items, body_length=900, max_event_bytes=1000)  # small body: nothing to check
