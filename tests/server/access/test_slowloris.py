"""The daemon against slow and hoarding HTTP clients: [server] header_timeout_s, max_connections_per_address."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.protocol import Bye
from tests.support.daemon import serving_with
from tests.support.slow_http import open_from, trickle_until_closed
from tests.support.wire import expect, hello

TIMEOUT_S = 0.5
OTHER_ADDRESS = "127.0.0.2"  # loopback too on Linux: a second client address


async def _seconds_until_closed_while_trickling(port: int, limit_s: float = 5.0) -> float:
    return await trickle_until_closed(*await open_from(port), limit_s=limit_s)


async def _still_open(events: aiohttp.ClientResponse) -> bool:
    """No end of stream within 0.3 s (a heartbeat line is fine)."""
    try:
        async with asyncio.timeout(0.3):
            return await events.content.readline() != b""
    except TimeoutError:
        return True


@pytest.mark.slow
async def test_a_trickling_client_is_closed_but_event_streams_and_websockets_stay(
    server_config: Config, engines: Engines
) -> None:
    async with (
        serving_with(server_config, engines, header_timeout_s=TIMEOUT_S) as server,
        aiohttp.ClientSession() as http,
    ):
        took = await _seconds_until_closed_while_trickling(server.port)
        assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 1.5

        async with asyncio.timeout(10):
            events = await http.get(server.http_url + "/api/events")
            assert await events.content.readline() == b": subscribed\n"
        async with http.ws_connect(server.ws_url) as ws:
            await hello(ws)
            await asyncio.sleep(TIMEOUT_S * 3)
            assert await _still_open(events)
            await ws.send_str(Bye().to_text())
            await expect(ws, Bye)  # the daemon answers: the socket was open all along
            async with asyncio.timeout(10):
                closing = await ws.receive()
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == 1000
        assert await _still_open(events)
        events.close()

        async with asyncio.timeout(10), http.get(server.http_url + "/healthz") as response:
            assert response.status == 200


@pytest.mark.slow
async def test_idle_sockets_from_one_address_are_capped_and_others_still_served(
    server_config: Config, engines: Engines
) -> None:
    async with (
        serving_with(server_config, engines, header_timeout_s=5.0, max_connections_per_address=4) as server,
        aiohttp.ClientSession() as http,
    ):
        held = [await open_from(server.port, OTHER_ADDRESS) for _ in range(4)]
        for _, writer in held:
            writer.write(b"GET / HTTP/1.1\r\n")
        refused = []
        for _ in range(3):
            reader, writer = await open_from(server.port, OTHER_ADDRESS)
            async with asyncio.timeout(5):
                refused.append(await reader.read())
            writer.close()
        assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused)
        async with asyncio.timeout(10), http.get(server.http_url + "/healthz") as response:
            assert response.status == 200
        async with http.ws_connect(server.ws_url) as ws:
            await hello(ws)
        for _, writer in held:
            writer.close()
