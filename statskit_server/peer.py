"""Who is asking: the peer address, or a forwarding header when the peer is a trusted proxy.

The one-shot server identifies scrapers by address. The original believed ``X-Real-Ip`` and
``X-Forwarded-For`` from anyone, so any client could claim a Prometheus server's address and take
its events. Here the headers count only when the TCP peer is in ``[server] trusted_proxies``:

    >>> from falcon import testing
    >>> req = testing.create_req(remote_addr="10.0.0.2", headers={"X-Forwarded-For": "6.6.6.6, 10.1.2.3"})
    >>> client_address(req, []), client_address(req, ["10.0.0.0/24"])
    ('10.0.0.2', '10.1.2.3')
"""
from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from typing import Any, Optional, Sequence, Tuple

import falcon

from statskit.oneshot import check_scraper_name

log = logging.getLogger("statskit.server")

UNKNOWN = "unknown"


@lru_cache(maxsize=64)
def _networks(spec: Tuple[str, ...]) -> Tuple[Any, ...]:
    networks = []
    for item in spec:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            # Logged once per configuration (cached); a typo must not turn every request into a 500.
            log.error("[server] trusted_proxies: %r is not an address or CIDR; ignored", item)
    return tuple(networks)


def _ip(text: str) -> Optional[Any]:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # ::ffff:10.0.0.1 and 10.0.0.1 are the same host (the original printed such addresses dotted).
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def normalize(address: str) -> str:
    """``::FFFF:10.0.0.1`` -> ``10.0.0.1``, IPv6 compressed and lowercase; other text unchanged."""
    ip = _ip(address)
    return str(ip) if ip is not None else address


def is_trusted(address: str, trusted: Sequence[str]) -> bool:
    if not trusted:
        return False
    ip = _ip(address)
    if ip is None:
        return False
    return any(ip in net for net in _networks(tuple(trusted)))


def client_address(req: falcon.Request, trusted: Sequence[str]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then ``X-Real-Ip``
    (first valid entry), else ``X-Forwarded-For``.

    ``X-Forwarded-For`` is read from the right, skipping trusted proxies: proxies append the
    address they saw, so the entries on the left are whatever the client sent and prove nothing
    (the original took the first one). When every entry is a trusted proxy, the leftmost wins.
    """
    peer = normalize(req.remote_addr or "")
    if not is_trusted(peer, trusted):
        return peer or UNKNOWN
    real = req.get_header("X-Real-Ip")
    for part in (real or "").split(","):
        ip = _ip(part)
        if ip is not None:
            return str(ip)
    hops = [ip for ip in (_ip(part) for part in (req.get_header("X-Forwarded-For") or "").split(",")) if ip]
    for ip in reversed(hops):
        if not is_trusted(str(ip), trusted):
            return str(ip)
    return str(hops[0]) if hops else peer


def scraper_id(req: falcon.Request, settings: Any) -> str:
    """The one-shot scraper identity: an explicit ``?scraper=`` name (Prometheus ``params``),
    else the client address. A malformed name, or one that is an IP address, is a 400."""
    name = req.get_param("scraper")
    if name:
        return check_scraper_name(name)
    return client_address(req, settings.server.trusted_proxies)
