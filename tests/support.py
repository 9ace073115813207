"""What every test shares: the test secret, settings for a test, and tokens.

conftest.py offers them as fixtures too (``settings``, ``token``); modules that need them at
import time or in helpers import them from here.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Sequence

from statskit.config import Settings, load_settings
from statskit.tokens import TokenSigner

SECRET = "statskit-test-secret"


def make_settings(data_dir: Any, env: Optional[dict] = None, path: Optional[str] = None, **overrides: Any) -> Settings:
    """Settings for a test: data under ``data_dir``, :data:`SECRET`, no sinks unless given.
    Overrides are ``section__key=value`` (``sinks__enabled=["sqlite"]``)."""
    base = {"server.data_dir": str(data_dir), "auth.secret_key": [SECRET], "sinks.enabled": []}
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_settings(path, env=env or {}, overrides=base)


def mint(scopes: Iterable[str] = ("write",), name: str = "tester", secret: str = SECRET) -> str:
    """A statskit token signed with the test secret."""
    return TokenSigner([secret]).mint(name, list(scopes))


def auth_header(scopes: Iterable[str] = ("write", "read"), secret: str = SECRET) -> dict:
    return {"Authorization": "Token " + mint(scopes, secret=secret)}


def run_threads(target: Callable[..., Any], args: Sequence[tuple], timeout: float = 60.0) -> None:
    """Start one thread per entry of ``args`` calling ``target(*entry)`` and wait for them all;
    the first exception a thread raised is raised here, and a thread still running fails."""
    errors: List[BaseException] = []

    def run(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), f"threads still running after {timeout} s"


def until(check: Callable[[], Any], what: str, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """``check()``'s first truthy value, asked every ``interval`` s; fails after ``timeout`` s.
    For what a background thread or another process does after a call returned (bounded; no
    timing is asserted)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:g} s; last {last!r}")
