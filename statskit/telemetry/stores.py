"""Which telemetry store the settings name."""
from __future__ import annotations

from typing import Any

from .store import TelemetryStore


def open_store(settings: Any) -> TelemetryStore:
    """The store ``[telemetry]`` settings name: PostgreSQL when ``store`` says so (or is
    ``auto`` and ``database_url`` is set), else SQLite in the data dir."""
    tel = settings.telemetry
    kind = tel.store
    if kind == "auto":
        kind = "postgresql" if tel.database_url else "sqlite"
    if kind == "postgresql":
        from .store_postgres import PostgresTelemetryStore

        if not tel.database_url:
            raise ValueError("[telemetry] store postgresql needs database_url (env DATABASE_URL)")
        return PostgresTelemetryStore(tel.database_url, tel.logs_table)
    from .store_sqlite import SQLiteTelemetryStore

    return SQLiteTelemetryStore.in_data_dir(settings.server.data_dir, tel.logs_table)
