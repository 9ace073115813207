"""Settings: one table of options, read from an ini file, then the environment, then the CLI.

Every option has an ini key (``[section] key``), an environment variable (the original systems'
names where they had one, ``STATSKIT_<SECTION>_<KEY>`` otherwise) and, for the most used ones,
a command-line flag. Later sources win: defaults < ini file < environment < CLI.

    >>> settings = load_settings("development.ini", env={"SESSION_TIMEOUT": "90s"})
    >>> settings.grafana.session_timeout
    90.0
"""
from __future__ import annotations

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, Optional, Tuple

from .plugins import features


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|w|d|h|m|s)")
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                 "ns": 1e-9}


def parse_duration(value: str) -> float:
    """Seconds from ``"90"``, ``"1.5"``, a Go duration such as ``"1m30s"`` (the original's flags),
    or days and weeks (``"30d"``, ``"2w"``)."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use seconds or e.g. 1m30s)")
    return total


def parse_list(value: str) -> list:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_networks(value: str) -> list:
    """Addresses and CIDRs, normalized (``10.0.0.1/24`` -> ``10.0.0.0/24``: gunicorn refuses
    host bits); ``*`` trusts every peer."""
    networks = []
    for item in parse_list(value):
        if item == "*":
            networks.append(item)
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None and network.prefixlen >= 96:  # ::ffff:10.0.0.1 is how peers show up as 10.0.0.1
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(str(network))
    return networks


def parse_log_level(value: str) -> str:
    level = value.strip().lower()
    level = {"warn": "warning", "fatal": "critical"}.get(level, level)
    if level not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError(f"not a log level: {value!r} (debug, info, warning, error)")
    return level


def parse_bind(value: str) -> str:
    """What gunicorn's ``--bind`` takes: ``host``, ``host:port``, ``[::1]:port``, ``unix:/path``,
    ``fd://N``; and Go's ``:8080`` (the original receivers' HTTP_ADDRESS), meaning every
    interface: ``0.0.0.0:8080``. An IPv6 address needs brackets (``::1:8080`` is ambiguous)."""
    text = value.strip()
    if text.lower().startswith(("unix:", "fd://")):
        return text
    if text.startswith(":") and text[1:].isdigit():
        text = "0.0.0.0" + text
    port: Optional[str]  # None: text after the bracket that is not ":port"
    if text.startswith("["):
        host, sep, port = text.partition("]")
        host, port = host + "]", port[1:] if port.startswith(":") else ("" if not port else None)
    elif text.count(":") > 1:
        raise ValueError(f"write an IPv6 address in brackets: {value!r} (e.g. [::1]:8080)")
    else:
        host, _, port = text.partition(":")
    if not host or host.isdigit() or port is None or (port and not (port.isdigit() and int(port) < 65536)):
        raise ValueError(f"not an address to listen on: {value!r} (host:port, e.g. 127.0.0.1:8080 or :8080)")
    return text


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser for one of ``allowed`` (case-insensitive)."""
    def parse(value: str) -> str:
        text = value.strip().lower()
        if text not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return text
    return parse


def parse_name(value: str) -> str:
    """A plugin name: lower-case letters, digits, ``_`` and ``-``."""
    name = value.strip().lower()
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"{value!r} is not a name")
    return name


def parse_positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, not {number}")
    return number


def parse_positive_duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, not {value!r}")
    return seconds


def parse_size(value: str) -> int:
    """Bytes from ``"1048576"``, ``"512k"``, ``"5M"``."""
    text = value.strip().lower().rstrip("b").rstrip("i")
    factor = 1
    if text and text[-1] in "kmg":
        factor = {"k": 1024, "m": 1024**2, "g": 1024**3}[text[-1]]
        text = text[:-1]
    return int(float(text) * factor)


@dataclass(frozen=True)
class Option:
    section: str
    key: str
    default: Any
    parse: Callable[[str], Any] = str
    env: Optional[str] = None
    flag: Optional[str] = None
    help: str = ""
    aliases: Tuple[str, ...] = ()  # more flags for the same option (the originals' names)

    @property
    def env_name(self) -> str:
        return self.env or f"STATSKIT_{self.section}_{self.key}".upper()


_S, _B, _I, _F, _D, _L, _Z = str, parse_bool, int, float, parse_duration, parse_list, parse_size
_N, _P, _PD = parse_networks, parse_positive_int, parse_positive_duration

