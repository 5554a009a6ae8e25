"""The smaller hardening: what /healthz tells strangers, slow bodies, journal lines, the limiter's memory,
cookies from a limited address, file modes, the token on screen, Host names off the loop, headers, the unit."""

from __future__ import annotations

import asyncio
import configparser
import os
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edgevoice.client.options import add_client_arguments, options_from_args
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.server.access.origins import OriginPolicy
from edgevoice.server.access.tokens import COOKIE_NAME, FailureLimiter
from edgevoice.server.app import Server
from edgevoice.server.identity import host_aliases
from edgevoice.server.state import ORIGINS
from edgevoice.transports.socket import printable_name
from tests.support.daemon import Daemons, serving_with
from tests.support.slow_http import open_from
from tests.support.wire import hello

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "edgevoice.service"


@pytest.fixture
async def guarded(server_config: Config, engines: Engines) -> AsyncIterator[Server]:
    async with serving_with(server_config, engines, auth="token", header_timeout_s=0.5) as server:
        yield server


# --- sans-I/O ---------------------------------------------------------------------------------------
def test_the_limiter_keeps_counting_past_4096_addresses() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=5, window_s=60.0, clock=lambda: now[0])
    for n in range(5000):
        limiter.fail(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        if n % 1000 == 0:
            limiter.fail("192.168.1.66")  # the guesser, among the crowd
    assert limiter.blocked("192.168.1.66")
    assert len(limiter) <= limiter.max_addresses


def test_the_limiter_forgets_by_age_first() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=2, window_s=60.0, clock=lambda: now[0], max_addresses=10)
    limiter.fail("10.0.0.1")
    limiter.fail("10.0.0.1")
    now[0] = 30.0
    for n in range(20):
        limiter.fail(f"10.0.1.{n}")
    assert limiter.blocked("10.0.0.1")  # the oldest entry, but blocked: kept while in its window
    assert len(limiter) <= 10
    now[0] = 61.0
    assert not limiter.blocked("10.0.0.1")


def test_the_limiter_counts_an_ipv6_64_as_one() -> None:
    limiter = FailureLimiter(max_failures=5)
    for n in range(5):
        limiter.fail(f"2001:db8:0:1::{n + 1:x}")
    assert limiter.blocked("2001:db8:0:1:ffff::9")
    assert not limiter.blocked("2001:db8:0:2::1")


def test_a_client_name_cannot_write_journal_lines() -> None:
    assert printable_name("kitchen\nedgevoice: pairing token: x") == "kitchenedgevoice: pairing token: x"
    assert printable_name("a\x1b[31mred\x00") == "a[31mred"
    assert printable_name("\n\r\t") == "unnamed"
    assert printable_name("Ünïcode phone") == "Ünïcode phone"
    assert len(printable_name("x" * 500)) == 64


