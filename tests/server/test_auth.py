"""Who gets in: the pairing token over the real daemon, the cookie, the limiter, rotation."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgevoice import protocol
from edgevoice.auth import COOKIE_NAME, FailureLimiter, TokenStore, auth_required, session_value
from edgevoice.client import ClientOptions, run_client
from edgevoice.client_audio import PacedSource
from edgevoice.config import Config
from edgevoice.engines.loaded import Engines
from edgevoice.errors import ConfigError
from edgevoice.server import Server


@pytest.fixture
async def guarded(server_config: Config, engines: Engines) -> AsyncIterator[Server]:
    config = dataclasses.replace(server_config, server=dataclasses.replace(server_config.server, auth="token"))
    server = Server(config, engines)
    await asyncio.wait_for(server.start("127.0.0.1", 0), 30)
    try:
        yield server
    finally:
        await asyncio.wait_for(server.stop(), 30)


def _hello(token: str | None) -> str:
    return protocol.dumps(protocol.Hello(16_000, "test", token=token).to_json())


async def _refused(http: aiohttp.ClientSession, server: Server, token: str | None) -> tuple[dict[str, Any], int | None]:
    async with http.ws_connect(server.ws_url) as ws:
        await ws.send_str(_hello(token))
        error = await asyncio.wait_for(ws.receive_json(), 10)
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
        return error, ws.close_code


async def _ready(http: aiohttp.ClientSession, server: Server, token: str | None, **kwargs: Any) -> dict[str, Any]:
    async with http.ws_connect(server.ws_url, **kwargs) as ws:
        await ws.send_str(_hello(token))
        message: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), 10)
        await ws.send_str('{"type": "bye"}')
        return message


# --- sans-I/O parts --------------------------------------------------------------------------------
def test_auto_is_token_off_loopback_only() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert auth_required("auto", host) is False
    for host in ("0.0.0.0", "", "::", "192.168.1.20", "box.local"):
        assert auth_required("auto", host) is True
    assert auth_required("token", "127.0.0.1") is True
    assert auth_required("none", "0.0.0.0") is False
    with pytest.raises(ConfigError):
        auth_required("maybe", "0.0.0.0")


def test_limiter_blocks_after_five_failures_until_the_window_passes() -> None:
    now = [1000.0]
    limiter = FailureLimiter(max_failures=5, window_s=60.0, clock=lambda: now[0])
    for _ in range(4):
        limiter.fail("10.0.0.2")
        now[0] += 1
    assert not limiter.blocked("10.0.0.2")
    limiter.fail("10.0.0.2")
    assert limiter.blocked("10.0.0.2")
    assert not limiter.blocked("10.0.0.3")
    now[0] += 56.5  # the first failure is now over a minute old
    assert not limiter.blocked("10.0.0.2")
    limiter.fail("10.0.0.2")
    assert limiter.blocked("10.0.0.2")
    now[0] += 61
    assert not limiter.blocked("10.0.0.2")


def test_token_file_is_private_and_rotation_is_seen(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "data" / "token")
    token, created = store.load()
    assert created
    assert len(token) == 32
    assert stat.S_IMODE((tmp_path / "data" / "token").stat().st_mode) == 0o600
    assert store.load() == (token, False)
    other = TokenStore(tmp_path / "data" / "token")  # another process: the daemon
    assert other.check_token(token)
    new = store.rotate()
    assert new != token
    assert stat.S_IMODE((tmp_path / "data" / "token").stat().st_mode) == 0o600
    assert not other.check_token(token)
    assert other.check_token(new)
    assert other.check_cookie(session_value(new))
    assert not other.check_cookie(session_value(token))
    assert not other.check_token(None)
    assert not other.check_token("")


def test_hello_token_round_trips_and_is_not_in_repr() -> None:
    hello = protocol.Hello(16_000, "x", token="secret")
    assert protocol.parse_client_text(protocol.dumps(hello.to_json())) == hello
    assert "secret" not in repr(hello)
    assert "token" not in protocol.Hello(16_000).to_json()


def test_token_command_prints_and_rotates(tmp_path: Path) -> None:
    env = {**os.environ, "EDGEVOICE_DATA_DIR": str(tmp_path)}
    env.pop("EDGEVOICE_CONFIG", None)

    def token(*args: str) -> str:
        command = [sys.executable, "-m", "edgevoice", "token", *args]
        return subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=60).stdout.strip()

    first = token()
    assert first == token() == (tmp_path / "token").read_text().strip()
    rotated = token("--rotate")
    assert rotated != first
    assert rotated == token()


# --- the daemon -------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_socket_asks_for_the_token(guarded: Server) -> None:
    token = guarded.tokens.current()
    async with aiohttp.ClientSession() as http:
        error, code = await _refused(http, guarded, None)
        assert error["code"] == "unauthorized"
        assert error["fatal"] is True
        assert code == protocol.CLOSE_UNAUTHORIZED
        assert (await _ready(http, guarded, token))["type"] == "ready"


@pytest.mark.slow
async def test_wrong_tokens_are_rate_limited(guarded: Server) -> None:
    token = guarded.tokens.current()
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            error, code = await _refused(http, guarded, "wrong")
            assert (error["code"], code) == ("unauthorized", protocol.CLOSE_UNAUTHORIZED)
        error, code = await _refused(http, guarded, "wrong")
        assert (error["code"], code) == ("rate_limited", protocol.CLOSE_RATE_LIMITED)
        error, code = await _refused(http, guarded, token)  # even the right one, until the minute is up
        assert code == protocol.CLOSE_RATE_LIMITED
        async with http.get(guarded.http_url + "/api/status", headers={"Authorization": f"Bearer {token}"}) as got:
            assert got.status == 429


@pytest.mark.slow
async def test_api_needs_bearer_or_cookie_and_healthz_is_open(guarded: Server) -> None:
    token = guarded.tokens.current()
    url = guarded.http_url
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/healthz") as got:
            assert got.status == 200
        for path in ("/api/status", "/metrics"):
            async with http.get(url + path) as got:
                assert got.status == 401
                assert (await got.json())["error"] == "unauthorized"
            async with http.get(url + path, headers={"Authorization": f"Bearer {token}"}) as got:
                assert got.status == 200
        async with http.get(url + "/pair") as got:
            assert got.status == 200
            assert "pair.js" in await got.text()


@pytest.mark.slow
async def test_pairing_sets_a_strict_http_only_cookie(guarded: Server) -> None:
    token = guarded.tokens.current()
    url = guarded.http_url
    own = f"http://localhost:{guarded.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            url + "/api/pair", json={"token": token}, headers={"Origin": "http://evil.example"}
        ) as got:
            assert got.status == 403
        async with http.post(url + "/api/pair", json={"token": "wrong"}, headers={"Origin": own}) as got:
            assert got.status == 401
        async with http.post(url + "/api/pair", json={"token": token}, headers={"Origin": own}) as got:
            assert got.status == 200
            cookie = got.cookies[COOKIE_NAME]
            assert cookie.value == session_value(token)
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            assert cookie["path"] == "/"
        assert token not in str(got.url)
        async with http.get(url + "/api/status") as status:
            assert status.status == 200
        # a paired browser needs no token in its hello
        assert (await _ready(http, guarded, None))["type"] == "ready"


@pytest.mark.slow
async def test_rotation_takes_effect_without_a_restart(guarded: Server) -> None:
    old = guarded.tokens.current()
    new = TokenStore(guarded.config.data_dir / "token").rotate()
    async with aiohttp.ClientSession() as http:
        _error, code = await _refused(http, guarded, old)
        assert code == protocol.CLOSE_UNAUTHORIZED
        assert (await _ready(http, guarded, new))["type"] == "ready"
        async with http.get(guarded.http_url + "/api/status", headers={"Authorization": f"Bearer {old}"}) as got:
            assert got.status == 401


@pytest.mark.slow
async def test_python_client_sends_its_token(guarded: Server, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    source = PacedSource()
    source.finish()
    options = ClientOptions(url=guarded.ws_url, out=tmp_path / "r.wav", retries=0, token=guarded.tokens.current())
    code = await asyncio.wait_for(run_client(options, source=source, observer=seen.append), 60)
    assert code == 0, json.dumps(seen)
    assert [m["type"] for m in seen].count("ready") == 1