OPTIONS: list = [
    # --- server: how statskit-server runs gunicorn
    Option("server", "bind", "127.0.0.1:8080", parse_bind, "HTTP_ADDRESS", "--bind",
           "address:port to listen on (:8080 = every interface)", aliases=("--http-address",)),
    Option("server", "workers", 2, _P, "STATSKIT_WORKERS", "--workers", "gunicorn worker processes"),
    Option("server", "threads", 8, _P, None, "--threads",
           "threads per worker (statskit's gthread worker; 1 = gunicorn's sync worker, only behind a buffering proxy)"),
    Option("server", "header_timeout", 10.0, _PD, None, None,
           "seconds a request's head may take from its first byte (then 408); waiting costs no thread"),
    Option("server", "body_timeout", 30.0, _PD, None, None, "seconds a request body may take after its head (then 408)"),
    Option("server", "timeout", 30.0, _D, None, None, "gunicorn worker timeout"),
    Option("server", "graceful_timeout", 10.0, _D, None, None, "seconds a stopping worker has to flush"),
    Option("server", "data_dir", "./statskit-data", _S, "STATSKIT_DATA_DIR", "--data-dir",
           "where the embedded SQLite state and event store live"),
    Option("server", "access_log", False, _B, None, "--access-log", "gunicorn access log on stderr"),
    Option("server", "log_level", "info", parse_log_level, "LOG_LEVEL", "--log-level", "debug, info, warning, error"),
    Option("server", "trusted_proxies", [], _N, "TRUSTED_PROXIES", "--trusted-proxies",
           "peer addresses/CIDRs (or *) whose client_ip_header is believed"),
    Option("server", "client_ip_header", "x-forwarded-for", choice("x-forwarded-for", "x-real-ip"), "CLIENT_IP_HEADER", None,
           "the header trusted proxies name the client in: x-forwarded-for or x-real-ip"),
    Option("server", "ack", "durable", choice("durable", "fast"), "STATSKIT_ACK", "--ack",
           "durable: a 2xx comes after the commit that stores it; fast: before (a crash loses the last ~50 ms)"),
    # --- auth
    Option("auth", "secret_key", [], _L, "STATSKIT_SECRET_KEY", "--secret-key",
           "comma-separated token secrets; the first signs, all verify"),
    Option("auth", "legacy_access_file", "", _S, "STATS_ACCESS_IDENTITIES", None,
           "stats-service access.json whose tokens keep working"),
    Option("auth", "legacy_access_token", "", _S, "STATS_ACCESS_TOKEN", None,
           "stats-service's one-user token (user statsbob), with legacy_access_secret"),
    Option("auth", "legacy_access_secret", "", _S, "STATS_ACCESS_SECRET", None,
           "the access secret legacy_access_token was made with"),
    # --- limits on input
    Option("limits", "max_body_bytes", 5 * 1024 * 1024, _Z, "STATSKIT_MAX_BODY_BYTES", None, "request body limit (413)"),
    Option("limits", "max_event_bytes", 64 * 1024, _Z, "STATSKIT_MAX_EVENT_BYTES", None, "one event's JSON size limit (413)"),
    Option("limits", "max_batch_events", 10000, _I, None, None, "events in one POST /log/events (413)"),
    # --- state store shared by the workers
    Option("state", "backend", "sqlite", parse_name, "STATSKIT_STATE", "--state",
           "sqlite, memory, or a backend registered under the statskit.backends entry point"),
    Option("state", "flush_interval", 1.0, _D, None, None, "how often buffered counters reach the store"),
    Option("state", "redis_url", "redis://127.0.0.1:6379/0", _S, "REDIS_URL", "--redis-url",
           "redis backend: redis://[:password@]host:port/db, rediss:// (TLS) or redis+sentinel://host:26379/service/db"),
    Option("state", "redis_prefix", "statskit", _S, "STATSKIT_REDIS_PREFIX", None,
           "redis backend: key prefix (a hash tag: every key of a deployment in one Cluster slot)"),
    Option("state", "sentinels", [], _L, "STATSKIT_REDIS_SENTINELS", None,
           "redis backend: Sentinel host:port list (with redis_url naming the db and password)"),
    Option("state", "sentinel_service", "mymaster", _S, None, None, "redis backend: the Sentinel service name"),
    # --- sinks
    Option("sinks", "enabled", ["sqlite", "stdout", "prometheus"], _L, "STATSKIT_SINKS", "--sinks",
           "sinks events go to, by name (third-party ones through the statskit.sinks entry point)"),
    Option("sinks", "max_backlog", 1_000_000, _P, None, None,
           "events a sink fed from the durable log may fall behind before the oldest are skipped (counted)"),
    Option("stdout", "format", "json", choice("json", "logfmt"), "STATSKIT_STDOUT_FORMAT", None, "event log lines: json or logfmt"),
    Option("sqlite", "commit_wait", 0.002, _D, None, None,
           "seconds a request may wait for others to share its commit (only when requests overlap)"),
    Option("sqlite", "retention_days", 0.0, _F, None, None, "delete stored events older than this (0 = keep)"),
    Option("influxdb", "url", "http://localhost:8086", _S, "INFLUXDB_URL", "--influxdb-url", "InfluxDB base URL"),
    Option("influxdb", "api", "v2", choice("v2", "v1"), "INFLUXDB_API", None, "v2 (influxdb-client) or v1 (/write, InfluxDB 1.x)"),
    Option("influxdb", "token", "", _S, "INFLUXDB_TOKEN", None, "v2 API token"),
    Option("influxdb", "org", "", _S, "INFLUXDB_ORG", None, "v2 organisation"),
    Option("influxdb", "bucket", "statskit", _S, "INFLUXDB_BUCKET", None, "v2 bucket"),
    Option("influxdb", "database", "statskit", _S, "INFLUXDB_DB", None, "v1 database (created when missing)"),
    Option("influxdb", "retention_policy", "", _S, "INFLUXDB_RP", None, "v1 retention policy"),
    Option("influxdb", "username", "", _S, "INFLUXDB_USER", None, "v1 user"),
    Option("influxdb", "password", "", _S, "INFLUXDB_PASSWORD", None, "v1 password"),
    Option("influxdb", "table_name", "analytics", _S, "TABLE_NAME", None, "measurement of uid/event events"),
    Option("influxdb", "batch_size", 5000, _I, None, None, "points per write"),
    Option("influxdb", "flush_interval", 1.0, _D, None, None, "max seconds a point waits before a write"),
    Option("influxdb", "max_buffer", 200000, _I, None, None, "points buffered per worker during an outage"),
    Option("influxdb", "timeout", 10.0, _D, None, None, "seconds per write request"),
    Option("influxdb", "read_events", True, _B, None, None, "GET /log/event/{id} falls back to InfluxDB"),
]