def test_the_unit_denies_addresses_but_the_lan() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["IPAddressDeny"] == "any"
    allowed = set(service["IPAddressAllow"].split())
    assert {"localhost", "link-local", "multicast", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= allowed
    assert {"fc00::/7"} <= allowed
    assert int(service["LimitNOFILE"]) > Config().server.max_connections + 64


def test_the_client_reads_its_token_from_a_file(tmp_path: Path) -> None:
    import argparse  # noqa: PLC0415

    (tmp_path / "token").write_text("s3cret\n")
    parser = argparse.ArgumentParser()
    add_client_arguments(parser)
    options = options_from_args(parser.parse_args(["box.local", "--token-file", str(tmp_path / "token")]))
    assert options.token == "s3cret"


@pytest.mark.slow
async def test_unknown_hosts_do_not_look_names_up_on_the_loop(
    server_config: Config, engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """socket.getfqdn() may wait on DNS for seconds: never on the event loop, however many Hosts are tried."""
    loop_thread = threading.current_thread()
    lookups: list[threading.Thread] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(threading.current_thread())
        return "box.example"

    monkeypatch.setattr("socket.getfqdn", getfqdn)
    host_aliases.cache_clear()
    try:
        async with serving_with(server_config, engines) as server, aiohttp.ClientSession() as http:
            for n in range(3):
                server.app[ORIGINS]._refreshed -= OriginPolicy.REFRESH_S + 1  # due for a refresh
                async with http.get(server.http_url + "/healthz", headers={"Host": f"unknown{n}.example"}) as got:
                    assert got.status == 403
        assert lookups
        assert loop_thread not in lookups
    finally:
        host_aliases.cache_clear()


# --- the daemon -------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_healthz_tells_strangers_status_and_version_only(guarded: Server) -> None:
    token = guarded.tokens.current()
    async with aiohttp.ClientSession() as http, http.ws_connect(guarded.ws_url) as ws:
        await hello(ws, token=token)
        async with http.get(guarded.http_url + "/healthz") as got:
            assert got.status == 200
            assert set(await got.json()) == {"status", "version"}
        async with http.get(guarded.http_url + "/healthz", headers={"Authorization": f"Bearer {token}"}) as got:
            details = await got.json()
        assert details["clients"] == 1
        assert details["connections"][0]["name"] == "test"


@pytest.mark.slow
async def test_a_slow_request_body_is_timed_out(guarded: Server) -> None:
    reader, writer = await open_from(guarded.port)
    started = time.monotonic()
    writer.write(
        b"POST /api/pair HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    try:
        async with asyncio.timeout(10):
            while not reader.at_eof():
                writer.write(b" ")
                await writer.drain()
                await asyncio.wait([asyncio.ensure_future(reader.read(4096))], timeout=0.1)
    except ConnectionError:
        pass
    took = time.monotonic() - started
    assert took < 0.5 + 2.0, took
    writer.close()
    assert guarded.app  # still serving
    async with aiohttp.ClientSession() as http, http.get(guarded.http_url + "/pair") as got:
        assert got.status == 200


@pytest.mark.slow
async def test_too_many_connections_in_all_get_503(server_config: Config, engines: Engines) -> None:
    async with serving_with(server_config, engines, max_connections=4) as server:
        held = [await open_from(server.port, f"127.0.0.{n + 2}") for n in range(4)]
        reader, writer = await open_from(server.port, "127.0.0.9")
        async with asyncio.timeout(5):
            answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 503")
        writer.close()
        for _, w in held:
            w.close()


@pytest.mark.slow
async def test_a_paired_cookie_passes_on_api_from_a_limited_address(guarded: Server) -> None:
    token = guarded.tokens.current()
    own = f"http://127.0.0.1:{guarded.port}"
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        http.post(guarded.http_url + "/api/pair", json={"token": token}, headers={"Origin": own}) as got,
    ):
        assert got.status == 200
        cookie = got.cookies[COOKIE_NAME].value
    async with aiohttp.ClientSession() as stranger:  # same address, no cookie: guesses wrong five times
        for _ in range(5):
            async with stranger.get(guarded.http_url + "/api/status", headers={"Authorization": "Bearer no"}) as got:
                assert got.status == 401
        async with stranger.get(guarded.http_url + "/api/status", headers={"Authorization": "Bearer no"}) as got:
            assert got.status == 429
    async with (
        aiohttp.ClientSession(cookies={COOKIE_NAME: cookie}) as paired,
        paired.get(guarded.http_url + "/api/status") as got,
    ):
        assert got.status == 200


@pytest.mark.slow
async def test_responses_carry_security_headers_and_no_version(guarded: Server) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/pair", "/healthz", "/api/status"):
            async with http.get(guarded.http_url + path) as got:
                assert got.headers["X-Frame-Options"] == "DENY", path
                assert "frame-ancestors 'none'" in got.headers["Content-Security-Policy"]
                assert got.headers["X-Content-Type-Options"] == "nosniff"
                assert got.headers["Referrer-Policy"] == "no-referrer"
                assert "aiohttp" not in got.headers.get("Server", "")
                assert "Python" not in got.headers.get("Server", "")


@pytest.mark.slow
async def test_serve_keeps_its_files_private_and_prints_the_token_once(daemons: Daemons, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        first = await daemons.start(env={**daemons.env, "EDGEVOICE_SERVER_AUTH": "token"})
    finally:
        os.umask(old)
    data = Path(daemons.env["EDGEVOICE_DATA_DIR"])
    await first.stop()
    files = [p for p in data.rglob("*") if p.is_file() and "models" not in p.parts]  # noqa: ASYNC240
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    token = (data / "token").read_text().strip()
    assert token in first.output + first.errors
    second = await daemons.start(env={**daemons.env, "EDGEVOICE_SERVER_AUTH": "token"})
    await second.stop()
    assert token not in second.output + second.errors
    assert "edgevoice token" in second.errors, second.errors
