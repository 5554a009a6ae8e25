"""mDNS / DNS-SD: advertise this box on the LAN, and find the boxes there."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zeroconf import DNSQuestionType, InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edgevoice.errors import EdgevoiceError
from edgevoice.fingerprint import normalize
from edgevoice.server.identity import dns_label, host_name, interface_addresses

SERVICE_TYPE = "_edgevoice._tcp.local."
HTTP_SERVICE_TYPE = "_http._tcp.local."
WYOMING_SERVICE_TYPE = "_wyoming._tcp.local."
"""Home Assistant's Wyoming integration discovers voice services by this type."""

_WILDCARDS = ("", "0.0.0.0", "::")
_RESOLVE_TIMEOUT_MS = 1000
_PATH = re.compile(r"/[!-~]*")
log = logging.getLogger(__name__)


def advertise_interfaces(host: str) -> list[str] | InterfaceChoice:
    """The interfaces to advertise on for a server listening on `host`: all of them, or just that address."""
    if host in _WILDCARDS:
        return InterfaceChoice.All
    return [_parse_address(host)]


def _ip_version(host: str) -> IPVersion:
    if host == "::":
        return IPVersion.All
    return IPVersion.V6Only if ":" in host else IPVersion.V4Only


def _parse_address(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise EdgevoiceError(f"mDNS needs an IP address to listen on, not {host!r}") from None


@dataclass(frozen=True)
class Box:
    """One edgevoice box found on the LAN."""

    name: str
    addresses: tuple[str, ...]
    """Best first: routable IPv4, routable IPv6, link-local, loopback."""
    port: int
    protocol: int
    ws_path: str
    dashboard_path: str
    secure: bool
    fingerprint: str | None = None
    """The SHA-256 fingerprint of the box's certificate, as advertised (TXT "fp"); None when not advertised."""

    def url(self) -> str:
        if not self.addresses:
            raise EdgevoiceError(f"box {self.name!r} has no address")
        host = self.addresses[0]
        host = f"[{host}]" if ":" in host else host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{self.ws_path}"


class Advertiser:
    """Announces the box as _edgevoice._tcp (the WebSocket), _http._tcp (the dashboard) and, when it serves
    Wyoming (wyoming_port), _wyoming._tcp."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        protocol: int,
        ws_path: str = "/ws",
        dashboard_path: str = "/",
        secure: bool = False,
        wyoming_port: int = 0,
        fingerprint: str = "",
    ) -> None:
        self._name = name.strip() or host_name()
        # a DNS label holds 63 bytes, and zeroconf appends "-2" and so on when the name is taken
        if len(self._name.encode()) > 60:
            raise EdgevoiceError(f"box name {self._name!r} is too long for mDNS: at most 60 bytes")
        if not (_PATH.fullmatch(ws_path) and _PATH.fullmatch(dashboard_path)):
            raise EdgevoiceError(
                f"paths to advertise must start with / and have no spaces: {ws_path!r}, {dashboard_path!r}"
            )
        self._host = host
        server = _server_name(self._name)
        tls = "1" if secure else "0"
        txt = {"protocol": str(protocol), "ws": ws_path, "dashboard": dashboard_path, "box": self._name, "tls": tls}
        if fingerprint:
            txt["fp"] = fingerprint  # the certificate's SHA-256: a client pins it on first use
        self._infos = [
            AsyncServiceInfo(SERVICE_TYPE, f"{self._name}.{SERVICE_TYPE}", port=port, properties=txt, server=server),
            AsyncServiceInfo(
                HTTP_SERVICE_TYPE,
                f"{self._name}.{HTTP_SERVICE_TYPE}",
                port=port,
                properties={"path": dashboard_path},
                server=server,
            ),
        ]
        if wyoming_port:
            self._infos.append(
                AsyncServiceInfo(
                    WYOMING_SERVICE_TYPE, f"{self._name}.{WYOMING_SERVICE_TYPE}", port=wyoming_port, server=server
                )
            )
        self._zeroconf: AsyncZeroconf | None = None

    @property
    def registered_name(self) -> str:
        """The instance name on the LAN: the box name, or e.g. "kitchen-2" when another box had it first."""
        return self._infos[0].name[: -len(SERVICE_TYPE) - 1]

    async def start(self) -> None:
        if self._zeroconf is not None:
            return
        addresses = _advertised_addresses(self._host)
        for info in self._infos:
            info.addresses = [ipaddress.ip_address(address).packed for address in addresses]
        zeroconf = self._zeroconf = _open_zeroconf(self._host)
        # zeroconf notices a taken name from the answers to its probes, which come by unicast to port 5353; another
        # mDNS stack on this machine (avahi) may be handed them instead. Answers to QM queries come by multicast.
        watcher = AsyncServiceBrowser(
            zeroconf.zeroconf,
            [info.type for info in self._infos],
            handlers=[_ignore],
            question_type=DNSQuestionType.QM,
        )
        try:
            try:
                announced = await asyncio.gather(
                    *(zeroconf.async_register_service(info, allow_name_change=True) for info in self._infos)
                )
                await asyncio.gather(*announced)
            finally:
                await watcher.async_cancel()
        except ZeroconfError as exc:
            await self.stop()
            raise EdgevoiceError(f"cannot advertise {self._name!r} over mDNS: {exc!r}") from exc
        log.info("advertising %r on %s as %s", self.registered_name, self._host or "0.0.0.0", addresses)

    async def stop(self) -> None:
        zeroconf, self._zeroconf = self._zeroconf, None
        if zeroconf is not None:
            await zeroconf.async_close()  # unregisters everything first, with goodbye packets


async def browse(interface: str | None = None, timeout_s: float = 3.0) -> list[Box]:
    """The boxes that answer within `timeout_s` on the interface with that address (None: all), by name.

    Give it 1.5 s or more: zeroconf's first query asks for unicast answers, and those go to port 5353, which every
    mDNS stack on the machine binds (avahi too), so the kernel may hand them to another one. The second query, about
    a second later, asks for multicast answers, which every stack receives.
    """
    zeroconf = _open_zeroconf("0.0.0.0" if interface is None else interface)
    names: set[str] = set()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            names.discard(name)
        else:
            names.add(name)

    try:
        browser = AsyncServiceBrowser(zeroconf.zeroconf, SERVICE_TYPE, handlers=[on_change])
        try:
            await asyncio.sleep(timeout_s)
        finally:
            await browser.async_cancel()
        found = await asyncio.gather(*(_resolve(zeroconf.zeroconf, name) for name in sorted(names)))
    finally:
        await zeroconf.async_close()
    return sorted((box for box in found if box is not None), key=lambda box: box.name)


def _ignore(**_changes: object) -> None:
    pass


async def _resolve(zeroconf: Zeroconf, name: str) -> Box | None:
    try:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if await info.async_request(zeroconf, _RESOLVE_TIMEOUT_MS):
            return _box_from_info(info)
    except ZeroconfError as exc:
        log.debug("cannot resolve %r: %r", name, exc)
    return None


def _box_from_info(info: AsyncServiceInfo) -> Box | None:
    """The box a resolved service describes, or None when its records are incomplete or its TXT is garbage."""
    txt = info.decoded_properties
    protocol, ws_path = txt.get("protocol") or "", txt.get("ws") or "/ws"
    dashboard_path, tls = txt.get("dashboard") or "/", txt.get("tls") or "0"
    addresses = sorted(info.parsed_addresses(), key=_address_rank)
    if not (protocol.isascii() and protocol.isdigit() and _PATH.fullmatch(ws_path) and _PATH.fullmatch(dashboard_path)):
        return None
    if tls not in ("0", "1") or not addresses or not info.port:
        return None
    name = info.name[: -len(SERVICE_TYPE) - 1]
    advertised = txt.get("fp")
    fingerprint = normalize(advertised) if advertised else None
    return Box(name, tuple(addresses), info.port, int(protocol), ws_path, dashboard_path, tls == "1", fingerprint)


def format_boxes(boxes: Sequence[Box]) -> str:
    if not boxes:
        return "no edgevoice boxes found"
    rows = [("NAME", "ADDRESS", "PORT", "URL")]
    for box in boxes:
        extra = f" (+{len(box.addresses) - 1})" if len(box.addresses) > 1 else ""
        rows.append((_printable(box.name), box.addresses[0] + extra, str(box.port), _printable(box.url())))
    name_width, address_width = (max(len(row[column]) for row in rows) for column in (0, 1))
    return "\n".join(
        f"{name:<{name_width}}  {address:<{address_width}}  {port:>5}  {url}" for name, address, port, url in rows
    )


def _printable(text: str) -> str:
    # names and paths come off the network: keep terminal escapes out
    return "".join(char if char.isprintable() else "?" for char in text)


def _address_rank(address: str) -> tuple[bool, bool, int]:
    ip = ipaddress.ip_address(address)
    return (ip.is_loopback, ip.is_link_local, ip.version)


def _advertised_addresses(host: str) -> list[str]:
    if host not in _WILDCARDS:
        return [_parse_address(host)]
    found = [ip for ip, _ in interface_addresses() if ip.version == 4 or host == "::"]
    # loopback addresses are no use to the rest of the LAN, unless this machine has nothing else
    routable = [ip for ip in found if not ip.is_loopback] or found
    return [str(ip) for ip in sorted(set(routable), key=lambda ip: _address_rank(str(ip)))]


def _server_name(name: str) -> str:
    """A host name of our own for the SRV record: not the machine's, which avahi may own with other addresses."""
    try:
        seed = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        seed = ""
    tag = hashlib.sha256((seed or f"{uuid.getnode():x}").encode()).hexdigest()[:6]
    # the tag keeps two boxes with one name from claiming the same host name
    return f"{dns_label(name)[:40]}-{tag}.local."


def _open_zeroconf(host: str) -> AsyncZeroconf:
    interfaces = advertise_interfaces(host)
    if isinstance(interfaces, list):
        _check_multicast(interfaces[0])
    try:
        return AsyncZeroconf(interfaces=interfaces, ip_version=_ip_version(host))
    except (OSError, RuntimeError, ValueError) as exc:
        raise EdgevoiceError(f"cannot start mDNS on {host or '0.0.0.0'}: {exc}") from exc


def _check_multicast(address: str) -> None:
    """Fail clearly, before zeroconf fails with a traceback or only logs, when `address` cannot multicast."""
    ip = ipaddress.ip_address(address)
    indexes = [index for local, index in interface_addresses() if local == ip]
    if not indexes:
        raise EdgevoiceError(f"no network interface on this machine has the address {address}")
    with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            # connect() on UDP only looks up the route: nothing is sent
            if ip.version == 6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, indexes[0] or 0)
                probe.connect(("ff02::fb", 5353, 0, indexes[0] or 0))
            else:
                probe.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, ip.packed)
                probe.connect(("224.0.0.251", 5353))
        except OSError as exc:
            hint = " (Linux loopback has no IPv6 multicast; listen on 127.0.0.1)" if ip.is_loopback else ""
            raise EdgevoiceError(f"cannot send mDNS multicast from {address}: {exc.strerror}{hint}") from None
