"""Which peer a connection comes from, for counting: an IPv4 address, or an IPv6 /64.

A home LAN hands one IPv6 machine a whole /64 (privacy addresses, SLAAC), so counting IPv6 peers
one address at a time lets one machine count as millions; an IPv4-mapped IPv6 address is its IPv4.
"""

from __future__ import annotations

import ipaddress


def peer_key(address: str) -> str:
    """The key a peer is counted under: its IPv4 address, its IPv6 /64, or the text as given."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
