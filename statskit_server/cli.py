"""``statskit-server``: gunicorn with the statskit app and its lifecycle hooks.

    statskit-server --bind 127.0.0.1:8080 --data-dir ./statskit-data --workers 2
    statskit-server --config development.ini

Every flag is also an ini key and an environment variable (see ``statskit/config.py``).
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from typing import Any, List, Optional

from statskit import __version__, logs
from statskit.config import (
    ConfigError,
    Settings,
    flag_options,
    load_settings,
    parse_bool,
)
from statskit.constants import SECRET_FILE

from . import balance

log = logging.getLogger("statskit.server")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="statskit-server", description="Run the statskit ingestion server under gunicorn.")
    parser.add_argument("--config", default=os.environ.get("STATSKIT_CONFIG"), help="ini file (env STATSKIT_CONFIG)")
    parser.add_argument("--version", action="version", version=f"statskit {__version__}")
    for opt in flag_options():
        assert opt.flag, opt  # flag_options() yields only options with a flag
        dest = f"{opt.section}.{opt.key}"
        extra = f" (ini [{opt.section}] {opt.key}, env {opt.env_name})"
        if opt.parse is parse_bool:
            parser.add_argument(opt.flag, *opt.aliases, dest=dest, nargs="?", const="true", default=None, metavar="BOOL",
                                help=opt.help + extra)
        else:
            parser.add_argument(opt.flag, *opt.aliases, dest=dest, default=None, help=opt.help + extra)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {}
    for opt in flag_options():
        raw = getattr(args, f"{opt.section}.{opt.key}")
        if raw is not None:
            try:
                overrides[f"{opt.section}.{opt.key}"] = opt.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{opt.flag}: {exc}") from None
    return load_settings(args.config, overrides=overrides)


def check_settings(settings: Settings) -> None:
    """What only makes sense for a served app, refused before gunicorn starts (a worker that
    fails to boot says far less)."""
    from statskit.state import backend_names

    if settings.state.backend not in backend_names():
        raise ConfigError(f"[state] backend {settings.state.backend!r} is unknown: use {' or '.join(backend_names())}")
    if settings.state.backend == "memory" and settings.server.workers > 1:
        raise ConfigError(f"[state] backend memory keeps counters, sessions and one-shot queues in each "
                          f"process: with {settings.server.workers} workers, /metrics would answer "
                          f"differently per worker. Use --workers 1, or the sqlite state")
    from statskit.legacy_tokens import environment_user

    # A STATS_ACCESS_TOKEN/_SECRET pair that cannot work (one missing, a token the secret
    # does not verify) would otherwise be a 401 for every client.
    environment_user(settings.auth.legacy_access_token, settings.auth.legacy_access_secret)
    if getattr(settings, "telemetry", None) is not None and settings.telemetry.enabled:
        from statskit.telemetry.feature import validate

        validate(settings)
        if settings.state.backend == "memory":
            raise ConfigError("[telemetry] enabled runs the websocket listener in its own process: its counters "
                              "reach /metrics only through the sqlite state (not [state] backend memory)")


def ensure_secret(settings: Settings) -> None:
    """With no secret configured, use (or create) ``<data_dir>/secret.key`` so the embedded
    defaults work out of the box; ``statskit-token`` finds the same file."""
    if settings.auth.secret_key:
        return
    path = os.path.join(settings.server.data_dir, SECRET_FILE)
    os.makedirs(settings.server.data_dir, exist_ok=True)
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        log.warning("no secret key configured: generated %s (mint tokens with statskit-token --data-dir %s)",
                    path, settings.server.data_dir)
    with open(path) as fh:
        settings.auth.secret_key = [fh.read().strip()]


def gunicorn_options(settings: Settings) -> dict:
    server = settings.server
    return {
        "bind": [server.bind],
        "workers": server.workers,
        "threads": server.threads,
        # Threads, with the request head read in the main loop: slow or idle clients hold no
        # thread (statskit_server/worker.py); sync only when asked for (threads = 1).
        "worker_class": "statskit_server.worker.StatskitWorker" if server.threads > 1 else "sync",
        "timeout": int(server.timeout),
        "graceful_timeout": int(server.graceful_timeout),
        "accesslog": "-" if server.access_log else None,
        "errorlog": "-",
        "loglevel": server.log_level,
        "proc_name": "statskit",
        "worker_exit": _worker_exit,
        **({"pre_fork": balance.pre_fork, "child_exit": balance.child_exit} if server.threads > 1 else {}),
        "forwarded_allow_ips": ",".join(server.trusted_proxies) or "127.0.0.1",
        **_control_socket(server.data_dir),
    }


def _control_socket(data_dir: str) -> dict:
    """gunicorn's control socket inside the data dir: by default it is one path per user
    (~/.gunicorn/gunicorn.ctl), so two servers on a host took each other's. Off when the path
    is too long for a Unix socket (108 bytes)."""
    path = os.path.join(os.path.abspath(data_dir), "gunicorn.ctl")
    if len(path.encode()) >= 100:
        return {"control_socket_disable": True}
    return {"control_socket": path}


def _worker_exit(server: Any, worker: Any) -> None:
    # A graceful stop (SIGTERM) or a recycled worker: flush every buffer before the process ends.
    from . import shutdown

    shutdown(server.cfg.graceful_timeout)


def run(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    from .app import create_app

    class StatskitApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    from . import worker

    worker.configure(settings.server.header_timeout, settings.server.body_timeout)
    # Create the database and its schema once, in the master, before workers race to do it.
    from statskit.pipeline import build_pipeline

    build_pipeline(settings).close(1.0)
    listener = None
    if settings.telemetry.enabled:  # the websocket listener: its own process and gunicorn master
        from .telemetry_serve import ListenerProcess

        listener = ListenerProcess.start(settings)
    try:
        StatskitApplication().run()
    finally:
        if listener is not None:
            listener.stop(settings.server.graceful_timeout + 5.0)
            if listener.died and listener.owner == os.getpid():  # not a requested stop: tell the service manager
                raise SystemExit(1)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        check_settings(settings)
    except ConfigError as exc:
        print(f"statskit-server: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.server.log_level)
    ensure_secret(settings)
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
