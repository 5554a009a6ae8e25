"""Sockets that never say hello cannot keep a paired client out: they wait in a pool of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import pytest

from edgevoice import protocol
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.protocol import Ready
from edgevoice.server.access.peers import peer_key
from edgevoice.server.access.pending import PendingPool
from edgevoice.server.app import Server
from tests.support.daemon import serving_with
from tests.support.wire import expect, hello


def test_peers_are_ipv4_addresses_and_ipv6_slash_64s() -> None:
    assert peer_key("192.168.1.20") == "192.168.1.20"
    assert peer_key("2001:db8:1:2:aaaa::1") == peer_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert peer_key("2001:db8:1:3::1") != peer_key("2001:db8:1:2::1")
    assert peer_key("::ffff:10.0.0.2") == "10.0.0.2"
    assert peer_key("fe80::1%eth0") == "fe80::/64"
    assert peer_key("unknown") == "unknown"


def test_the_pool_pushes_out_the_oldest_of_the_same_peer_first() -> None:
    pool: PendingPool[str] = PendingPool(total=4, per_address=2)
    assert pool.add("a1", "10.0.0.1") == []
    assert pool.add("b1", "10.0.0.2") == []
    assert pool.add("a2", "10.0.0.1") == []
    assert pool.add("a3", "10.0.0.1") == ["a1"]  # its peer's oldest, not b1
    assert pool.add("c1", "10.0.0.3") == []
    assert pool.add("d1", "10.0.0.4") == ["b1"]  # full: the oldest of all
    assert len(pool) == 4
    assert pool.pushed_out == 2
    assert pool.remove("a2")
    assert not pool.remove("a2")
    assert "a3" in pool
    assert "a1" not in pool
    with pytest.raises(ValueError, match="at least one"):
        PendingPool[str](total=0, per_address=1)


async def _silent_sockets(
    stack: AsyncExitStack, server: Server, addresses: list[str], each: int
) -> list[aiohttp.ClientWebSocketResponse]:
    sockets = []
    for address in addresses:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0))
        )
        for _ in range(each):
            sockets.append(await stack.enter_async_context(http.ws_connect(server.ws_url)))
    return sockets


@pytest.fixture
async def guarded(server_config: Config, engines: Engines) -> AsyncIterator[Server]:
    async with serving_with(
        server_config,
        engines,
        auth="token",
    ) as server:
        yield server


@pytest.mark.slow
async def test_sockets_that_never_say_hello_do_not_refuse_a_paired_client(guarded: Server) -> None:
    """Eight silent sockets from two addresses (max_clients is 8) and then some: the paired client is served."""
    token = guarded.tokens.current()
    async with AsyncExitStack() as stack:
        silent = await _silent_sockets(stack, guarded, ["127.0.0.2", "127.0.0.3"], 4)
        for _ in range(5):
            async with aiohttp.ClientSession() as http, http.ws_connect(guarded.ws_url) as ws:
                assert isinstance(await hello(ws, token=token), Ready)
                await ws.send_str(protocol.Bye().to_text())
        assert not any(ws.closed for ws in silent)  # the pool had room for all of them


@pytest.mark.slow
async def test_a_full_pool_closes_the_oldest_waiting_socket(guarded: Server) -> None:
    per_address = guarded.config.server.max_pending_per_address
    async with AsyncExitStack() as stack:
        silent = await _silent_sockets(stack, guarded, ["127.0.0.2"], per_address + 1)
        oldest = silent[0]
        closing = await asyncio.wait_for(oldest.receive(), 10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert oldest.close_code == protocol.CLOSE_POLICY
        assert "waiting" in closing.extra
        assert not any(ws.closed for ws in silent[1:])


@pytest.mark.slow
async def test_max_clients_counts_sockets_once_their_hello_is_authorised(
    server_config: Config, engines: Engines
) -> None:
    async with (
        serving_with(server_config, engines, auth="token", max_clients=1) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as silent,
        http.ws_connect(server.ws_url) as first,
    ):
        token = server.tokens.current()
        await hello(first, token=token)
        async with http.ws_connect(server.ws_url) as second:
            await second.send_str(protocol.Hello(16_000, "test", token=token).to_text())
            closing = await asyncio.wait_for(second.receive(), 10)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert second.close_code == protocol.CLOSE_TRY_LATER
        assert not silent.closed
        await first.send_str(protocol.Bye().to_text())
        await expect(first, protocol.Bye)
