"""The box's names and addresses, worked out in one place for the origin check, the TLS certificate and mDNS.

A browser names the box in Origin and Host by any of them, the certificate has to carry every one
a phone may type, and mDNS advertises the interface addresses: three readers of one answer, so
they never disagree about what the box is called.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
from dataclasses import dataclass

import ifaddr

from edgevoice.config import Config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK: frozenset[IPAddress] = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})


def interface_addresses() -> list[tuple[IPAddress, int | None]]:
    """Every address of every network interface of this machine, with the interface's index."""
    return [
        (ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0]), adapter.index)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
    ]


def host_name() -> str:
    """The machine's short host name: the box's name when none is configured."""
    return socket.gethostname().split(".")[0] or "edgevoice"


def box_name(config: Config) -> str:
    return config.server.name or host_name()


def dns_label(name: str) -> str:
    """name as one DNS label, the way mDNS would advertise it."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "edgevoice"


@dataclass(frozen=True)
class Identity:
    """Every way the box is reached: DNS names, IP addresses, and other names a browser may use."""

    common_name: str
    names: frozenset[str]
    """DNS names a certificate for the box must carry."""
    addresses: frozenset[IPAddress]
    aliases: frozenset[str] = frozenset()
    """Names a page may have in Origin or Host that a certificate need not carry: the box name as
    configured (spaces and all), the machine's fully qualified name."""

    @property
    def hosts(self) -> set[str]:
        """Every name and address, lower case, as a page served by the box has them in Origin and Host."""
        return {name.lower() for name in self.names | self.aliases} | {str(ip) for ip in self.addresses}


@functools.cache
def host_aliases() -> frozenset[str]:
    """The machine's host name, NAME.local and fully qualified name: looked up once.

    socket.getfqdn() may wait on DNS for seconds; the server asks for this in a thread before it
    serves (Server.start), so a request naming an unknown Host never blocks the event loop on it.
    """
    hostname = socket.gethostname().lower()
    return frozenset({hostname, f"{hostname}.local", socket.getfqdn().lower()})


def box_identity(box_name: str) -> Identity:
    """The box's mDNS name, host name, localhost, and every interface address plus loopback."""
    hostname = socket.gethostname().lower()
    host = hostname.rstrip(".")
    common_name = f"{dns_label(box_name)}.local"
    names = {"localhost", common_name}
    if host and host.isascii():
        names.update({host, f"{dns_label(host.split('.')[0])}.local"})
    name = box_name.lower()
    aliases = {name, f"{name}.local", *host_aliases()}
    addresses = set(LOOPBACK)
    # A machine whose interfaces cannot be listed is still reached over loopback.
    with contextlib.suppress(OSError):
        addresses.update(ip for ip, _ in interface_addresses())
    return Identity(common_name, frozenset(names), frozenset(addresses), frozenset(aliases))
