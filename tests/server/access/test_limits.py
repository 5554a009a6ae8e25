"""What a client sends can't hurt the box: Host names, connections per address, message rate, silence."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import pytest

from edgevoice import protocol
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.protocol import Error
from edgevoice.server.access.limits import FrameRate, Verdict
from edgevoice.server.access.origins import OriginPolicy
from edgevoice.server.app import Server
from tests.support.daemon import serving_with
from tests.support.wire import Received, hello, receive


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_paced_client_is_never_limited() -> None:
    clock = Clock()
    rate = FrameRate(100, clock=clock)
    for _ in range(5000):  # 100 s of 20 ms frames
        clock.now += 0.02
        assert rate.feed() is Verdict.ALLOW
    assert rate.dropped == 0


def test_a_burst_is_allowed_then_dropped_then_a_flood_is_closed() -> None:
    clock = Clock()
    rate = FrameRate(100, burst_s=2.0, sustain_s=2.0, clock=clock)
    assert [rate.feed() for _ in range(200)] == [Verdict.ALLOW] * 200
    assert rate.feed() is Verdict.DROP
    assert rate.spell_started
    assert rate.feed() is Verdict.DROP
    assert not rate.spell_started
    verdicts = [rate.feed() for _ in range(300)]
    assert Verdict.CLOSE in verdicts
    assert verdicts.index(Verdict.CLOSE) == 198  # the 201st drop: more than 2 s worth of frames dropped in one spell


def test_a_client_over_the_rate_for_more_than_sustain_s_is_closed() -> None:
    clock = Clock()
    rate = FrameRate(100, burst_s=0.01, sustain_s=2.0, clock=clock)
    seen = []
    for _ in range(2 * 150 + 30):  # 150 frames a second: 1.5 times the limit
        clock.now += 1 / 150
        seen.append(rate.feed())
    assert Verdict.DROP in seen
    assert seen[-1] is Verdict.CLOSE
    assert Verdict.CLOSE not in seen[: 2 * 150 - 10]


def test_a_spell_ends_after_a_quiet_second() -> None:
    clock = Clock()
    rate = FrameRate(10, burst_s=1.0, clock=clock)
    for _ in range(10):
        rate.feed()
    assert rate.feed() is Verdict.DROP
    clock.now += 1.5
    assert rate.feed() is Verdict.ALLOW
    for _ in range(14):
        rate.feed()
    assert rate.feed() is Verdict.DROP
    assert rate.dropped >= 2


def test_host_names_the_box() -> None:
    policy = OriginPolicy({"edgevoice", "192.168.1.5"}, "https://voice.example.org:8443")
    assert policy.allows_host("edgevoice:8765")
    assert policy.allows_host("192.168.1.5")
    assert policy.allows_host("EDGEVOICE.:8765")
    assert policy.allows_host("voice.example.org")
    assert not policy.allows_host("evil.example:8765")
    assert not policy.allows_host("")
    assert not policy.allows_host(None)
    assert not policy.allows_host("[nope:8765")


def test_host_learns_a_new_address_through_refresh() -> None:
    hosts = {"edgevoice"}
    policy = OriginPolicy(hosts, "", refresh=lambda: hosts | {"10.0.0.7"})
    policy._refreshed -= OriginPolicy.REFRESH_S + 1
    assert policy.allows_host("10.0.0.7:8765")


async def _closed(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 10) -> aiohttp.WSMessage:
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return message


@pytest.mark.slow
async def test_a_foreign_host_is_refused(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url, headers={"Host": f"evil.example:{server.port}"})
        assert refused.value.status == 403
        async with http.post(
            server.http_url + "/api/pair", json={"token": "x"}, headers={"Host": "evil.example"}
        ) as response:
            assert response.status == 403
        async with http.ws_connect(server.ws_url) as ws:
            await hello(ws)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/api/turns", "/api/events", "/api/status", "/healthz", "/", "/talk", "/metrics"])
async def test_a_rebound_host_reads_nothing_when_auth_is_off(server: Server, path: str) -> None:
    """DNS rebinding: a page on rebind.evil.example, its name now pointing at the box, names itself in Host."""
    assert not server.pairing.enabled  # loopback with auth "auto"
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + path, headers={"Host": f"rebind.evil.example:{server.port}"}) as got:
            assert got.status == 403, await got.text()
        async with http.head(server.http_url + path, headers={"Host": "rebind.evil.example"}) as got:
            assert got.status == 403
        if path != "/api/events":
            async with http.get(server.http_url + path) as got:
                assert got.status == 200, path


@pytest.mark.slow
async def test_the_listen_address_is_one_of_the_box_hosts(server_config: Config, engines: Engines) -> None:
    """A box on 127.0.0.2 (or a virtual IP no interface lists alone) is reached by that address, Host and Origin."""
    changed = dataclasses.replace(server_config, server=dataclasses.replace(server_config.server, host="127.0.0.2"))
    running = Server(changed, engines)
    await running.start("127.0.0.2", 0)
    try:
        own = f"127.0.0.2:{running.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(running.http_url + "/healthz") as got:
                assert got.status == 200
            async with http.ws_connect(running.ws_url, origin=f"http://{own}") as ws:
                await hello(ws)
    finally:
        await running.stop()


@pytest.mark.slow
async def test_too_many_clients_from_one_address_get_1013(server_config: Config, engines: Engines) -> None:
    async with (
        serving_with(server_config, engines, max_clients_per_address=2) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as first,
        http.ws_connect(server.ws_url) as second,
    ):
        await hello(first)
        await hello(second)
        async with http.ws_connect(server.ws_url) as third:
            # counted from its hello on: refused once it says it
            await third.send_str(protocol.Hello(16_000, "test").to_text())
            message = await _closed(third)
            assert third.close_code == protocol.CLOSE_TRY_LATER, message
            assert "address" in str(message.extra)
        await first.close()
        await asyncio.sleep(0.2)
        async with http.ws_connect(server.ws_url) as again:
            await hello(again)


@pytest.mark.slow
async def test_a_flood_is_rate_limited_then_closed_1008(server_config: Config, engines: Engines) -> None:
    async with (
        serving_with(server_config, engines, max_frames_per_second=50) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
    ):
        await hello(ws)
        for seq in range(400):
            await ws.send_bytes(protocol.encode_client_audio(seq, bytes(2)))
        errors = (await receive(ws, Received(), timeout_s=10)).of(Error)
        assert {e.code for e in errors} == {"rate_limited"}, errors
        assert not errors[0].fatal
        assert errors[-1].fatal
        assert ws.close_code == protocol.CLOSE_POLICY


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "code", "reason"),
    [
        ("hello_timeout_s", protocol.CLOSE_POLICY, "no hello"),
        ("idle_timeout_s", protocol.CLOSE_GOING_AWAY, "idle"),
    ],
)
async def test_silent_clients_are_closed(
    server_config: Config, engines: Engines, setting: str, code: int, reason: str
) -> None:
    say_hello = setting == "idle_timeout_s"
    settings = {setting: 0.5}
    async with (
        serving_with(server_config, engines, **settings) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url, autoping=True) as ws,
    ):
        if say_hello:
            await hello(ws)
        message = await _closed(ws, 5)
        assert ws.close_code == code
        assert message.extra == reason
