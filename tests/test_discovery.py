"""mDNS on the loopback interface only: nothing here multicasts onto the machine's other networks."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edgevoice import discovery
from edgevoice.discovery import (
    HTTP_SERVICE_TYPE,
    SERVICE_TYPE,
    Advertiser,
    Box,
    advertise_interfaces,
    browse,
    format_boxes,
)
from edgevoice.errors import EdgevoiceError

LOOPBACK = "127.0.0.1"
BROWSE_S = 1.5
"""Long enough for zeroconf's second query (at ~1.1 s), whose answers are multicast; see browse()."""


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def ipv6_loopback_multicasts() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            index = socket.if_nametoindex("lo")
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            probe.connect(("ff02::fb", 5353, 0, index))  # looks up the route only: nothing is sent
    except OSError:
        return False
    return True


class Changes:
    """A zeroconf browser handler that remembers what it saw and can be waited on."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, ServiceStateChange]] = set()
        self._changed = asyncio.Event()

    def __call__(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        self.seen.add((name, state_change))
        self._changed.set()

    async def wait_for(self, name: str, state_change: ServiceStateChange) -> None:
        while (name, state_change) not in self.seen:
            self._changed.clear()
            await self._changed.wait()


@asynccontextmanager
async def advertising(**overrides: Any) -> AsyncIterator[Advertiser]:
    settings: dict[str, Any] = {"name": unique_name(), "host": LOOPBACK, "port": 18765, "protocol": 1}
    advertiser = Advertiser(**(settings | overrides))
    async with asyncio.timeout(10):
        await advertiser.start()
    try:
        yield advertiser
    finally:
        async with asyncio.timeout(10):
            await advertiser.stop()


async def browse_loopback(interface: str = LOOPBACK) -> list[Box]:
    async with asyncio.timeout(BROWSE_S + 5):
        return await browse(interface=interface, timeout_s=BROWSE_S)


@pytest.mark.parametrize(
    ("host", "interfaces", "version"),
    [
        ("0.0.0.0", InterfaceChoice.All, IPVersion.V4Only),
        ("", InterfaceChoice.All, IPVersion.V4Only),
        ("::", InterfaceChoice.All, IPVersion.All),
        ("127.0.0.1", ["127.0.0.1"], IPVersion.V4Only),
        ("localhost", ["127.0.0.1"], IPVersion.V4Only),
        ("192.168.1.5", ["192.168.1.5"], IPVersion.V4Only),
        ("::1", ["::1"], IPVersion.V6Only),
        ("fd00:0::5", ["fd00::5"], IPVersion.V6Only),
    ],
)
def test_advertise_interfaces(host: str, interfaces: list[str] | InterfaceChoice, version: IPVersion) -> None:
    assert advertise_interfaces(host) == interfaces
    assert discovery._ip_version(host) is version


def test_host_name_is_not_an_interface() -> None:
    with pytest.raises(EdgevoiceError, match="IP address"):
        advertise_interfaces("box.lan")


def test_wildcard_advertises_routable_addresses_first(monkeypatch: pytest.MonkeyPatch) -> None:
    local = ["127.0.0.1", "::1", "fe80::1", "192.168.1.5", "fd00::5"]
    monkeypatch.setattr(discovery, "interface_addresses", lambda: [(ipaddress.ip_address(ip), 1) for ip in local])
    assert discovery._advertised_addresses("0.0.0.0") == ["192.168.1.5"]
    assert discovery._advertised_addresses("::") == ["192.168.1.5", "fd00::5", "fe80::1"]
    assert discovery._advertised_addresses("127.0.0.1") == ["127.0.0.1"]
    local[3:] = []
    assert discovery._advertised_addresses("0.0.0.0") == ["127.0.0.1"]


def test_box_url() -> None:
    box = Box("kitchen", ("192.168.1.5",), 8765, 1, "/ws", "/", secure=False)
    assert box.url() == "ws://192.168.1.5:8765/ws"
    box = Box("attic", ("fd00::5", "192.168.1.6"), 443, 1, "/voice", "/", secure=True)
    assert box.url() == "wss://[fd00::5]:443/voice"
    with pytest.raises(EdgevoiceError, match="no address"):
        Box("ghost", (), 1, 1, "/ws", "/", secure=False).url()


def service(properties: dict[str, str], addresses: list[str] | None = None) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"kitchen.{SERVICE_TYPE}",
        port=8765,
        properties=properties,
        parsed_addresses=["127.0.0.1", "192.168.1.5"] if addresses is None else addresses,
    )


def test_txt_records_become_a_box() -> None:
    txt = {"protocol": "3", "ws": "/ws", "dashboard": "/dash/", "box": "kitchen", "tls": "1"}
    box = discovery._box_from_info(service(txt))
    assert box == Box("kitchen", ("192.168.1.5", "127.0.0.1"), 8765, 3, "/ws", "/dash/", secure=True)


@pytest.mark.parametrize(
    "txt",
    [
        {},
        {"protocol": "one"},
        {"protocol": "-1"},
        {"protocol": "²"},
        {"protocol": "1", "ws": "ws"},
        {"protocol": "1", "ws": "/a b"},
        {"protocol": "1", "dashboard": "http://evil/"},
        {"protocol": "1", "tls": "yes"},
    ],
)
def test_garbage_txt_is_ignored(txt: dict[str, str]) -> None:
    assert discovery._box_from_info(service(txt)) is None


def test_the_advertised_fingerprint_is_read_and_garbage_dropped() -> None:
    fp = ":".join(["AB"] * 32)
    txt = {"protocol": "1", "tls": "1", "fp": fp.lower()}
    box = discovery._box_from_info(service(txt))
    assert box is not None
    assert box.fingerprint == fp
    box = discovery._box_from_info(service({**txt, "fp": "not-a-fingerprint"}))
    assert box is not None
    assert box.fingerprint is None


async def test_the_certificate_fingerprint_is_in_the_txt_record() -> None:
    fp = ":".join(["0F"] * 32)
    async with advertising(port=18767, secure=True, fingerprint=fp) as box:
        found = {found.name: found for found in await browse_loopback()}
    assert found[box.registered_name].fingerprint == fp


def test_a_service_without_addresses_is_ignored() -> None:
    assert discovery._box_from_info(service({"protocol": "1"}, addresses=[])) is None


def test_format_boxes() -> None:
    assert format_boxes([]) == "no edgevoice boxes found"
    boxes = [
        Box("kitchen", ("192.168.1.5", "fd00::5"), 8765, 1, "/ws", "/", secure=False),
        Box("attic\x1b[2J", ("10.0.0.7",), 443, 1, "/ws", "/", secure=True),
    ]
    assert format_boxes(boxes).splitlines() == [
        "NAME       ADDRESS            PORT  URL",
        "kitchen    192.168.1.5 (+1)   8765  ws://192.168.1.5:8765/ws",
        "attic?[2J  10.0.0.7            443  wss://10.0.0.7:443/ws",
    ]


async def test_browse_finds_the_advertised_box() -> None:
    async with advertising(port=18766, protocol=7, ws_path="/voice", dashboard_path="/dash/", secure=True) as box:
        found = {found.name: found for found in await browse_loopback()}
    assert box.registered_name in found
    assert found[box.registered_name] == Box(
        box.registered_name, (LOOPBACK,), 18766, 7, "/voice", "/dash/", secure=True
    )
    assert found[box.registered_name].url() == "wss://127.0.0.1:18766/voice"


async def test_the_dashboard_is_advertised_as_http() -> None:
    changes = Changes()
    async with advertising(dashboard_path="/dash/") as box:
        zeroconf = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
        try:
            browser = AsyncServiceBrowser(zeroconf.zeroconf, HTTP_SERVICE_TYPE, handlers=[changes])
            name = f"{box.registered_name}.{HTTP_SERVICE_TYPE}"
            async with asyncio.timeout(5):
                await changes.wait_for(name, ServiceStateChange.Added)
                await browser.async_cancel()
                info = AsyncServiceInfo(HTTP_SERVICE_TYPE, name)
                assert await info.async_request(zeroconf.zeroconf, 2000)
        finally:
            async with asyncio.timeout(5):
                await zeroconf.async_close()
    assert info.port == 18765
    assert info.decoded_properties == {"path": "/dash/"}
    assert info.parsed_addresses() == [LOOPBACK]


async def test_stop_says_goodbye() -> None:
    changes = Changes()
    zeroconf = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    try:
        browser = AsyncServiceBrowser(zeroconf.zeroconf, SERVICE_TYPE, handlers=[changes])
        async with advertising() as box:
            name = f"{box.registered_name}.{SERVICE_TYPE}"
            async with asyncio.timeout(5):
                await changes.wait_for(name, ServiceStateChange.Added)
        # leaving advertising() stopped it; the records' TTL is minutes, so only a goodbye removes them this soon
        async with asyncio.timeout(3):
            await changes.wait_for(name, ServiceStateChange.Removed)
            await box.stop()  # a second stop is harmless
            await browser.async_cancel()
    finally:
        async with asyncio.timeout(5):
            await zeroconf.async_close()
    assert box.registered_name not in {found.name for found in await browse_loopback()}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(EdgevoiceError, match="too long"):
        Advertiser(name="x" * 61, host=LOOPBACK, port=1, protocol=1)
    with pytest.raises(EdgevoiceError, match="must start with /"):
        Advertiser(name="kitchen", host=LOOPBACK, port=1, protocol=1, ws_path="ws")


async def test_stop_without_start_is_harmless() -> None:
    async with asyncio.timeout(5):
        await Advertiser(name=unique_name(), host=LOOPBACK, port=1, protocol=1).stop()


async def test_two_boxes_with_one_name_are_both_found() -> None:
    name = unique_name()
    async with advertising(name=name, port=18767) as first:
        # the first box multicast its records just now and waits a second before it multicasts them again
        # (RFC 6762 section 14): sooner, its answer to the second box's QM query could come after that box probed
        await asyncio.sleep(1)
        async with advertising(name=name, port=18768) as second:
            assert first.registered_name == name
            assert second.registered_name == f"{name}-2"
            found = {box.name: box.port for box in await browse_loopback()}
    assert found[name] == 18767
    assert found[f"{name}-2"] == 18768


async def test_an_address_this_machine_lacks_is_a_clear_error() -> None:
    missing = "10.255.255.254"
    assert all(ip != ipaddress.ip_address(missing) for ip, _ in discovery.interface_addresses())
    with pytest.raises(EdgevoiceError, match=r"no network interface on this machine has the address 10\.255\.255\.254"):
        async with advertising(host=missing):
            pass
    with pytest.raises(EdgevoiceError, match=r"10\.255\.255\.254"):
        await browse_loopback(missing)


@pytest.mark.skipif(ipv6_loopback_multicasts(), reason="this machine's loopback interface does IPv6 multicast")
async def test_ipv6_loopback_without_multicast_is_a_clear_error() -> None:
    # Linux gives lo no MULTICAST flag, hence no ff00::/8 route: zeroconf would only log ENETUNREACH on every send
    with pytest.raises(EdgevoiceError, match="::1"):
        async with advertising(host="::1"):
            pass
    with pytest.raises(EdgevoiceError, match="::1"):
        await browse_loopback("::1")


@pytest.mark.skipif(not ipv6_loopback_multicasts(), reason="no IPv6 multicast on lo (`ip link set lo multicast on`)")
async def test_browse_finds_a_box_on_ipv6_loopback() -> None:
    async with advertising(host="::1", port=18769) as box:
        found = {found.name: found for found in await browse_loopback("::1")}
    assert found[box.registered_name].url() == "ws://[::1]:18769/ws"
