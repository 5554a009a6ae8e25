"""A bare protocol-v1 client for server tests: raw aiohttp WebSocket, no retries, nothing hidden."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from edgevoice import protocol
from edgevoice.audio.pcm import Samples, to_pcm16
from edgevoice.config import Config
from edgevoice.engines.loaded import Engines
from edgevoice.events import ReplyAudio
from edgevoice.server import Server


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: list[ReplyAudio] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def hello(
    ws: aiohttp.ClientWebSocketResponse, rate: int = 16_000, conversation: str | None = None
) -> dict[str, Any]:
    await ws.send_str(protocol.dumps(protocol.Hello(rate, "test", conversation).to_json()))
    ready: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), 10)
    assert ready["type"] == "ready", ready
    return ready


async def stream(
    ws: aiohttp.ClientWebSocketResponse, samples: Samples, rate: int = 16_000, speed: float = 4.0, frame_ms: int = 20
) -> None:
    """Send samples as 20 ms frames, speed times faster than real time."""
    pcm = to_pcm16(samples)
    step = rate * frame_ms // 1000
    for seq, start in enumerate(range(0, len(pcm), step)):
        await ws.send_bytes(protocol.encode_client_audio(seq, pcm[start : start + step].tobytes()))
        if seq % 5 == 4:
            await asyncio.sleep(5 * frame_ms / 1000 / speed)


async def receive(ws: aiohttp.ClientWebSocketResponse, into: Received, until: str, timeout_s: float = 60) -> Received:
    """Read events and audio into `into` until an event of type `until` (or the close)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:
                into.audio.append(protocol.parse_server_audio(message.data))
            elif message.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(message.data)
                into.events.append(event)
                if event["type"] == until:
                    return into
            else:
                into.close_code = ws.close_code
                return into


def silence(seconds: float) -> Samples:
    return np.zeros(int(seconds * 16_000), dtype=np.float32)


@asynccontextmanager
async def serving_with(config: Config, engines: Engines, **server: object) -> AsyncIterator[Server]:
    """A server on 127.0.0.1, port 0, with some [server] settings changed."""
    changed = dataclasses.replace(config, server=dataclasses.replace(config.server, **server))  # type: ignore[arg-type]
    running = Server(changed, engines)
    await running.start("127.0.0.1", 0)
    try:
        yield running
    finally:
        await running.stop()
