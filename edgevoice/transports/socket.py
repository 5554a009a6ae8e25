"""One WebSocket client: protocol v1 in, a voice session in the middle, events and reply audio out.

The connection is its session's listener: each event does what the server needs first (the turn
log sees it, a finished turn's conversation is saved), then goes to a bounded outbox drained by
one sender task, so a client that reads slowly never blocks the session or another client: reply
audio beyond the bound is dropped oldest first (and counted in ClientStats), and a client that
stops reading events altogether is closed with code 4002.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from edgevoice import __version__, protocol
from edgevoice.audio.pcm import SAMPLE_RATE, StreamResampler
from edgevoice.engines.engines import Engines
from edgevoice.events import Event, Interrupted, ReplyAudio, TurnDone, to_message
from edgevoice.protocol import Bye, Hello, Interrupt, ProtocolError, ServerMessage
from edgevoice.server.access.limits import FrameRate, Verdict
from edgevoice.server.conversations import RESERVED_CONVERSATIONS, ConversationStore
from edgevoice.server.turnlog import Written
from edgevoice.session import VoiceSession
from edgevoice.skills.box import BoxSkills

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
    dropped_audio_s: float = 0.0
    """Reply audio dropped, oldest first, because the client read it more slowly than it came."""


MAX_NAME_CHARS = 64


def printable_name(name: str | None) -> str:
    """A client's name as the box shows and logs it: printable characters only (no newline or escape
    to forge a journal line or paint a terminal), at most MAX_NAME_CHARS; "unnamed" when none is left."""
    kept = "".join(char for char in name or "" if char.isprintable())[:MAX_NAME_CHARS]
    return kept or "unnamed"


@dataclass(frozen=True)
class Limits:
    """What one client may do: messages per second, and how long it may stay silent."""

    frames_per_second: float = 100.0
    hello_timeout_s: float = 5.0
    idle_timeout_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    """What messages per second are counted on: a test may give its client's own time."""


@dataclass(frozen=True)
class _AfterWrite:
    """A message held until a write it reports on is durable (a turn_done and its row in the turn log)."""

    text: str
    written: Written


@dataclass(frozen=True)
class _Audio:
    frame: bytes
    seconds: float


