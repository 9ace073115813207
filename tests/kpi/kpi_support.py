"""Helpers for the KPI tests: Caddy access-log lines and a packages.yml, as offspot writes them."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

import orjson

PACKAGES_YML = """\
packages:
  - title: Wikipédia
    kind: zim
    url: //kiwix.box.test/viewer#wikipedia_fr_all
  - title: Gutenberg
    kind: zim
    url: //kiwix.box.test/content/gutenberg_en/
  - title: Files
    kind: files
    url: //files.box.test/
  - title: Shared
    kind: app
    ident: edupi.offspot.kiwix.org
    url: //edupi.box.test/
  - title: Manager
    kind: app
    ident: file-manager.offspot.kiwix.org
    url: //fm.box.test/
  - title: Chat
    kind: app
    ident: chat
    url: //chat.box.test/
"""


def ts(*args: int) -> float:
    """Epoch of a local time, as Caddy's ``ts`` gives it."""
    return datetime(*args).timestamp()  # type: ignore[misc]


def caddy(at: float, host: str = "kiwix.box.test", uri: str = "/content/wikipedia_fr_all/", method: str = "GET",
          status: Any = 200, headers: Optional[Dict[str, Any]] = None, **extra: Any) -> bytes:
    """One access-log line (with its newline) in Caddy's JSON format."""
    doc = {"level": "info", "ts": at, "logger": "http.log.access", "msg": "handled request",
           "request": {"remote_ip": "192.168.2.10", "proto": "HTTP/1.1", "method": method, "host": host,
                       "uri": uri, "headers": {"User-Agent": ["Mozilla/5.0"]}},
           "duration": 0.001, "size": 1234, "status": status, "resp_headers": headers or {}}
    doc.update(extra)
    return orjson.dumps(doc) + b"\n"


def write_packages(folder: Path) -> Path:
    path = folder / "packages.yml"
    path.write_text(PACKAGES_YML, encoding="utf-8")
    return path
