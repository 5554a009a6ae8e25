"""The self-signed certificate `[server] tls = true` makes, keeps and renews (edgevoice.tls)."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from edgevoice.config import Config
from edgevoice.engines.loaded import Engines
from edgevoice.server import Server
from edgevoice.tls import CERT_FILE, KEY_FILE, TLS_DIR, Identity, box_identity, ensure_certificate
from tests.server.wire import hello

LAN = ipaddress.ip_address("192.168.1.20")


def identity(*addresses: str) -> Identity:
    return Identity(
        common_name="kitchen.local",
        names=frozenset({"kitchen.local", "box", "box.local", "localhost"}),
        addresses=frozenset(ipaddress.ip_address(ip) for ip in ("127.0.0.1", "::1", *addresses)),
    )


def alternative_names(cert_path: Path) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), set(san.get_values_for_type(x509.IPAddress))


def test_makes_a_private_key_and_a_certificate_naming_the_box(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path / TLS_DIR, identity(str(LAN)))
    assert (cert.name, key.name) == (CERT_FILE, KEY_FILE)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    names, addresses = alternative_names(cert)
    assert names == {"kitchen.local", "box", "box.local", "localhost"}
    assert addresses == {LAN, ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    made = x509.load_pem_x509_certificate(cert.read_bytes())
    assert (
        datetime.timedelta(days=820)
        < made.not_valid_after_utc - made.not_valid_before_utc
        <= datetime.timedelta(days=825)
    )
    assert not list(cert.parent.glob(".*"))  # no temporary files left behind


def test_this_machine_is_named_with_loopback() -> None:
    found = box_identity("Kitchen Box")
    assert found.common_name == "kitchen-box.local"
    assert {"kitchen-box.local", "localhost"} <= found.names
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= found.addresses


def test_a_second_start_keeps_the_same_certificate(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path, identity(str(LAN)))
    before = cert.read_bytes(), key.read_bytes()
    assert ensure_certificate(tmp_path, identity(str(LAN))) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_a_new_address_makes_a_new_certificate(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path, identity(str(LAN)))
    before = cert.read_bytes(), key.read_bytes()
    ensure_certificate(tmp_path, identity(str(LAN), "10.0.0.7"))
    assert cert.read_bytes() != before[0]
    assert key.read_bytes() != before[1]
    assert ipaddress.ip_address("10.0.0.7") in alternative_names(cert)[1]


def test_a_certificate_near_expiry_is_renewed(tmp_path: Path) -> None:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=800)
    cert, _ = ensure_certificate(tmp_path, identity(), now=long_ago)
    before = cert.read_bytes()
    ensure_certificate(tmp_path, identity())
    assert cert.read_bytes() != before


def test_a_key_that_does_not_match_is_replaced(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path / "a", identity())
    other_cert, _ = ensure_certificate(tmp_path / "b", identity())
    cert.write_bytes(other_cert.read_bytes())
    ensure_certificate(tmp_path / "a", identity())
    trust = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trust.load_cert_chain(cert, key)  # raises if they still did not match


@pytest.mark.slow
async def test_tls_true_serves_https_and_wss(server_config: Config, engines: Engines) -> None:
    """tls = true: the daemon makes its own certificate, and a client trusting it gets in."""
    settings = dataclasses.replace(server_config.server, tls=True)
    server = Server(dataclasses.replace(server_config, server=settings), engines)
    assert server.secure
    await server.start("127.0.0.1", 0)
    try:
        assert server.http_url.startswith("https://")
        assert server.ws_url.startswith("wss://")
        cert = server_config.data_dir / TLS_DIR / CERT_FILE
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(server.http_url + "/healthz", ssl=trust) as response:
                assert (await response.json())["status"] == "ok"
            async with http.ws_connect(server.ws_url, ssl=trust, origin=f"https://localhost:{server.port}") as ws:
                await hello(ws)
    finally:
        await server.stop()


def test_an_explicit_certificate_wins_over_tls_true(server_config: Config, tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path / "mine", identity())
    settings = dataclasses.replace(server_config.server, tls=True, tls_cert=cert, tls_key=key)
    server = Server(dataclasses.replace(server_config, server=settings))
    assert server.secure
    assert server._tls_context() is not None
    assert not (server_config.data_dir / TLS_DIR).exists()
