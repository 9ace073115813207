"""Connecting to Redis from ``[state]`` settings: a URL (``redis://``, ``rediss://`` for TLS,
``redis+sentinel://`` for Sentinel), a password in it, and a key prefix.

    >>> parse_sentinel_url("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/mymaster/2")
    ([('10.0.0.1', 26379), ('10.0.0.2', 26379)], 'mymaster', 2, 'pw')
    >>> key_tag("statskit")
    '{statskit}'

Every key of one deployment carries the same hash tag (``{prefix}``), so on a Redis Cluster they
all live in one slot: the atomic steps (MULTI/EXEC, scripts) may span several keys there too.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type
from urllib.parse import unquote, urlsplit

from ..errors import RetryableError

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
SOCKET_TIMEOUT = 5.0


def key_tag(prefix: str) -> str:
    """The hash tag every key starts with (``{statskit}``: one Cluster slot per deployment)."""
    if not prefix or any(c in prefix for c in "{} "):
        raise ValueError(f"[state] redis_prefix {prefix!r}: letters, digits, '_', '-', '.', ':' only")
    return "{" + prefix + "}"


def parse_sentinel_url(url: str) -> Tuple[List[Tuple[str, int]], str, int, Optional[str]]:
    """``redis+sentinel://[:password@]host[:port][,host[:port]...]/service[/db]``."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL: {url!r}")
    netloc = parts.netloc
    password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        password = unquote(auth.split(":", 1)[1] if ":" in auth else auth) or None
    hosts = parse_sentinels(netloc.split(","))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"{url!r}: name the Sentinel service (redis+sentinel://host:26379/mymaster)")
    db = int(path[1]) if len(path) > 1 else 0
    return hosts, path[0], db, password


def parse_sentinels(items: Sequence[str]) -> List[Tuple[str, int]]:
    hosts = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        hosts.append((host or item, int(port) if port else DEFAULT_SENTINEL_PORT))
    if not hosts:
        raise ValueError("no Sentinel address given")
    return hosts


def connect(url: str, sentinels: Sequence[str] = (), service: str = "mymaster") -> Any:
    """A ``redis.Redis`` for the URL (or for the Sentinel-managed master)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    # No retries inside redis-py: it would send a MULTI/EXEC or a script again after a
    # connection broke past the point where Redis applied it (a counter flush counted twice, a
    # one-shot event queued twice). statskit retries itself, knowing what landed (the flush marks
    # in statskit.state.redis); a pooled connection Redis closed is replaced when checked out.
    options: Dict[str, Any] = dict(socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
                                   health_check_interval=30, retry=Retry(NoBackoff(), 0))
    if url.startswith(SENTINEL_SCHEME + "://"):
        hosts, service, db, password = parse_sentinel_url(url)
        return Sentinel(hosts, **options).master_for(service, db=db, password=password, **options)
    if sentinels:
        parts = urlsplit(url)
        db = int(parts.path.strip("/") or 0) if parts.path.strip("/").isdigit() else 0
        return Sentinel(parse_sentinels(sentinels), **options).master_for(
            service, db=db, password=unquote(parts.password) if parts.password else None, **options)
    return redis.Redis.from_url(url, **options)


def transient_errors() -> Tuple[Type[BaseException], ...]:
    """What a Redis that is down, restarting, loading or failing over raises."""
    from redis import exceptions as e

    return (e.ConnectionError, e.TimeoutError, e.BusyLoadingError, e.ReadOnlyError, e.TryAgainError,
            e.ClusterDownError, e.MasterDownError)


def is_unavailable_reply(exc: BaseException) -> bool:
    """An error reply redis-py has no class for that still means "try again": NOREPLICAS (a
    master with ``min-replicas-to-write`` and too few replicas in sync, as around a failover).
    redis-py prefixes a pipeline command's error with "Command # N (...) of pipeline caused
    error: "."""
    from redis.exceptions import ResponseError

    return isinstance(exc, ResponseError) and re.search(r"(^|error: )NOREPLICAS\b", str(exc)) is not None


class RedisUnavailable(RetryableError):
    """Redis is down or busy: retried by background workers, a 503 for a request."""


def retryable(exc: BaseException) -> RetryableError:
    return RedisUnavailable(f"redis unavailable: {exc}", retry_after=1.0)
