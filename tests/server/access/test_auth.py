"""Who gets in: the pairing token over the real daemon, the cookie, the limiter, rotation."""

from __future__ import annotations

import asyncio
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
from edgevoice.audio.buffers import PacedSource
from edgevoice.client.run import ClientOptions, run_client
from edgevoice.config import Config
from edgevoice.conversation import Conversation
from edgevoice.engines.engines import Engines
from edgevoice.errors import ConfigError
from edgevoice.protocol import Error, Ready, ServerMessage
from edgevoice.server.access.devices import DeviceStore
from edgevoice.server.access.tokens import COOKIE_NAME, FailureLimiter, TokenStore, auth_required
from edgevoice.server.app import Server
from tests.support.daemon import serving_with
from tests.support.wire import expect, hello, next_message


@pytest.fixture
async def guarded(server_config: Config, engines: Engines) -> AsyncIterator[Server]:
    async with serving_with(server_config, engines, auth="token") as server:
        yield server


async def _refused(http: aiohttp.ClientSession, server: Server, token: str | None) -> tuple[Error, int | None]:
    async with http.ws_connect(server.ws_url) as ws:
        await ws.send_str(protocol.Hello(16_000, "test", token=token).to_text())
        error = await expect(ws, Error)
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
        return error, ws.close_code


async def _ready(http: aiohttp.ClientSession, server: Server, token: str | None, **kwargs: Any) -> ServerMessage:
    """The answer to a hello with this token: ready, or not."""
    async with http.ws_connect(server.ws_url, **kwargs) as ws:
        await ws.send_str(protocol.Hello(16_000, "test", token=token).to_text())
        answer = await next_message(ws)
        await ws.send_str(protocol.Bye().to_text())
        return answer


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


