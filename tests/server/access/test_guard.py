"""HttpGuard on a small aiohttp app over real sockets: header deadline, keep-alive, long responses, per-address cap."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from edgevoice.config import Config
from edgevoice.errors import ConfigError
from edgevoice.server.access.guard import AddressSlots, GuardedSite, HttpGuard, bind
from tests.support.slow_http import open_from, trickle_until_closed

TIMEOUT_S = 0.5
OTHER_ADDRESS = "127.0.0.2"  # still loopback on Linux: a second client address without a second box


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index in range(6):  # 1.5 s: three header timeouts
        await response.write(f"data: {index}\n\n".encode())
        await asyncio.sleep(0.25)
    await response.write_eof()
    return response


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


@asynccontextmanager
async def serving(per_address: int = 16) -> AsyncIterator[tuple[int, HttpGuard]]:
    app = web.Application()
    app.router.add_get("/", _ok)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/ws", _echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    guard = HttpGuard(TIMEOUT_S, per_address)
    site = GuardedSite(runner, await bind("127.0.0.1", 0, guard), guard)
    await site.start()
    try:
        yield int(runner.addresses[0][1]), guard
    finally:
        await runner.cleanup()


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        return head + await reader.readexactly(length)


async def test_a_trickling_client_is_closed_after_the_header_timeout() -> None:
    async with serving() as (port, guard):
        took = await trickle_until_closed(*await open_from(port), limit_s=5)
        assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 1.5
        assert guard.timed_out == 1


async def test_a_silent_connection_is_closed_too() -> None:
    async with serving() as (port, guard):
        reader, writer = await open_from(port)
        started = time.monotonic()
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        assert TIMEOUT_S * 0.9 <= time.monotonic() - started < TIMEOUT_S + 1.5
        writer.close()
        assert guard.timed_out == 1


async def test_normal_keep_alive_requests_work_and_the_deadline_restarts_after_each() -> None:
    async with serving() as (port, guard):
        reader, writer = await open_from(port)
        for _ in range(3):  # each well inside its deadline, together longer than one
            await asyncio.sleep(TIMEOUT_S * 0.6)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = await _read_response(reader)
            assert response.startswith(b"HTTP/1.1 200")
            assert response.endswith(b"ok")
        took = await trickle_until_closed(reader, writer, limit_s=5)  # the next request trickles
        assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 1.5
        assert guard.timed_out == 1


async def test_a_long_response_and_a_websocket_outlive_the_header_timeout() -> None:
    async with serving() as (port, guard), aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/stream") as response:
            async with asyncio.timeout(10):
                body = await response.text()
        assert body.count("data: ") == 6
        async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            await asyncio.sleep(TIMEOUT_S * 3)
            await ws.send_str("still here")
            async with asyncio.timeout(5):
                assert await ws.receive_str() == "still here"
        assert guard.timed_out == 0


async def test_connections_over_the_cap_from_one_address_are_refused_but_others_are_served() -> None:
    async with serving(per_address=3) as (port, guard), aiohttp.ClientSession() as http:
        slow = [await open_from(port, OTHER_ADDRESS) for _ in range(3)]
        for _, writer in slow:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        reader, writer = await open_from(port, OTHER_ADDRESS)
        async with asyncio.timeout(5):
            refused = await reader.read()
        assert refused.startswith(b"HTTP/1.1 503")
        writer.close()
        assert guard.refused == 1
        async with asyncio.timeout(5), http.get(f"http://127.0.0.1:{port}/") as response:
            assert response.status == 200
        slow[0][1].close()  # a slot comes free once one of them goes
        await asyncio.sleep(0.1)
        reader, writer = await open_from(port, OTHER_ADDRESS)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _read_response(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
        for _, other in slow[1:]:
            other.close()


async def test_timed_out_sockets_give_their_slots_back() -> None:
    async with serving(per_address=2) as (port, guard):
        idle = [await open_from(port, OTHER_ADDRESS) for _ in range(2)]
        await asyncio.sleep(TIMEOUT_S + 0.5)
        assert guard.timed_out == 2
        assert guard.slots.open(OTHER_ADDRESS) == 0
        reader, writer = await open_from(port, OTHER_ADDRESS)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _read_response(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
        for _, other in idle:
            other.close()


def test_address_slots() -> None:
    slots = AddressSlots(2)
    assert slots.acquire("a")
    assert slots.acquire("a")
    assert not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.open("a") == 1
    assert slots.acquire("a")
    for _ in range(3):
        slots.release("a")
    assert slots.open("a") == 0
    assert slots._open == {"b": 1}  # nothing kept for an address with no connection


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_config_refuses_a_header_timeout_that_is_not_positive(timeout: float) -> None:
    config = Config()
    with pytest.raises(ConfigError, match="header_timeout_s"):
        dataclasses.replace(config, server=dataclasses.replace(config.server, header_timeout_s=timeout)).validate()
    with pytest.raises(ConfigError, match="max_connections_per_address"):
        dataclasses.replace(config, server=dataclasses.replace(config.server, max_connections_per_address=0)).validate()