class Outbox:
    """What goes to one client, in order: queued without blocking, bounded, and sent by one task."""

    def __init__(self) -> None:
        self._items: collections.deque[str | _AfterWrite | _Audio] = collections.deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._audio_seconds = 0.0
        self._events = 0
        self.dropped_audio_s = 0.0
        """Audio dropped because the bound was reached (not audio dropped on purpose by drop_audio)."""
        self.overflowed = False
        """Too many messages were waiting: the client has stopped reading, and nothing more is queued."""

    def send(self, message: ServerMessage, after: Written | None = None) -> bool:
        """Queue a message; with `after`, it goes out only once that write is done (or 2 s passed).

        False when the client has fallen too far behind to take it (it is not queued, nor is any later
        message): the connection is to be closed.
        """
        if self.overflowed or self._events >= OUTBOX_MAX_EVENTS:
            self.overflowed = True
            return False
        self._events += 1
        text = message.to_text()
        self._queue(text if after is None else _AfterWrite(text, after))
        return True

    def send_audio(self, event: ReplyAudio) -> None:
        """Queue reply audio; over the bound, the oldest queued audio goes first: the client hears less, never late."""
        seconds = len(event.pcm) / 2 / event.sample_rate
        self._queue(_Audio(protocol.encode_server_audio(event), seconds))
        self._audio_seconds += seconds
        while self._audio_seconds > OUTBOX_AUDIO_SECONDS:
            for index, item in enumerate(self._items):
                if isinstance(item, _Audio):
                    del self._items[index]
                    self._audio_seconds -= item.seconds
                    self.dropped_audio_s += item.seconds
                    break
            else:
                self._audio_seconds = 0.0

    def drop_audio(self) -> None:
        """Forget the reply audio not sent yet (the reply was interrupted); messages stay."""
        kept = [item for item in self._items if not isinstance(item, _Audio)]
        self._items.clear()
        self._items.extend(kept)
        if not kept:
            self._drained.set()
        self._audio_seconds = 0.0

    def _queue(self, item: str | _AfterWrite | _Audio) -> None:
        self._items.append(item)
        self._drained.clear()
        self._wake.set()

    async def drained(self, timeout_s: float) -> None:
        """Wait (up to timeout_s) until everything queued has been handed to the socket."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._drained.wait()

    async def drain_into(self, ws: web.WebSocketResponse) -> None:
        """Send queued messages until cancelled or the socket closes."""
        while not ws.closed:
            if not self._items:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._items.popleft()
            if isinstance(item, _AfterWrite):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.wrap_future(item.written), AFTER_WRITE_TIMEOUT_S)
                self._events -= 1
                await ws.send_str(item.text)
            elif isinstance(item, str):
                self._events -= 1
                await ws.send_str(item)
            else:
                self._audio_seconds = max(0.0, self._audio_seconds - item.seconds)
                await ws.send_bytes(item.frame)


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
        admit: Callable[[Connection], str | None] | None = None,
        owner: str = "",
        limits: Limits = Limits(),
        skills: BoxSkills | None = None,
    ) -> None:
        """observe(client name, conversation id, event) is told every event but reply audio (the turn log).

        authorize, when given, is asked about the hello's token: an error refuses the connection.
        skills: the box's, answered before the model; the conversation's timers ring on this connection.
        admit, when given, is asked once the hello is authorised whether the box has room for one
        more client: a reason refuses the connection (1013).
        """
        self.ws = ws
        self._engines = engines
        self._store = store
        self._box_name = box_name
        self._on_conversation = on_conversation
        self._observe = observe
        self._authorize = authorize
        self._admit = admit
        self._owner = owner
        """The paired device this connection speaks for: its conversations are its own."""
        self.stats = ClientStats()
        self._limits = limits
        self._skills = skills
        self._rate = FrameRate(limits.frames_per_second, clock=limits.clock)
        self.outbox = Outbox()
        self.session: VoiceSession | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._resampler: StreamResampler | None = None
        self._sample_rate = SAMPLE_RATE
        self._sequence = protocol.SequenceCounter()

    def emit(self, event: Event) -> None:
        """An event of the session: what the server needs of it first, then out to the client."""
        if isinstance(event, ReplyAudio):
            self.outbox.send_audio(event)
            self.stats.dropped_audio_s = self.outbox.dropped_audio_s
            return
        written = None
        if self._observe is not None:
            written = self._observe(self.stats.name, self.stats.conversation, event)
        if isinstance(event, TurnDone):
            self.stats.turns += 1
            if event.transcript and self.session is not None:
                self._store.save(self.stats.conversation, self.session.conversation, self._owner)
        elif isinstance(event, Interrupted):
            self.outbox.drop_audio()
        self._send(to_message(event), written)

    def _send(self, message: ServerMessage, after: Written | None = None) -> None:
        if not self.outbox.send(message, after) and self._closer is None:
            # The client stopped reading: the sender may be stuck in a send, so close from outside it.
            self._closer = asyncio.get_running_loop().create_task(self._close_slow_client(), name="ws-close-slow")

    async def _close_slow_client(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.close(protocol.CLOSE_SLOW_CLIENT, "client stopped reading events")

    async def run(self) -> None:
        sender = self._sender = asyncio.create_task(self.outbox.drain_into(self.ws), name="ws-sender")
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
                    _log.info("client %r: %s", self.stats.name or "?", self.ws.exception())
                    continue
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and await self._over_rate():
                    continue
                if message.type == WSMsgType.TEXT:
                    await self._on_text(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._on_audio(message.data)
        finally:
            if self.session is not None:
                if self._skills is not None:
                    self._skills.ringer.leave(self.stats.conversation, self.session)
                await self.session.close()
            await self._flush(sender)
            if self.stats.dropped_audio_s:
                _log.info(
                    "client %s read too slowly: %.1f s of reply audio dropped",
                    self.stats.name,
                    self.stats.dropped_audio_s,
                )
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
            _log.info("client %r: silent for %.0f s, closing", self.stats.name, self._limits.idle_timeout_s)
            await self.close(protocol.CLOSE_GOING_AWAY, "idle")

    async def _over_rate(self) -> bool:
        """Whether to drop this message: the client sends faster than it may (and if it keeps on, close)."""
        verdict = self._rate.feed()
        if verdict is Verdict.ALLOW:
            return False
        self.stats.rate_limited += 1
        if verdict is Verdict.CLOSE:
            _log.warning("client %r: flooding, closing", self.stats.name or "?")
            await self._fail(
                ProtocolError("rate_limited", "too many messages for too long", close_code=protocol.CLOSE_POLICY)
            )
        elif self._rate.spell_started:
            limit = self._limits.frames_per_second
            self._send(
                protocol.Error.of(
                    ProtocolError("rate_limited", f"over {limit:g} messages per second: messages are dropped")
                )
            )
        return True

    async def _flush(self, sender: asyncio.Task[None]) -> None:
        """Give queued messages (a final error, bye) a moment to go out before the socket closes."""
        if not self.ws.closed and not sender.done():
            await self.outbox.drained(2.0)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode()[:120])

    async def _fail(self, err: ProtocolError) -> None:
        self._send(protocol.Error.of(err))
        if err.close_code is not None:
            await self._flush_then_close(err.close_code, err.message)

    async def _flush_then_close(self, code: int, reason: str) -> None:
        await self.outbox.drained(2.0)
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
            self._send(Bye())
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
        if self._admit is not None:
            refusal = self._admit(self)
            if refusal is not None:
                await self.close(protocol.CLOSE_TRY_LATER, refusal)
                return
            self._admit = None
        if hello.conversation in RESERVED_CONVERSATIONS:
            await self._fail(
                ProtocolError(
                    "bad_conversation",
                    f"conversation {hello.conversation!r} belongs to the box itself",
                    close_code=protocol.CLOSE_PROTOCOL_ERROR,
                )
            )
            return
        opened = self._store.open(hello.conversation, self._owner)
        self.stats.name = printable_name(hello.client)
        self.stats.conversation = opened.id
        self._on_conversation(opened.id, self)
        self._sample_rate = hello.sample_rate
        self._resampler = StreamResampler(hello.sample_rate, SAMPLE_RATE)
        skills = None if self._skills is None else self._skills.for_conversation(opened.id)
        self.session = VoiceSession(self._engines, self, opened.conversation, skills=skills)
        self._send(
            protocol.Ready.of(
                conversation=opened.id,
                resumed=opened.resumed,
                sample_rate=hello.sample_rate,
                box=self._box_name,
                version=__version__,
            )
        )
        _log.info("client %r: conversation %s (%s)", self.stats.name, opened.id, "resumed" if opened.resumed else "new")
        if self._skills is not None:
            self._skills.ringer.join(opened.id, self.session)  # after ready: a ring it missed follows it

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
            self._send(self._sequence.gap(missing))
        self.session.feed(self._resampler.feed(pcm))
