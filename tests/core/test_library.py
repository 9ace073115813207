"""The library without HTTP: sinks, pipeline isolation, state, configuration, logfmt."""
import configparser
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from statskit.config import OPTIONS, ConfigError, load_settings, parse_duration
from statskit.events import parse_items
from statskit.logfmt import encode_line
from statskit.pipeline import Pipeline, build_pipeline
from statskit.sinks.prometheus import PrometheusSink
from statskit.sinks.sqlite import SQLiteSink
from statskit.sinks.stdout import StdoutSink
from statskit.state import open_state, sum_by
from statskit.state.memory import MemoryState
from statskit.state.sqlite import SQLiteDB, SQLiteState


class BrokenSink:
    """A third-party sink whose backend throws: the fault we must survive."""

    name = "broken"

    def emit(self, events):
        raise ConnectionError("backend down")

    def flush(self, timeout=None):
        raise ConnectionError("backend down")

    def close(self, timeout=None):
        pass


def test_a_failing_sink_is_counted_and_never_breaks_the_others(tmp_path, caplog):
    state = MemoryState()
    store = SQLiteSink(SQLiteDB(str(tmp_path / "db")))
    pipeline = Pipeline([BrokenSink(), store, PrometheusSink(state)], state)
    pipeline.ingest(parse_items([{"uid": "u", "event": "kept"}] * 3))
    pipeline.flush(2.0)
    assert store.count() == 3
    assert sum_by(state.counters(), "statskit_events_accepted") == 3
    assert state.counters("statskit_sink_errors") == [("statskit_sink_errors", (("sink", "broken"),), 1.0)]
    assert "sink broken failed to take 3 events" in caplog.text


def test_sqlite_sink_reads_back_events_and_points(tmp_path):
    store = SQLiteSink(SQLiteDB(str(tmp_path / "db")))
    events = parse_items([{"uid": "u1", "event": "buy", "amount": 9.5, "tags": {"shop": "eu"}},
                          {"measurement": "cpu", "tags": {"host": "a"}, "fields": {"v": 1}}])
    store.emit(events)
    got = store.get(events[0].id)
    assert got.to_dict() == events[0].to_dict()
    assert store.get(events[1].id).to_dict() == events[1].to_dict()
    assert [e.id for e in store.query(uid="u1")] == [events[0].id]
    store.close(1.0)


def test_stdout_sink_writes_one_json_or_logfmt_line_per_event(tmp_path):
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    events = parse_items([{"uid": "u1", "event": "signup", "note": "hello world"}, {"uid": "u2", "event": "x"}])
    json_sink, logfmt_sink = StdoutSink("json", fd=fd), StdoutSink("logfmt", fd=fd)
    json_sink.emit(events)
    json_sink.close(1.0)
    logfmt_sink.emit(events[:1])
    logfmt_sink.close(1.0)
    os.close(fd)
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["msg"] == "event" and first["uid"] == "u1" and first["note"] == "hello world"
    assert lines[2].startswith("msg=event event_id=" + events[0].id)
    assert 'note="hello world"' in lines[2]


def test_stdout_rejects_unknown_format():
    with pytest.raises(ValueError, match="json or logfmt"):
        StdoutSink("xml")


def test_logfmt_quotes_like_go_logfmt():
    line = encode_line([("msg", "Received session data"), ("a b", "x=y"), ("q", 'say "hi"\n'), ("e", ""), ("t", True)])
    assert line == 'msg="Received session data" ab="x=y" q="say \\"hi\\"\\n" e= t=true'
    assert encode_line([(" ", "dropped")]) is None
    # As go-logfmt 0.5.0: DEL is written as it is (unquoted), U+FFFD forces quotes and is escaped.
    assert encode_line([("d", "a\x7fb"), ("r", "Caf\ufffd board"), ("c", "\x01")]) == \
        'd=a\x7fb r="Caf\\ufffd board" c="\\u0001"'


def _add_in_child(path, n):
    state = SQLiteState(path)
    for _ in range(n):
        state.incr("statskit_things", {"who": "child"})
    state.close()


def test_sqlite_state_adds_up_increments_of_several_processes(tmp_path):
    path = str(tmp_path / "state.db")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_in_child, args=(path, 500)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    assert SQLiteState(path).counters("statskit_things") == [("statskit_things", (("who", "child"),), 1500.0)]


def test_counters_never_go_down():
    with pytest.raises(ValueError):
        MemoryState().incr("x", {}, -1)


def test_settings_precedence_ini_then_env_then_overrides(tmp_path):
    ini = tmp_path / "s.ini"
    ini.write_text("[grafana]\nsession_timeout = 1m30s\nmax_cache_size = 5\n[influxdb]\ntable_name = from_ini\n")
    settings = load_settings(str(ini), env={"MAX_CACHE_SIZE": "7", "TABLE_NAME": "from_env"},
                             overrides={"influxdb.table_name": "from_cli"})
    assert settings.grafana.session_timeout == 90.0
    assert settings.grafana.max_cache_size == 7
    assert settings.influxdb.table_name == "from_cli"


def test_development_ini_lists_every_option_with_its_default():
    """An operator reads development.ini to learn the keys: every one is there, at its default."""
    path = Path(__file__).resolve().parents[2] / "development.ini"
    ini = configparser.ConfigParser()
    ini.read(path)
    missing = [f"[{o.section}] {o.key}" for o in OPTIONS if not ini.has_option(o.section, o.key)]
    assert missing == []
    settings = load_settings(str(path), env={})
    differ = sorted(f"{o.section}.{o.key}" for o in OPTIONS
                    if getattr(getattr(settings, o.section), o.key) != o.default)
    assert differ == []


def test_bad_settings_name_their_source(tmp_path):
    with pytest.raises(ConfigError, match="SESSION_TIMEOUT"):
        load_settings(env={"SESSION_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(str(tmp_path / "missing.ini"), env={})
    assert parse_duration("250ms") == 0.25 and parse_duration("2h") == 7200


def test_unknown_sink_name_is_a_clear_error(tmp_path):
    settings = load_settings(env={}, overrides={"sinks.enabled": ["nope"], "state.backend": "memory"})
    with pytest.raises(ValueError, match="unknown sink 'nope'"):
        build_pipeline(settings)


def test_open_state_by_name(tmp_path):
    assert isinstance(open_state("memory"), MemoryState)
    assert isinstance(open_state("sqlite", str(tmp_path)), SQLiteState)
    with pytest.raises(ValueError):
        open_state("etcd")
