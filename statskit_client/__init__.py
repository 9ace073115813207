"""statskit_client: a drop-in replacement for stats-client, with a bounded background queue.

    import statskit_client
    from statskit_client import Analytics

    # As stats-client: configure once, then log from anywhere.
    Analytics.init({"url": "http://stats.example:20080", "access_token": "<statskit-token output>",
                    "tags": {"service": "billing"}})
    Analytics.stats().log({"uid": "user-42", "event": "purchase", "amount": 9.5})   # -> None, queued
    Analytics.stats().system_startup()
    statskit_client.log({"uid": "user-42", "event": "logout"})                      # the same client
    statskit_client.flush(5.0)   # optional: at exit the queue is drained within exit_timeout (2 s)

    # Synchronous, as stats-client with defer=False: the server's answer, '' on failure.
    sync = Analytics({"url": "http://stats.example:20080", "access_token": "...", "defer": False})
    event_id = sync.log({"uid": "u1", "event": "signup"})        # 'entry_<32 hex>'
    sync.log([{"measurement": "cpu", "tags": {"host": "a"}, "fields": {"load": 0.3}}])   # 'OK'
    sync.get(event_id), sync.ping()

**Configuration** (``Analytics(config)``; ``None`` values mean the default):

- ``url`` (``http://localhost:20080``, the original's default), ``access_token`` (required
  unless ``disabled``: ``ValueError``), ``defer`` (True), ``disabled`` (False), ``tags`` (dict,
  added to every event and point, the event's own tags winning; ``init`` keeps it).
- ``sync_mode`` (False): with ``defer=True``, send in the caller's thread, one attempt (tests).
- ``max_queue`` (10000), ``batch_size`` (100), ``flush_interval`` (0.5 s), ``max_batch_bytes``
  (500 kB), ``max_retries`` (10), ``max_backoff`` (30 s), ``timeout`` (10 s per request),
  ``gzip`` (False), ``exit_timeout`` (2 s).
- ``on_error(exc, events)``, ``on_dropped(events, reason)``, ``before_send(event) -> event | None``
  (runs in the caller's thread; if it raises, the event is dropped, not sent unfiltered).

**Deferred events** (``defer=True``): ``log()`` copies the event, stamps ``time`` (epoch ns, so
the server stores when it happened, not when it arrived) and returns None; it costs about a
microsecond (``benchmarks/bench_client.py``). A daemon thread posts batches to
``POST /log/events``, stamping each event's ``event_id`` once before the first attempt, so a
retry after a lost answer is stored once. A server that answers 404/405 there (the original
stats-service, which has no batch route) gets one ``POST /log/event/`` per event instead (a
point as a one-point list), remembered per server and logged once. Connection errors, 408, 429 and 5xx are retried with
exponential backoff and full jitter (cap 30 s), waiting ``Retry-After`` when given; other 4xx
give up. A 400/413 on a batch drops only the offending event (the one the server names, else
found by halving). Events are never dropped silently: a full queue drops the *newest* event, and
every event given up (reasons ``queue_full``, ``rejected``, ``retries_exhausted``, ``shutdown``,
``before_send``, ``unencodable``) is counted in ``Analytics.dropped`` / ``.drops``, passed to
``on_error`` and ``on_dropped``, and logged with a :class:`ClientWarning` at most every 10 s.

**Process life**: an ``atexit`` hook drains the queue within ``exit_timeout``; ``flush(timeout)``
and ``shutdown(timeout)`` never hang longer than asked. After ``os.fork()`` (gunicorn
``--preload``, uWSGI, multiprocessing) the child starts its own queue, thread and connections
and leaves the parent's queued events to the parent; forked multiprocessing children are drained
when they end too.

**Differences from stats-client**, all deliberate: ``Analytics.stats()`` before ``init`` raises
RuntimeError (was NameError); ``init`` keeps every key, and ``url=None`` means the default;
``disabled`` warns once, not on every call; URLs are joined keeping the base path
(``http://host/stats`` + ``ping/`` is ``http://host/stats/ping/``; ``urljoin`` dropped ``stats``);
deferred events go to ``/log/events`` in batches with ``time`` and ``event_id`` (v1 added a
``datetime`` field instead); nested dicts are flattened by the server, :func:`flatten` remains
for callers. ``defer=False`` keeps the original contract: connection errors and statuses over 399
are logged and answered ``''`` (``on_error`` is called too); ``ping()`` raises, ``get()``
answers None for an unknown id.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Union

from statskit import __version__

from .client import Analytics, current
from .options import DEFAULTS
from .errors import ClientError, ClientWarning, DroppedError, SendError
from .flatten import flatten
from .transport import DEFAULT_URL, RetryableSendError

__all__ = [
    "Analytics", "init", "stats", "log", "flush", "shutdown", "ping", "get", "system_startup",
    "flatten", "ClientError", "ClientWarning", "DroppedError", "SendError", "RetryableSendError",
    "DEFAULTS", "DEFAULT_URL", "__version__",
]


def init(config: Optional[Mapping[str, Any]] = None) -> Analytics:
    """``Analytics.init(config)``: the client the functions below use."""
    return Analytics.init(config)


def stats() -> Analytics:
    """``Analytics.stats()``; RuntimeError before :func:`init`."""
    return Analytics.stats()


def log(data: Union[Dict[str, Any], List[Dict[str, Any]]]) -> Optional[str]:
    """``Analytics.stats().log(data)``."""
    return Analytics.stats().log(data)


def flush(timeout: Optional[float] = 10.0) -> bool:
    """Flush the :func:`init` client (True when there is none)."""
    client = current()
    return client.flush(timeout) if client is not None else True


def shutdown(timeout: Optional[float] = 10.0) -> bool:
    """Flush, then stop the :func:`init` client (True when there is none)."""
    client = current()
    return client.shutdown(timeout) if client is not None else True


def ping() -> Any:
    return Analytics.stats().ping()


def get(event_id: str) -> Optional[Dict[str, Any]]:
    return Analytics.stats().get(event_id)


def system_startup() -> Optional[str]:
    return Analytics.stats().system_startup()
