"""The self-signed certificate `[server] tls = true` makes, keeps and renews (edgevoice.server.tls)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from edgevoice.config import Config, load_config
from edgevoice.engines.engines import Engines
from edgevoice.errors import ConfigError
from edgevoice.fingerprint import normalize, of_der, of_pem_file
from edgevoice.server.access.pairing import Pairing
from edgevoice.server.access.tokens import TokenStore, tls_wanted
from edgevoice.server.app import Server
from edgevoice.server.identity import Identity, box_identity, box_name
from edgevoice.server.tls import CERT_FILE, KEY_FILE, TLS_DIR, ensure_certificate, server_context
from tests.support.daemon import Daemons, serving_with
from tests.support.wire import hello

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
    async with serving_with(server_config, engines, tls="on") as server:
        assert server.secure
        assert server.http_url.startswith("https://")
        assert server.ws_url.startswith("wss://")
        cert = server_config.data_dir / TLS_DIR / CERT_FILE
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(server.http_url + "/healthz", ssl=trust) as response:
                assert (await response.json())["status"] == "ok"
            async with http.ws_connect(server.ws_url, ssl=trust, origin=f"https://localhost:{server.port}") as ws:
                await hello(ws)


def test_an_explicit_certificate_wins_over_tls_true(server_config: Config, tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path / "mine", identity())
    settings = dataclasses.replace(server_config.server, tls=True, tls_cert=cert, tls_key=key)
    config = dataclasses.replace(server_config, server=settings)
    assert Server(config).secure
    assert server_context(config, box_name(config)) is not None
    assert not (server_config.data_dir / TLS_DIR).exists()


def test_tls_is_on_by_default_wherever_the_box_asks_for_its_token(server_config: Config) -> None:
    """auth on off loopback: the token and the session cookie must not cross the LAN in clear."""
    assert Config().server.tls == "auto"
    for host in ("0.0.0.0", "", "192.168.1.20"):
        assert tls_wanted("auto", False, "auto", host)
        assert tls_wanted("auto", False, "token", host)
        assert not tls_wanted("auto", False, "none", host)
        assert not tls_wanted("off", False, "token", host)
    assert not tls_wanted("auto", False, "auto", "127.0.0.1")  # loopback: no token asked, plain HTTP
    assert not tls_wanted("auto", False, "token", "127.0.0.1")  # loopback: nothing crosses a network
    assert tls_wanted("on", False, "none", "127.0.0.1")
    assert tls_wanted("off", True, "none", "127.0.0.1")  # a certificate given wins
    on_the_lan = dataclasses.replace(server_config, server=dataclasses.replace(server_config.server, host="0.0.0.0"))
    assert Server(on_the_lan).secure
    loopback = dataclasses.replace(server_config, server=dataclasses.replace(server_config.server, host="127.0.0.1"))
    assert not Server(loopback).secure


def test_tls_reads_booleans_as_before(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.toml"
    path.write_text("[server]\ntls = true\n")
    assert load_config(path, environ={}).server.tls == "on"
    assert load_config(None, environ={"EDGEVOICE_SERVER_TLS": "false"}).server.tls == "off"
    assert load_config(None, environ={"EDGEVOICE_SERVER_TLS": "auto"}).server.tls == "auto"
    with pytest.raises(ConfigError, match=r"server\.tls"):
        load_config(None, environ={"EDGEVOICE_SERVER_TLS": "maybe"}).validate()


def test_fingerprints_read_as_typed() -> None:
    fp = ":".join(["AB"] * 32)
    assert normalize("ab" * 32) == fp
    assert normalize(fp.lower()) == fp
    assert normalize("SHA256 " + " ".join(["ab"] * 32)) == fp
    assert normalize("AB:CD") is None
    assert normalize("zz" * 32) is None


def test_pairing_over_plain_http_is_refused_off_loopback(tmp_path: Path) -> None:
    pairing = Pairing(TokenStore(tmp_path / "token"), lambda _origin: True, secure=False)
    assert pairing.insecure_for("192.168.1.30")
    assert not pairing.insecure_for("127.0.0.1")
    assert not pairing.insecure_for("::1")
    assert not Pairing(TokenStore(tmp_path / "token"), lambda _origin: True, secure=True).insecure_for("192.168.1.30")


@pytest.mark.slow
async def test_the_fingerprint_is_the_served_certificates(server_config: Config, engines: Engines) -> None:
    async with serving_with(server_config, engines, tls="on") as server:
        cert = server_config.data_dir / TLS_DIR / CERT_FILE
        assert server.address.fingerprint == of_pem_file(cert)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=insecure)
        ssl_object = writer.get_extra_info("ssl_object")
        assert of_der(ssl_object.getpeercert(binary_form=True)) == server.address.fingerprint
        writer.close()


@pytest.mark.slow
async def test_serve_and_the_token_command_print_the_fingerprint(daemons: Daemons) -> None:
    daemon = await daemons.start("--tls", env={**daemons.env, "EDGEVOICE_SERVER_AUTH": "token"})
    data = Path(daemons.env["EDGEVOICE_DATA_DIR"])
    fp = of_pem_file(data / TLS_DIR / CERT_FILE)
    await daemon.stop()
    assert f"certificate SHA-256 fingerprint {fp}" in daemon.errors
    command = [sys.executable, "-m", "edgevoice", "token"]
    done = await asyncio.to_thread(
        subprocess.run, command, env=daemons.env, capture_output=True, text=True, timeout=60, check=True
    )
    assert fp in done.stderr