_BY_SECTION: dict = {}
for _opt in OPTIONS:
    _BY_SECTION.setdefault(_opt.section, []).append(_opt)


def register_options(options: Iterable[Option]) -> None:
    """Add a feature's options (its own ``[section]``); registering one twice is a no-op."""
    for opt in options:
        if _find(opt.section, opt.key) is None:
            OPTIONS.append(opt)
            _BY_SECTION.setdefault(opt.section, []).append(opt)


def _load_feature_options() -> None:
    """Register the options of every feature (:func:`statskit.plugins.features`)."""
    for feature in features().values():
        register_options(getattr(feature, "options", ()))


class Settings(SimpleNamespace):
    """Sections as attributes: ``settings.influxdb.url``. Build with :func:`load_settings`."""

    def section(self, name: str) -> SimpleNamespace:
        return getattr(self, name)


def defaults() -> Settings:
    _load_feature_options()
    return Settings(**{s: SimpleNamespace(**{o.key: _copy(o.default) for o in opts}) for s, opts in _BY_SECTION.items()})


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _apply(settings: Settings, opt: Option, raw: str, source: str) -> None:
    try:
        value = opt.parse(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    setattr(getattr(settings, opt.section), opt.key, value)


def load_settings(
    path: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> Settings:
    """Defaults, then the ini file at ``path`` (if any), then ``env``, then ``overrides``.

    ``overrides`` maps ``"section.key"`` to an already parsed value (what the CLI passes).
    ``env`` defaults to ``os.environ``; pass ``{}`` in tests for a clean slate.
    """
    settings = defaults()
    if path:
        parser = configparser.ConfigParser(interpolation=None)
        if not parser.read(path):
            raise ConfigError(f"cannot read config file {path}")
        for section in parser.sections():
            for key, raw in parser.items(section):
                opt = _find(section, key)
                if opt is not None:
                    _apply(settings, opt, raw, f"{path} [{section}] {key}")
    env = os.environ if env is None else env
    for opt in OPTIONS:
        env_raw = env.get(opt.env_name)
        if env_raw is not None:
            _apply(settings, opt, env_raw, f"environment {opt.env_name}")
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        if _find(section, key) is None:
            raise ConfigError(f"unknown setting {dotted}")
        setattr(getattr(settings, section), key, value)
    return settings


def _find(section: str, key: str) -> Optional[Option]:
    for opt in _BY_SECTION.get(section, ()):
        if opt.key == key:
            return opt
    return None


def flag_options() -> Iterable[Option]:
    _load_feature_options()
    return (o for o in OPTIONS if o.flag)
