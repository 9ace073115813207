"""What every telemetry store must do for listener presence (run on SQLite and PostgreSQL)."""
from __future__ import annotations

import time

from statskit.telemetry.presence import Presence


def open_rows(store):
    return {c["id"] for c in store.connections() if c["closed_at"] is None}


def check_presence(store) -> None:
    live = Presence(store, timeout=30.0, open_ids=lambda: [])
    live.beat()
    mine = store.open_connection("10.0.0.1:1", False, live.instance)
    # a listener that beat once, opened a row, then died (no more beats)
    assert store.beat_listener("dead-listener", []) == 0
    store.open_connection("10.0.0.2:1", False, "dead-listener")
    legacy = store.open_connection("10.0.0.3:1", False)  # no listener id (an older statskit): left alone
    time.sleep(0.3)
    live.beat()
    assert store.close_orphans(0.2) == 1  # the dead one is 0.3 s silent, the live one just beat
    assert open_rows(store) == {mine, legacy}
    assert store.close_orphans(0.2) == 0  # forgotten: nothing more to close
    # the live listener taken for dead (no beat within the timeout) reopens what it still holds
    time.sleep(0.3)
    assert store.close_orphans(0.2) == 1 and mine not in open_rows(store)
    assert store.beat_listener(live.instance, [mine]) == 1
    assert mine in open_rows(store)
    # a graceful stop closes what is left and leaves the table
    live.close()
    assert open_rows(store) == {legacy}
