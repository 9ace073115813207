"""Running the telemetry listener beside the WSGI app: ``statskit-server`` forks one process
that runs its own gunicorn master with :class:`~statskit_server.telemetry_worker.TelemetryWorker`
on ``[telemetry] bind``, and stops it (SIGTERM, by PID) when it stops itself.

Two gunicorn masters because one master runs one worker class: the WSGI routes keep their
sync/gthread workers, the websockets get asyncio (a sync worker would hold a thread per node).
Both share the data dir: the state (counters behind ``/metrics``) and the telemetry store.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Optional

from statskit.config import Settings
from statskit.telemetry.feature import listener_bind

log = logging.getLogger("statskit.telemetry")


def gunicorn_options(settings: Settings) -> dict:
    tel, server = settings.telemetry, settings.server
    return {
        "bind": [listener_bind(settings)],
        "workers": tel.workers,
        "worker_class": "statskit_server.telemetry_worker.TelemetryWorker",
        # Our own limit answers 403 and counts; gunicorn's must not bite first.
        "worker_connections": tel.max_connections + 64,
        "websocket_max_message_size": tel.ws_max_payload,
        "asgi_lifespan": "on",
        "timeout": int(server.timeout),
        "graceful_timeout": int(server.graceful_timeout),
        "errorlog": "-",
        "loglevel": server.log_level,
        "proc_name": "statskit-telemetry",
        # One control socket per user by default: the WSGI master already holds it.
        "control_socket_disable": True,
    }


def run_listener(settings: Settings) -> None:
    """The telemetry gunicorn master (blocks until it stops)."""
    from gunicorn.app.base import BaseApplication

    from .telemetry_asgi import create_telemetry_app

    class TelemetryApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_telemetry_app(settings)

    TelemetryApplication().run()


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the statskit-server master dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ListenerProcess:
    """The forked listener, watched: if it dies, statskit-server stops too (and exits with 1),
    so a service manager restarts both instead of leaving HTTP up and telemetry down."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # The WSGI workers are forked inside the ``try`` that stops the listener: when a worker
        # exits, that ``finally`` runs in the worker too. Only the process that forked the
        # listener may stop it (a worker did, at every graceful stop, racing its own master).
        self.owner = os.getpid()
        self.died = False
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="statskit-telemetry-watch", daemon=True)
        self._watcher.start()

    @classmethod
    def start(cls, settings: Settings) -> "ListenerProcess":
        # The store's schema is created here, once, before any worker; a store that cannot be
        # reached (PostgreSQL down, bad DATABASE_URL) stops statskit-server now, loudly.
        from statskit.telemetry import open_store

        open_store(settings).close()
        pid = os.fork()
        if pid == 0:  # the child: its own gunicorn master
            code = 0
            try:
                _die_with_parent()
                run_listener(settings)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("telemetry listener failed")
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        log.info("telemetry listener (pid %s) on %s", pid, listener_bind(settings))
        return cls(pid)

    def _gone(self) -> bool:
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            return bool(done)
        except ChildProcessError:  # reaped by the WSGI master's waitpid(-1)
            return True

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            if self._gone():
                if self._stopping.is_set():
                    return
                self.died = True
                log.error("telemetry listener (pid %s) exited: stopping statskit-server", self.pid)
                os.kill(os.getpid(), signal.SIGTERM)  # the WSGI master's graceful stop
                return

    def stop(self, timeout: Optional[float] = 30.0) -> None:
        """SIGTERM, wait (the listener flushes its buffer), SIGKILL after ``timeout``."""
        if os.getpid() != self.owner:
            return
        self._stopping.set()
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + (timeout or 30.0)
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:  # already reaped (by the WSGI master's waitpid(-1))
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.05)
        log.error("telemetry listener (pid %s) did not stop in %s s: killed", self.pid, timeout)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
