"""Who is asking: the peer address, or a forwarding header when the peer is a trusted proxy.

The one-shot server identifies scrapers by address. The original believed ``X-Real-Ip`` and
``X-Forwarded-For`` from anyone, so any client could claim a Prometheus server's address and take
its events. Here the headers count only when the TCP peer is in ``[server] trusted_proxies``:

    >>> from falcon import testing
    >>> req = testing.create_req(remote_addr="10.0.0.2", headers={"X-Forwarded-For": "6.6.6.6, 10.1.2.3"})
    >>> client_address(req, []), client_address(req, ["10.0.0.0/24"])
    ('10.0.0.2', '10.1.2.3')

Which header the proxies set is ``[server] client_ip_header``: ``x-forwarded-for`` (default)
or ``x-real-ip``.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from functools import lru_cache
from typing import Any, Optional, Sequence, Tuple

import falcon

from statskit.errors import ValidationError

log = logging.getLogger("statskit.server")

UNKNOWN = "unknown"
MAX_SCRAPER_NAME = 128


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


def _hop(text: str) -> Optional[Any]:
    """One X-Forwarded-For entry: an address, also with a port (``10.0.0.1:5123``,
    ``[2001:db8::1]:443``, as some proxies write them); None for anything else (``unknown``)."""
    text = text.strip()
    ip = _ip(text)
    if ip is None and text.startswith("[") and "]" in text:
        ip = _ip(text[1:text.index("]")])
    elif ip is None and text.count(":") == 1:
        ip = _ip(text.split(":", 1)[0])
    return ip


def normalize(address: str) -> str:
    """``::FFFF:10.0.0.1`` -> ``10.0.0.1``, IPv6 compressed and lowercase; other text unchanged."""
    ip = _ip(address)
    return str(ip) if ip is not None else address


def is_trusted(address: str, trusted: Sequence[str], wildcard: bool = True) -> bool:
    """``address`` is in ``trusted``; ``*`` there matches any peer, but only when ``wildcard``:
    the hops inside X-Forwarded-For are checked against the listed networks alone, or with
    ``*`` every hop would be "trusted" and the client's own leftmost entry would win."""
    if not trusted:
        return False
    if wildcard and "*" in trusted:
        return True
    ip = _ip(address)
    if ip is None:
        return False
    return any(ip in net for net in _networks(tuple(t for t in trusted if t != "*")))


def client_address(req: falcon.Request, trusted: Sequence[str], header: str = "x-forwarded-for") -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then what ``header``
    (``[server] client_ip_header``) says.

    Only the one configured header is read: a proxy that sets one passes the other through as
    the client wrote it (nginx forwards a client's own ``X-Forwarded-For`` unless told to append
    to it; a proxy that appends to ``X-Forwarded-For`` passes a client's ``X-Real-Ip``).

    * ``x-forwarded-for`` is read from the right, skipping trusted proxies: proxies append the
      address they saw, so the entries on the left are whatever the client sent and prove
      nothing (the original took the first one). An entry that is no address (``unknown``)
      ends the walk at the trusted hop after it; when every entry is trusted, the leftmost wins.
    * ``x-real-ip`` is one address that the proxy sets; anything else in it is ignored.
    """
    peer = normalize(req.remote_addr or "")
    if not is_trusted(peer, trusted):
        return peer or UNKNOWN
    if header == "x-real-ip":
        ip = _hop(req.get_header("X-Real-Ip") or "")
        return str(ip) if ip is not None else peer
    client = peer
    for part in reversed((req.get_header("X-Forwarded-For") or "").split(",")):
        if not part.strip():
            continue
        ip = _hop(part)
        if ip is None:
            break
        client = str(ip)
        if not is_trusted(client, trusted, wildcard=False):
            break
    return client


def scraper_id(req: falcon.Request, settings: Any) -> str:
    """The one-shot scraper identity: an explicit ``?scraper=`` name (Prometheus ``params``),
    else the client address. A malformed name, or one that is an IP address, is a 400."""
    name = req.get_param("scraper")
    if name:
        return check_scraper_name(name)
    return client_address(req, settings.server.trusted_proxies, settings.server.client_ip_header)


def check_scraper_name(name: str) -> str:
    """An explicit scraper name (``/metrics?scraper=prom-a``), or a ValidationError.

    Names that parse as IP addresses are refused: they would let a client take the events of the
    scraper known by that address, which is what trusting forwarding headers blindly allowed.
    """
    if not 0 < len(name) <= MAX_SCRAPER_NAME or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@/\-]*", name):
        raise ValidationError(f"scraper name must be 1-{MAX_SCRAPER_NAME} letters, digits or _.:@/- "
                              f"starting with a letter or digit", field="scraper")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise ValidationError("scraper name must not be an IP address (addresses identify scrapers without a name)",
                          field="scraper")
