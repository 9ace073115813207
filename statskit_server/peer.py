"""Who is asking: the peer address, or a forwarding header when the peer is a trusted proxy."""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Sequence, Tuple

import falcon


@lru_cache(maxsize=64)
def _networks(spec: Tuple[str, ...]) -> Tuple[Any, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def is_trusted(address: str, trusted: Sequence[str]) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(trusted)))


def client_address(req: falcon.Request, trusted: Sequence[str]) -> str:
    """``X-Real-Ip``, else the first valid ``X-Forwarded-For`` entry, but only from a trusted proxy."""
    peer = req.remote_addr or ""
    if not is_trusted(peer, trusted):
        return peer
    for header in ("X-Real-Ip", "X-Forwarded-For"):
        value = req.get_header(header)
        for part in (value or "").split(","):
            try:
                return str(ipaddress.ip_address(part.strip()))
            except ValueError:
                continue
    return peer


def scraper_id(req: falcon.Request, settings: Any) -> str:
    """The one-shot scraper identity: an explicit ``?scraper=`` name, else the client address."""
    return req.get_param("scraper") or client_address(req, settings.server.trusted_proxies)
