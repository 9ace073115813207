"""Placeholder: filled in by its feature."""
from __future__ import annotations

from typing import Any

import falcon


def add_routes(app: falcon.App, runtime: Any) -> None:
    pass
