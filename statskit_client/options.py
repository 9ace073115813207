"""The client's options and what ``log()`` accepts."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .transport import DEFAULT_URL

Event = Dict[str, Any]

DEFAULTS: Dict[str, Any] = {
    "url": DEFAULT_URL,
    "access_token": None,
    "defer": True,
    "disabled": False,
    "tags": None,
    "sync_mode": False,       # with defer=True: send in the caller's thread (tests), one attempt
    "max_queue": 10000,       # events waiting; the newest is dropped past it
    "batch_size": 100,        # events per POST /log/events
    "flush_interval": 0.5,    # seconds an event may wait for its batch to fill
    "max_retries": 10,        # backoff 0.5 s doubling, full jitter, 30 s cap: ~75 s of outage on average
    "max_backoff": 30.0,
    "max_batch_bytes": 500_000,  # a batch is split before its JSON passes this
    "timeout": 10.0,          # per HTTP request (the original had none and could hang)
    "gzip": False,
    # Hooks run in the worker's thread, except for queue_full drops and defer=False failures
    # (the caller's thread): keep them quick.
    "on_error": None,         # on_error(exc, events): every event given up, with why
    "on_dropped": None,       # on_dropped(events, reason)
    "before_send": None,      # before_send(event) -> event | None, in the caller's thread
    "exit_timeout": 2.0,      # atexit drain bound, seconds
}

_NEEDS = "log() needs an event dict with 'uid' and 'event', or a list of points {measurement, tags, fields}"


def _validate(data: Any) -> Tuple[bool, List[Event]]:
    """(is it a list, its items), or the caller's ValueError/TypeError now rather than a lost event later."""
    if isinstance(data, dict):
        if data.get("uid") is None or data.get("event") is None:
            raise ValueError(_NEEDS)
        return False, [data]
    if not isinstance(data, (list, tuple)):
        raise TypeError(f"{_NEEDS}, not {type(data).__name__}")
    for item in data:
        if not isinstance(item, dict) or not (
                ("measurement" in item and "fields" in item) or (item.get("uid") is not None and item.get("event") is not None)):
            raise ValueError(f"{_NEEDS}; got the item {str(item)[:100]}")
    return True, list(data)
