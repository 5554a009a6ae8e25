"""What a connection and its outbox use of aiohttp's WebSocketResponse, recording what was sent."""

from __future__ import annotations

import asyncio

from edgevoice import protocol
from edgevoice.events import ReplyAudio
from edgevoice.protocol import ServerMessage


class FakeSocket:
    """Sends go through at once unless `gate` is cleared: then each waits until it is set again."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[str | bytes] = []
        self.close_code: int | None = None
        self.closing = asyncio.Event()
        self.closes = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_str(self, data: str) -> None:
        await self.gate.wait()
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        await self.gate.wait()
        self.sent.append(data)

    async def close(self, *, code: int, message: bytes = b"") -> None:
        self.closed = True
        self.close_code = code
        self.closing.set()
        self.closes += 1

    def texts(self) -> list[ServerMessage]:
        return [protocol.parse_server_text(item) for item in self.sent if isinstance(item, str)]

    def kinds(self) -> list[str]:
        return [message.kind for message in self.texts()]

    def audio(self) -> list[ReplyAudio]:
        return [protocol.parse_server_audio(item) for item in self.sent if isinstance(item, bytes)]
