"""The SSRF guard: which upstream addresses a provider ``base_url`` may reach.

Checked twice, unless ``FORGE_ALLOW_PRIVATE_UPSTREAMS`` is set:

* when a provider key is added or updated (``validation``): the host is resolved and every
  address it resolves to must be public, else 400 ``private_upstream``;
* when the upstream client opens a connection (``upstream``, curl's ``OPENSOCKETFUNCTION`` and
  the httpx transport's network backend): the address actually connected to must be public.
  This closes DNS rebinding (a host that resolved to a public address at add time and to
  169.254.169.254 later). It runs once per new connection, not per request: pooled
  keep-alive connections pay nothing.

"Public" is ``ipaddress``'s ``is_global``, so loopback, RFC 1918, link-local (the cloud
metadata address), CGNAT, documentation, benchmarking, multicast, unspecified and reserved
ranges are all refused, and so are IPv6 forms that embed such an IPv4 address (mapped,
6to4, Teredo, NAT64).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@lru_cache(maxsize=4096)
def blocked(address: str) -> bool:
    """True when ``address`` (an IP literal, optionally with ``%zone``) is not globally routable."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ip.sixtofour) or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not embedded.is_global:
            return True
    return not ip.is_global or ip.is_multicast
