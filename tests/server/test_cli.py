"""statskit-server's command line: settings are checked before gunicorn starts, with a message
that names the setting, instead of workers that fail to boot."""
import pytest

from statskit.config import ConfigError
from statskit_server.cli import build_parser, check_settings, gunicorn_options, main, settings_from_args

ALL_ORIGINAL_ENV = ("HTTP_ADDRESS", "LOG_LEVEL", "LOG_FORMAT", "MAX_SCRAPERS", "MAX_PENDING_EVENTS", "SCRAPER_TIMEOUT",
                    "TRUSTED_PROXIES", "STATSKIT_STATE", "STATSKIT_WORKERS", "CLIENT_IP_HEADER", "STATSKIT_CONFIG")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ALL_ORIGINAL_ENV:
        monkeypatch.delenv(name, raising=False)


def parse(*argv):
    return settings_from_args(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("env, words", [
    ({"MAX_SCRAPERS": "0"}, "MAX_SCRAPERS: must be at least 1"),
    ({"MAX_PENDING_EVENTS": "-5"}, "MAX_PENDING_EVENTS: must be at least 1"),
    ({"SCRAPER_TIMEOUT": "0"}, "SCRAPER_TIMEOUT: must be longer than 0"),
    ({"LOG_LEVEL": "bogus"}, "LOG_LEVEL: not a log level"),
    ({"LOG_FORMAT": "text"}, "LOG_FORMAT: 'text' is not one of logfmt, json"),
    ({"TRUSTED_PROXIES": "10.0.0.1, proxy.local"}, "TRUSTED_PROXIES: 'proxy.local' is not an IP address"),
    ({"CLIENT_IP_HEADER": "Forwarded"}, "CLIENT_IP_HEADER"),
    ({"HTTP_ADDRESS": "8080"}, "HTTP_ADDRESS: not an address to listen on"),
    ({"STATSKIT_STATE": "memory"}, "backend memory keeps counters"),
    ({"STATS_ACCESS_SECRET": "ab" * 64}, "STATS_ACCESS_TOKEN is not set"),
    ({"STATS_ACCESS_SECRET": "ab" * 64, "STATS_ACCESS_TOKEN": "ab" * 64}, "does not verify with STATS_ACCESS_SECRET"),
])
def test_bad_settings_stop_the_server_before_it_starts(monkeypatch, capsys, tmp_path, env, words):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("statskit-server: ") and words in err and "Traceback" not in err


def test_original_address_forms_and_flags(monkeypatch):
    assert parse("--http-address", ":9999").server.bind == "0.0.0.0:9999"  # the Go receivers' flag and form
    for bind in ("[::1]:8080", "[::1]", "127.0.0.1", "localhost:0", "unix:/run/statskit.sock", "fd://3"):
        assert parse("--bind", bind).server.bind == bind  # what gunicorn's --bind takes, as it is
    for bad in ("::1:8080", "8080", "host:99999", "host:http"):
        with pytest.raises(ConfigError):
            parse("--bind", bad)
    monkeypatch.setenv("HTTP_ADDRESS", ":8081")
    assert parse().server.bind == "0.0.0.0:8081"


def test_trusted_networks_are_normalized_for_gunicorn(monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1/24, 192.168.1.7, ::ffff:172.16.0.9, *")
    settings = parse()
    # ::ffff:a.b.c.d is written as a.b.c.d: peers are compared in that form.
    assert settings.server.trusted_proxies == ["10.0.0.0/24", "192.168.1.7/32", "172.16.0.9/32", "*"]
    assert gunicorn_options(settings)["forwarded_allow_ips"] == "10.0.0.0/24,192.168.1.7/32,172.16.0.9/32,*"


def test_memory_state_is_fine_with_one_worker(monkeypatch):
    monkeypatch.setenv("STATSKIT_STATE", "memory")
    check_settings(parse("--workers", "1"))  # does not raise
    assert parse("--log-level", "WARN").server.log_level == "warning"
