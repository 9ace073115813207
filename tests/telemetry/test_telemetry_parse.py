"""Telemetry frames: the two message forms, times, peer ids, and what is refused."""
from __future__ import annotations

from datetime import datetime

import pytest

from statskit.telemetry.parsing import FrameError, node_info, parse_frame, parse_rfc3339


def test_flat_message_is_stored_whole_with_utc_time():
    m = parse_frame(b'{"msg":"block.import","ts":"2021-07-12T12:00:00.5+02:00","height":7,"best":"0xab"}')
    assert (m.msg, m.created_at) == ("block.import", "2021-07-12T10:00:00.500000")
    assert m.logs == {"msg": "block.import", "ts": "2021-07-12T12:00:00.5+02:00", "height": 7, "best": "0xab"}


def test_envelope_form_is_flattened_to_its_payload():
    m = parse_frame('{"id":3,"ts":"2021-07-12T10:00:00Z","payload":{"msg":"system.interval","peers":4}}')
    assert m.msg == "system.interval"
    assert m.logs == {"msg": "system.interval", "peers": 4, "ts": "2021-07-12T10:00:00Z", "envelope_id": 3}


def test_text_and_binary_frames_read_alike():
    frame = '{"msg":"a","ts":"2021-01-01T00:00:00Z","name":"né"}'
    assert parse_frame(frame) == parse_frame(frame.encode())


@pytest.mark.parametrize("frame,reason", [
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b"[1,2]", "not_object"),
    (b'"text"', "not_object"),
    (b'{"msg":"a"}', "no_ts"),
    (b'{"msg":"a","ts":12345}', "bad_ts"),
    (b'{"msg":"a","ts":"2021-01-01 00:00:00"}', "bad_ts"),          # no offset: not RFC 3339
    (b'{"msg":"a","ts":"2021-13-01T00:00:00Z"}', "bad_ts"),
    (b'{"msg":"a","ts":"2021-01-01T00:00:00+24:00"}', "bad_ts"),
    (b'{"id":1,"payload":{"msg":"a"}}', "no_ts"),
])
def test_frames_that_are_not_stored_say_why(frame, reason):
    with pytest.raises(FrameError) as info:
        parse_frame(frame)
    assert info.value.reason == reason


def test_rfc3339_variants():
    assert parse_rfc3339("2020-03-25T13:17:09.008533123Z") == datetime(2020, 3, 25, 13, 17, 9, 8533)
    assert parse_rfc3339("2020-03-25t13:17:09z") == datetime(2020, 3, 25, 13, 17, 9)
    assert parse_rfc3339("2020-03-25 13:17:09-05:00") == datetime(2020, 3, 25, 18, 17, 9)
    assert parse_rfc3339("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59, 999999)


def test_system_connected_gives_peer_and_node_details():
    info = node_info({"msg": "system.connected", "network_id": "12D3KooW", "name": "alice", "chain": "Local",
                      "version": "3.0.0", "authority": True, "startup_time": "1625000000000",
                      "implementation": "Substrate Node"})
    assert info is not None
    assert (info.peer_id, info.name, info.chain, info.version, info.authority, info.startup_time,
            info.implementation) == ("12D3KooW", "alice", "Local", "3.0.0", True, 1625000000000, "Substrate Node")


def test_older_formats_give_the_peer_id_alone():
    assert node_info({"msg": "system.network_state", "state": {"peerId": "QmA"}}).peer_id == "QmA"
    assert node_info({"msg": "system.interval", "network_state": {"peerId": "QmB"}}).peer_id == "QmB"


def test_messages_without_a_usable_peer_id_give_none():
    assert node_info({"msg": "system.connected", "name": "no id"}) is None
    assert node_info({"msg": "system.connected", "network_id": 5}) is None
    assert node_info({"msg": "x", "state": {"peerId": ""}}) is None
    bad = node_info({"msg": "system.connected", "network_id": "Qm", "startup_time": "soon", "authority": "yes"})
    assert (bad.startup_time, bad.authority) == (None, None)
