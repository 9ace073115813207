"""The telemetry feature's settings, its default-off state, and the limits of one connection."""
from __future__ import annotations

import pytest

from statskit.config import ConfigError, load_settings
from statskit.state.memory import MemoryState
from statskit.telemetry import Ingestor, TelemetryWriter
from statskit.telemetry.feature import listener_bind
from statskit.telemetry.store_sqlite import SQLiteTelemetryStore
from statskit_server.cli import check_settings, main
from statskit_server.telemetry_serve import gunicorn_options


def test_off_by_default_nothing_changes_for_existing_users(app_client):
    settings = load_settings(env={}, overrides={"state.backend": "memory", "sinks.enabled": []})
    assert settings.telemetry.enabled is False
    client = app_client(settings)
    assert "telemetry" not in client.app_runtime.services
    assert "substrate_message_count" not in client.simulate_get("/metrics").text


def test_on_its_counters_are_on_metrics(app_client):
    settings = load_settings(env={"STATSKIT_TELEMETRY_ENABLED": "1"},
                             overrides={"state.backend": "memory", "sinks.enabled": []})
    body = app_client(settings).simulate_get("/metrics").text
    for name in ("substrate_message_count 0.0", "tetcore_bytes_received 0.0", "nodes_connected_count 0.0",
                 "current_substrate_connections 0.0"):
        assert name in body


def test_the_originals_environment_names():
    env = {"PORT": "9001", "HEARTBEAT_INTERVAL": "2", "CLIENT_TIMEOUT_S": "7", "WS_MAX_PAYLOAD": "1024",
           "DB_BATCH_SIZE": "10", "DB_SAVE_LATENCY_MS": "250", "LOG_EXPIRY_H": "24", "PURGE_INTERVAL_S": "60",
           "MAX_PENDING_CONNECTIONS": "5", "DATABASE_URL": "postgres://u@h/db"}
    tel = load_settings(env=env).telemetry
    assert (tel.heartbeat_interval, tel.client_timeout, tel.ws_max_payload, tel.db_batch_size, tel.db_save_latency,
            tel.log_expiry_h, tel.purge_interval, tel.max_connections, tel.database_url) == \
        (2.0, 7.0, 1024, 10, 0.25, 24.0, 60.0, 5, "postgres://u@h/db")
    settings = load_settings(env=env)
    assert listener_bind(settings) == "127.0.0.1:9001"
    options = gunicorn_options(settings)
    assert options["bind"] == ["127.0.0.1:9001"] and options["websocket_max_message_size"] == 1024
    assert options["worker_class"] == "statskit_server.telemetry_worker.TelemetryWorker"


@pytest.mark.parametrize("env,words", [
    ({"HEARTBEAT_INTERVAL": "10", "CLIENT_TIMEOUT_S": "5"}, "client_timeout"),
    ({"STATSKIT_STATE": "memory", "STATSKIT_WORKERS": "1"}, "sqlite state"),
    ({"TELEMETRY_STORE": "postgresql"}, "database_url"),
])
def test_settings_the_listener_cannot_use_are_refused_before_start(env, words):
    settings = load_settings(env={"STATSKIT_TELEMETRY_ENABLED": "true", **env})
    with pytest.raises(ConfigError, match=words):
        check_settings(settings)


def test_cli_refuses_them_with_status_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HEARTBEAT_INTERVAL", "10")
    monkeypatch.setenv("CLIENT_TIMEOUT_S", "5")
    assert main(["--telemetry", "--bind", "127.0.0.1:0", "--data-dir", str(tmp_path)]) == 2
    assert "client_timeout" in capsys.readouterr().err


def test_message_rate_limit_drops_and_counts(tmp_path):
    store, state = SQLiteTelemetryStore.in_data_dir(str(tmp_path)), MemoryState()
    writer = TelemetryWriter(store, state)
    ingest = Ingestor(store, writer, state, max_rate=0.001, burst=5)  # 5 at once, then ~nothing
    conn = ingest.open("x:1", audit=False)
    taken = [conn.frame(b'{"msg":"m","ts":"2021-01-01T00:00:00Z"}') for _ in range(8)]
    writer.close(5.0)
    assert taken == [True] * 5 + [False] * 3
    assert store.count_messages() == 5
    assert dict((n, v) for n, _, v in state.counters())["statskit_telemetry_rate_limited"] == 3
    store.close()
