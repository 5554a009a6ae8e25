"""Raw TCP clients for the HTTP guard's tests: sockets from a chosen loopback address, and a slowloris."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress


async def open_from(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(5):
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def trickle_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit_s: float) -> float:
    """Send a request line and one header, then a header byte every 100 ms; seconds until the server closed."""
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = asyncio.ensure_future(reader.read())
    try:
        while not closed.done() and time.monotonic() - started < limit_s:
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait([closed], timeout=0.1)
        async with asyncio.timeout(1):
            with suppress(ConnectionError):  # closed with unread bytes: a reset
                assert await closed == b""
        return time.monotonic() - started
    finally:
        closed.cancel()
        writer.close()