def test_the_token_survives_a_file_it_cannot_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "token"
    store = TokenStore(path)
    token, _ = store.load()
    path.unlink()
    path.mkdir()  # read_text now fails with IsADirectoryError, as it would with EACCES
    assert store.current() == token
    assert store.check_token(token)
    assert store.current() == token
    assert sum("cannot read the pairing token" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_root_rotating_the_token_leaves_it_to_the_daemon(tmp_path: Path) -> None:
    """`edgevoice token --rotate` as root on a systemd box: the data directory's owner (the daemon) keeps it."""
    data = tmp_path / "state"
    data.mkdir(mode=0o700)
    os.chown(data, 4242, 4242)
    config = tmp_path / "edgevoice.toml"
    config.write_text(f'data_dir = "{data}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEVOICE_", "STATE_DIRECTORY"))}
    command = [sys.executable, "-m", "edgevoice", "--config", str(config), "token", "--rotate"]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=60)
    written = data / "token"
    assert done.stdout.strip() == written.read_text().strip()
    assert str(written) in done.stderr
    info = written.stat()
    assert (info.st_uid, info.st_gid) == (4242, 4242)
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_the_token_command_reads_the_system_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --config, no $EDGEVOICE_CONFIG, no $STATE_DIRECTORY (root at a shell): the unit's config names data_dir."""
    from edgevoice import cli  # noqa: PLC0415

    data = tmp_path / "state"
    system = tmp_path / "edgevoice.toml"
    system.write_text(f'data_dir = "{data}"\n')
    monkeypatch.setattr(cli, "SYSTEM_CONFIG", system)
    for name in ("EDGEVOICE_CONFIG", "EDGEVOICE_DATA_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    assert cli.main(["token", "--rotate"]) == 0
    assert (data / "token").is_file()
    assert not (tmp_path / "home").exists()


def test_each_device_has_its_own_session_that_expires_and_can_be_forgotten(tmp_path: Path) -> None:
    now = [1000.0]
    store = DeviceStore(tmp_path / "devices.json", clock=lambda: now[0])
    phone, phone_secret = store.pair("Phone\nbrowser", "tok")
    laptop, laptop_secret = store.pair("Laptop", "tok")
    assert phone_secret != laptop_secret
    assert phone.id != laptop.id
    assert phone.name == "Phonebrowser"
    assert phone_secret not in (tmp_path / "devices.json").read_text()  # only its digest is kept
    assert stat.S_IMODE((tmp_path / "devices.json").stat().st_mode) == 0o600
    again = DeviceStore(tmp_path / "devices.json", clock=lambda: now[0])  # the daemon restarted
    assert again.check(phone_secret, "tok") == phone
    assert again.check(phone_secret, "rotated") is None  # a new token unpairs everyone
    assert again.check("guess", "tok") is None
    assert [d.id for d in again.devices("tok")] == [phone.id, laptop.id]
    assert again.forget(phone.id)
    assert not again.forget(phone.id)
    assert again.check(phone_secret, "tok") is None
    assert again.check(laptop_secret, "tok") == laptop
    now[0] += 181 * 86400
    assert again.check(laptop_secret, "tok") is None  # expired
    assert again.devices("tok") == []


# --- the daemon -------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_socket_asks_for_the_token(guarded: Server) -> None:
    token = guarded.tokens.current()
    async with aiohttp.ClientSession() as http:
        error, code = await _refused(http, guarded, None)
        assert error.code == "unauthorized"
        assert error.fatal is True
        assert code == protocol.CLOSE_UNAUTHORIZED
        assert isinstance(await _ready(http, guarded, token), Ready)


@pytest.mark.slow
async def test_wrong_tokens_are_rate_limited(guarded: Server) -> None:
    token = guarded.tokens.current()
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            error, code = await _refused(http, guarded, "wrong")
            assert (error.code, code) == ("unauthorized", protocol.CLOSE_UNAUTHORIZED)
        error, code = await _refused(http, guarded, "wrong")
        assert (error.code, code) == ("rate_limited", protocol.CLOSE_RATE_LIMITED)
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
            assert token not in cookie.value
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            assert cookie["path"] == "/"
        assert token not in str(got.url)
        async with http.get(url + "/api/status") as status:
            assert status.status == 200
        # a paired browser needs no token in its hello
        assert isinstance(await _ready(http, guarded, None), Ready)


@pytest.mark.slow
async def test_rotation_takes_effect_without_a_restart(guarded: Server) -> None:
    old = guarded.tokens.current()
    new = TokenStore(guarded.config.data_dir / "token").rotate()
    async with aiohttp.ClientSession() as http:
        _error, code = await _refused(http, guarded, old)
        assert code == protocol.CLOSE_UNAUTHORIZED
        assert isinstance(await _ready(http, guarded, new), Ready)
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


async def _pair(http: aiohttp.ClientSession, server: Server, name: str) -> str:
    own = f"http://localhost:{server.port}"
    body = {"token": server.tokens.current(), "name": name}
    async with http.post(server.http_url + "/api/pair", json=body, headers={"Origin": own}) as got:
        assert got.status == 200
        return str(got.cookies[COOKIE_NAME].value)


@pytest.mark.slow
async def test_the_owner_sees_paired_devices_and_forgets_one(guarded: Server) -> None:
    async with aiohttp.ClientSession() as http:
        phone = await _pair(http, guarded, "Phone")
        laptop = await _pair(http, guarded, "Laptop")
    assert phone != laptop
    async with aiohttp.ClientSession(cookies={COOKIE_NAME: laptop}) as owner:
        async with owner.get(guarded.http_url + "/api/devices") as got:
            listed = await got.json()
        names = {d["name"]: d for d in listed["devices"]}
        assert set(names) == {"Phone", "Laptop"}
        assert names["Laptop"]["current"] is True
        assert names["Phone"]["current"] is False
        async with owner.delete(guarded.http_url + f"/api/devices/{names['Phone']['id']}") as got:
            assert got.status == 200
        async with owner.delete(guarded.http_url + f"/api/devices/{names['Phone']['id']}") as got:
            assert got.status == 404
    async with aiohttp.ClientSession(cookies={COOKIE_NAME: phone}) as forgotten:
        async with forgotten.get(guarded.http_url + "/api/status") as got:
            assert got.status == 401
        _error, code = await _refused(forgotten, guarded, None)
        assert code == protocol.CLOSE_UNAUTHORIZED


@pytest.mark.slow
async def test_a_device_cannot_resume_another_devices_conversation(guarded: Server) -> None:
    async with aiohttp.ClientSession() as http:
        phone = await _pair(http, guarded, "Phone")
        laptop = await _pair(http, guarded, "Laptop")
    async with aiohttp.ClientSession(cookies={COOKIE_NAME: phone}) as http, http.ws_connect(guarded.ws_url) as ws:
        ready = await hello(ws)
    mine = ready.conversation
    (phone_device,) = [d for d in guarded.pairing.devices.devices(guarded.tokens.current()) if d.name == "Phone"]
    assert guarded.conversations.save(mine, Conversation("", 4), phone_device.id)  # as its first turn would
    async with aiohttp.ClientSession(cookies={COOKIE_NAME: phone}) as http, http.ws_connect(guarded.ws_url) as ws:
        again = await hello(ws, conversation=mine)
        assert (again.conversation, again.resumed) == (mine, True)
    async with aiohttp.ClientSession(cookies={COOKIE_NAME: laptop}) as http, http.ws_connect(guarded.ws_url) as ws:
        other = await hello(ws, conversation=mine)
        assert other.conversation != mine
        assert other.resumed is False
