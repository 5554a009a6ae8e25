"""One WebSocket client: protocol v1 in, a voice session in the middle, events and reply audio out.

Everything the session says goes through a bounded outbox drained by one sender task, so a
client that reads slowly never blocks the session or another client: reply audio beyond the
bound is dropped oldest first (and counted), and a client that stops reading events altogether
is closed with code 4002.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from edgevoice import __version__, protocol
from edgevoice.audio.pcm import SAMPLE_RATE, StreamResampler
from edgevoice.conversations import RESERVED_CONVERSATIONS, ConversationStore
from edgevoice.engines.loaded import Engines
from edgevoice.events import Event, ReplyAudio, TurnDone
from edgevoice.limits import FrameRate, Verdict
from edgevoice.metrics import Written
from edgevoice.protocol import Bye, Hello, Interrupt, ProtocolError
from edgevoice.session import VoiceSession

_log = logging.getLogger(__name__)
OUTBOX_AUDIO_SECONDS = 30.0
OUTBOX_MAX_EVENTS = 2000
AFTER_WRITE_TIMEOUT_S = 2.0
"""How long a turn_done waits for its row: a stuck disk must not hold the conversation up."""


@dataclass
class ClientStats:
    name: str = ""
    conversation: str = ""
    frames_received: int = 0
    frames_lost: int = 0
    bad_frames: int = 0
    rate_limited: int = 0
    """Messages dropped for coming faster than max_frames_per_second."""
    turns: int = 0


@dataclass(frozen=True)
class Limits:
    """What one client may do: messages per second, and how long it may stay silent."""

    frames_per_second: float = 100.0
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0


@dataclass(frozen=True)
class _AfterWrite:
    """A message held until a write it reports on is durable (a turn_done and its row in the turn log)."""

    text: str
    written: Written


class SocketListener:
    """The session's listener for one socket: queues what to send, estimates what the client still plays."""

    def __init__(
        self,
        on_turn_done: Callable[[TurnDone], None],
        on_overflow: Callable[[], None],
        on_event: Callable[[Event], Written | None] | None = None,
    ) -> None:
        self._outbox: collections.deque[str | _AfterWrite | tuple[bytes, float]] = collections.deque()
        """JSON text, or an audio frame with its length in seconds."""
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._audio_seconds = 0.0
        self._events = 0
        self._play_until = 0.0
        self._on_turn_done = on_turn_done
        self._on_overflow = on_overflow
        self._on_event = on_event
        """Told every event but reply audio, before a turn's end reaches on_turn_done."""
        self.dropped_audio_s = 0.0
        self.overflowed = False

    def emit(self, event: Event) -> None:
        if isinstance(event, ReplyAudio):
            seconds = len(event.pcm) / 2 / event.sample_rate
            self._play_until = max(self._play_until, time.monotonic()) + seconds
            self._queue((protocol.encode_server_audio(event), seconds))
            self._audio_seconds += seconds
            self._trim_audio()
        else:
            written = self._on_event(event) if self._on_event is not None else None
            self.send(protocol.event_to_json(event), written)
            if isinstance(event, TurnDone):
                self._on_turn_done(event)

    def send(self, message: dict[str, Any], written: Written | None = None) -> None:
        """Queue a message; with `written`, it goes out only once that write is done (or 2 s passed)."""
        if self.overflowed or self._events >= OUTBOX_MAX_EVENTS:  # the connection is being closed
            if not self.overflowed:
                self.overflowed = True
                self._on_overflow()
            return
        self._events += 1
        text = protocol.dumps(message)
        self._queue(text if written is None else _AfterWrite(text, written))

    def _queue(self, item: str | _AfterWrite | tuple[bytes, float]) -> None:
        self._outbox.append(item)
        self._drained.clear()
        self._wake.set()

    def _trim_audio(self) -> None:
        """Over the bound, the oldest queued audio goes first: the client hears less, never late."""
        while self._audio_seconds > OUTBOX_AUDIO_SECONDS:
            for index, item in enumerate(self._outbox):
                if isinstance(item, tuple):
                    del self._outbox[index]
                    self._audio_seconds -= item[1]
                    self._play_until -= item[1]
                    self.dropped_audio_s += item[1]
                    break
            else:
                self._audio_seconds = 0.0

    def drop_audio(self) -> None:
        kept = [item for item in self._outbox if not isinstance(item, tuple)]
        self._outbox.clear()
        self._outbox.extend(kept)
        if not kept:
            self._drained.set()
        self._audio_seconds = 0.0
        self._play_until = 0.0

    async def drained(self, timeout_s: float) -> None:
        """Wait (up to timeout_s) until everything queued has been handed to the socket."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._drained.wait()

    def playing(self) -> bool:
        """Whether the client is still playing reply audio, judged from how much was sent and when."""
        return time.monotonic() < self._play_until

    async def drain_into(self, ws: web.WebSocketResponse) -> None:
        """Send queued messages until cancelled or the socket closes."""
        while not ws.closed:
            if not self._outbox:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._outbox.popleft()
            if isinstance(item, _AfterWrite):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.wrap_future(item.written), AFTER_WRITE_TIMEOUT_S)
                self._events -= 1
                await ws.send_str(item.text)
            elif isinstance(item, str):
                self._events -= 1
                await ws.send_str(item)
            else:
                frame, seconds = item
                self._audio_seconds = max(0.0, self._audio_seconds - seconds)
                await ws.send_bytes(frame)


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        engines: Engines,
        store: ConversationStore,
        box_name: str,
        on_conversation: Callable[[str, Connection], None],
        *,
        observe: Callable[[str, str, Event], Written | None] | None = None,
        authorize: Callable[[str | None], ProtocolError | None] | None = None,
        limits: Limits = Limits(),
    ) -> None:
        """observe(client name, conversation id, event) is told every event but reply audio (the turn log).

        authorize, when given, is asked about the hello's token: an error refuses the connection.
        """
        self.ws = ws
        self._engines = engines
        self._store = store
        self._box_name = box_name
        self._on_conversation = on_conversation
        self._observe = observe
        self._authorize = authorize
        self.stats = ClientStats()
        self._limits = limits
        self._rate = FrameRate(limits.frames_per_second)
        self.listener = SocketListener(self._turn_done, self._overflowed, self._observed)
        self.session: VoiceSession | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._resampler: StreamResampler | None = None
        self._sample_rate = SAMPLE_RATE
        self._sequence = protocol.SequenceCounter()

    def _turn_done(self, event: TurnDone) -> None:
        self.stats.turns += 1
        if event.transcript and self.session is not None:
            self._store.save(self.stats.conversation, self.session.conversation)

    def _observed(self, event: Event) -> Written | None:
        if self._observe is None:
            return None
        return self._observe(self.stats.name, self.stats.conversation, event)

    def _overflowed(self) -> None:
        """The client stopped reading: the sender may be stuck in a send, so close from outside it."""
        self._closer = asyncio.get_running_loop().create_task(self._close_slow_client(), name="ws-close-slow")

    async def _close_slow_client(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.close(protocol.CLOSE_SLOW_CLIENT, "client stopped reading events")

    async def run(self) -> None:
        sender = self._sender = asyncio.create_task(self.listener.drain_into(self.ws), name="ws-sender")
        try:
            opened = time.monotonic()
            while not self.ws.closed:
                try:
                    # Not receive(timeout=): aiohttp restarts that after each pong, so a client that
                    # only answers heartbeats would never count as idle.
                    async with asyncio.timeout(self._wait_s(opened)):
                        message = await self.ws.receive()
                except TimeoutError:
                    await self._time_out()
                    break
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if message.type == WSMsgType.ERROR:
                    _log.info("client %s: %s", self.stats.name or "?", self.ws.exception())
                    continue
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and await self._over_rate():
                    continue
                if message.type == WSMsgType.TEXT:
                    await self._on_text(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._on_audio(message.data)
        finally:
            if self.session is not None:
                await self.session.close()
            await self._flush(sender)
            if self._closer is not None:
                await asyncio.gather(self._closer, return_exceptions=True)

    def _wait_s(self, opened: float) -> float:
        """How long the next message may take: until hello's deadline, then the idle limit."""
        if self.session is None:
            return max(0.01, opened + self._limits.hello_timeout_s - time.monotonic())
        return self._limits.idle_timeout_s

    async def _time_out(self) -> None:
        if self.session is None:
            await self.close(protocol.CLOSE_POLICY, "no hello")
        else:
            _log.info("client %s: silent for %.0f s, closing", self.stats.name, self._limits.idle_timeout_s)
            await self.close(protocol.CLOSE_GOING_AWAY, "idle")

    async def _over_rate(self) -> bool:
        """Whether to drop this message: the client sends faster than it may (and if it keeps on, close)."""
        verdict = self._rate.feed()
        if verdict is Verdict.ALLOW:
            return False
        self.stats.rate_limited += 1
        if verdict is Verdict.CLOSE:
            _log.warning("client %s: flooding, closing", self.stats.name or "?")
            await self._fail(
                ProtocolError("rate_limited", "too many messages for too long", close_code=protocol.CLOSE_POLICY)
            )
        elif self._rate.spell_started:
            limit = self._limits.frames_per_second
            self.listener.send(
                protocol.error_message(
                    ProtocolError("rate_limited", f"over {limit:g} messages per second: messages are dropped")
                )
            )
        return True

    async def _flush(self, sender: asyncio.Task[None]) -> None:
        """Give queued messages (a final error, bye) a moment to go out before the socket closes."""
        if not self.ws.closed and not sender.done():
            await self.listener.drained(2.0)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode()[:120])

    async def _fail(self, err: ProtocolError) -> None:
        self.listener.send(protocol.error_message(err))
        if err.close_code is not None:
            await self._flush_then_close(err.close_code, err.message)

    async def _flush_then_close(self, code: int, reason: str) -> None:
        await self.listener.drained(2.0)
        await self.close(code, reason)

    async def _on_text(self, text: str) -> None:
        try:
            message = protocol.parse_client_text(text)
        except ProtocolError as err:
            await self._fail(err)
            return
        if isinstance(message, Hello):
            await self._hello(message)
        elif isinstance(message, Interrupt):
            if self.session is not None:
                self.session.interrupt()
        elif isinstance(message, Bye):
            self.listener.send({"type": "bye"})
            await self._flush_then_close(protocol.CLOSE_NORMAL, "bye")

    async def _hello(self, hello: Hello) -> None:
        if self.session is not None:
            await self._fail(ProtocolError("bad_message", "hello was already received on this connection"))
            return
        if self._authorize is not None:
            refused = self._authorize(hello.token)
            if refused is not None:
                await self._fail(refused)
                return
            self._authorize = None
        if hello.conversation in RESERVED_CONVERSATIONS:
            await self._fail(
                ProtocolError(
                    "bad_conversation",
                    f"conversation {hello.conversation!r} belongs to the box itself",
                    close_code=protocol.CLOSE_PROTOCOL_ERROR,
                )
            )
            return
        opened = self._store.open(hello.conversation)
        self.stats.name = hello.client or "unnamed"
        self.stats.conversation = opened.id
        self._on_conversation(opened.id, self)
        self._sample_rate = hello.sample_rate
        self._resampler = StreamResampler(hello.sample_rate, SAMPLE_RATE)
        self.session = VoiceSession(self._engines, self.listener, opened.conversation)
        self.listener.send(
            protocol.ready_message(
                conversation=opened.id,
                resumed=opened.resumed,
                sample_rate=hello.sample_rate,
                box=self._box_name,
                version=__version__,
            )
        )
        _log.info("client %s: conversation %s (%s)", self.stats.name, opened.id, "resumed" if opened.resumed else "new")

    async def _on_audio(self, data: bytes) -> None:
        if self.session is None or self._resampler is None:
            await self._fail(
                ProtocolError("no_hello", "send hello before audio", close_code=protocol.CLOSE_PROTOCOL_ERROR)
            )
            return
        try:
            seq, pcm = protocol.parse_client_audio(data, self._sample_rate)
        except ProtocolError as err:
            self.stats.bad_frames += 1
            await self._fail(err)
            return
        self.stats.frames_received += 1
        missing = self._sequence.see(seq)
        if missing:
            self.stats.frames_lost = self._sequence.lost
            self.listener.send(protocol.gap_message(missing, self._sequence))
        self.session.feed(self._resampler.feed(pcm))
