"""The WebSocket client for tests: raw aiohttp, no retries, nothing hidden, every message read as its type.

Server messages are parsed by edgevoice.protocol.parse_server_text, so a test that reads the server
through this helper also checks that everything the server says is well formed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
import numpy as np

from edgevoice import protocol
from edgevoice.audio.pcm import Samples, to_pcm16
from edgevoice.protocol import Error, Ready, ReplyAudio, ServerMessage

M = TypeVar("M", bound=ServerMessage)


@dataclass
class Received:
    messages: list[ServerMessage] = field(default_factory=list)
    audio: list[ReplyAudio] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.messages if isinstance(m, kind)]

    @property
    def kinds(self) -> list[str]:
        return [m.kind for m in self.messages]


async def next_message(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 10) -> ServerMessage:
    """The next text message; anything else (audio, a close) fails the test."""
    message = await asyncio.wait_for(ws.receive(), timeout_s)
    assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data, message.extra)
    return protocol.parse_server_text(message.data)


async def expect(ws: aiohttp.ClientWebSocketResponse, kind: type[M], timeout_s: float = 10) -> M:
    """The next text message, which must be a `kind`."""
    message = await next_message(ws, timeout_s)
    assert isinstance(message, kind), message
    return message


async def expect_error(ws: aiohttp.ClientWebSocketResponse, code: str, timeout_s: float = 10) -> Error:
    error = await expect(ws, Error, timeout_s)
    assert error.code == code, error
    return error


async def hello(
    ws: aiohttp.ClientWebSocketResponse,
    rate: int = 16_000,
    conversation: str | None = None,
    *,
    token: str | None = None,
) -> Ready:
    """Say hello as client "test" and return the server's ready."""
    await ws.send_str(protocol.Hello(rate, "test", conversation, token=token).to_text())
    return await expect(ws, Ready)


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


async def receive(
    ws: aiohttp.ClientWebSocketResponse,
    into: Received,
    until: type[ServerMessage] | None = None,
    timeout_s: float = 60,
) -> Received:
    """Read messages and audio into `into` until a message of type `until`, or the close."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:
                into.audio.append(protocol.parse_server_audio(message.data))
            elif message.type == aiohttp.WSMsgType.TEXT:
                parsed = protocol.parse_server_text(message.data)
                into.messages.append(parsed)
                if until is not None and isinstance(parsed, until):
                    return into
            else:
                into.close_code = ws.close_code
                return into


def silence(seconds: float) -> Samples:
    return np.zeros(int(seconds * 16_000), dtype=np.float32)


def documented_server_kinds() -> set[str]:
    """The server message types docs/protocol.md's "Server to client" table lists."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = text.split("## Server to client", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
