"""Fixtures of the telemetry tests: a real PostgreSQL (:mod:`pg_server`)."""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from pg_server import PostgreSQL
from servers import ServerUnavailable


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgreSQL]:
    """One PostgreSQL for the session; each test takes its own database (``new_database``)."""
    try:
        server = PostgreSQL()
    except ServerUnavailable as exc:  # as tests/conftest.py's make_real_server: only CI insists
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI=true: real servers are required)", pytrace=False)
        pytest.skip(str(exc))
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    yield server
    server.close()
