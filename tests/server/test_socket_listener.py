"""SocketListener: the bounded outbox between a voice session and one WebSocket, with a fake socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edgevoice import connection, protocol
from edgevoice.connection import OUTBOX_AUDIO_SECONDS, OUTBOX_MAX_EVENTS, SocketListener
from edgevoice.events import Error, ReplyAudio, ReplyAudioEnd, ReplyAudioStart, Transcript, TurnDone, TurnTimings

TIMEOUT_S = 5.0


class FakeSocket:
    """What drain_into needs of a web.WebSocketResponse; records what was sent."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[str | bytes] = []
        self.close_code: int | None = None

    async def send_str(self, data: str) -> None:
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, *, code: int, message: bytes = b"") -> None:
        self.closed = True
        self.close_code = code

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.sent if isinstance(item, str)]

    def audio(self) -> list[ReplyAudio]:
        return [protocol.parse_server_audio(item) for item in self.sent if isinstance(item, bytes)]


class FakeClock:
    """Stands in for the time module inside edgevoice.connection only: the event loop keeps real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(connection, "time", fake)
    return fake


@pytest.fixture
def done() -> list[TurnDone]:
    return []


@pytest.fixture
def overflows() -> list[None]:
    """One entry per call of the listener's on_overflow."""
    return []


@pytest.fixture
async def listener(done: list[TurnDone], overflows: list[None]) -> SocketListener:
    return SocketListener(done.append, lambda: overflows.append(None))


@pytest.fixture
async def socket() -> FakeSocket:
    return FakeSocket()


@contextlib.asynccontextmanager
async def draining(listener: SocketListener, ws: FakeSocket) -> AsyncIterator[asyncio.Task[None]]:
    sender = asyncio.create_task(listener.drain_into(ws))  # type: ignore[arg-type]
    try:
        yield sender
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def drain(listener: SocketListener, ws: FakeSocket) -> None:
    async with draining(listener, ws):
        await asyncio.sleep(0)
        await listener.drained(TIMEOUT_S)


def audio(turn: int, seq: int, seconds: float, rate: int = 16_000) -> ReplyAudio:
    return ReplyAudio(turn, seq, rate, b"\x01\x00" * round(seconds * rate))


def turn_done(turn: int = 1, transcript: str = "hello") -> TurnDone:
    return TurnDone(turn, transcript, "Hi there.", TurnTimings(speech_end=1.0), start_ms=0, end_ms=800)


async def test_reply_audio_is_playing_for_about_its_duration(listener: SocketListener, clock: FakeClock) -> None:
    assert not listener.playing()
    for seq in range(3):
        listener.emit(audio(1, seq, 0.1, rate=22_050))
    clock.now += 0.29
    assert listener.playing()
    clock.now += 0.02
    assert not listener.playing()


async def test_audio_after_a_pause_plays_from_now(listener: SocketListener, clock: FakeClock) -> None:
    listener.emit(audio(1, 0, 0.5))
    clock.now += 2.0
    assert not listener.playing()
    listener.emit(audio(1, 1, 0.2))
    clock.now += 0.19
    assert listener.playing()
    clock.now += 0.02
    assert not listener.playing()


async def test_playing_follows_the_real_clock(listener: SocketListener) -> None:
    listener.emit(audio(1, 0, 0.2))
    assert listener.playing()
    await asyncio.sleep(0.4)
    assert not listener.playing()


async def test_events_and_audio_go_out_in_order(listener: SocketListener, socket: FakeSocket) -> None:
    listener.emit(ReplyAudioStart(1, 22_050))
    frames = [audio(1, seq, 0.1, rate=22_050) for seq in range(3)]
    for frame in frames:
        listener.emit(frame)
    listener.emit(ReplyAudioEnd(1))
    await drain(listener, socket)
    assert isinstance(socket.sent[0], str)
    assert socket.audio() == frames
    assert [m["type"] for m in socket.texts()] == ["reply_audio_start", "reply_audio_end"]
    assert isinstance(socket.sent[-1], str)


async def test_drop_audio_removes_queued_audio_but_keeps_events(
    listener: SocketListener, socket: FakeSocket, clock: FakeClock
) -> None:
    listener.emit(Transcript(1, "what time is it"))
    listener.emit(audio(1, 0, 0.5))
    listener.emit(ReplyAudioStart(1, 16_000))
    listener.emit(audio(1, 1, 0.5))
    listener.send({"type": "interrupted", "turn": 1, "at_ms": 900})
    assert listener.playing()

    listener.drop_audio()
    assert not listener.playing()
    await drain(listener, socket)
    assert socket.audio() == []
    assert [m["type"] for m in socket.texts()] == ["transcript", "reply_audio_start", "interrupted"]
    assert listener.dropped_audio_s == 0.0, "audio dropped on purpose is not counted as lost"


async def test_drop_audio_with_only_audio_queued_is_drained_at_once(listener: SocketListener) -> None:
    listener.emit(audio(1, 0, 1.0))
    listener.drop_audio()
    async with asyncio.timeout(0.5):
        await listener.drained(TIMEOUT_S)


async def test_audio_beyond_the_bound_drops_the_oldest(listener: SocketListener, socket: FakeSocket) -> None:
    listener.emit(ReplyAudioStart(1, 16_000))
    extra = 5
    total = int(OUTBOX_AUDIO_SECONDS) + extra
    for seq in range(total):
        listener.emit(audio(1, seq, 1.0))
    listener.emit(ReplyAudioEnd(1))
    assert listener.dropped_audio_s == pytest.approx(extra)
    assert not listener.overflowed

    await drain(listener, socket)
    assert [frame.seq for frame in socket.audio()] == list(range(extra, total))
    assert [m["type"] for m in socket.texts()] == ["reply_audio_start", "reply_audio_end"]


async def test_audio_that_was_sent_does_not_count_against_the_bound(
    listener: SocketListener, socket: FakeSocket
) -> None:
    async with draining(listener, socket):
        for seq in range(int(OUTBOX_AUDIO_SECONDS) * 2):
            listener.emit(audio(1, seq, 1.0))
            await listener.drained(TIMEOUT_S)
    assert listener.dropped_audio_s == 0.0
    assert len(socket.audio()) == int(OUTBOX_AUDIO_SECONDS) * 2


async def test_events_beyond_the_bound_overflow_once_and_are_not_queued(
    listener: SocketListener, socket: FakeSocket, overflows: list[None], done: list[TurnDone]
) -> None:
    for n in range(OUTBOX_MAX_EVENTS):
        listener.send({"type": "reply_text", "turn": 1, "delta": str(n)})
    assert not listener.overflowed
    assert overflows == []
    listener.emit(Transcript(1, "one too many"))
    assert listener.overflowed
    assert len(overflows) == 1

    listener.send({"type": "bye"})
    listener.emit(turn_done())
    assert len(overflows) == 1, "on_overflow is called exactly once"
    assert listener.overflowed
    assert len(done) == 1, "a finished turn is still reported to the connection"

    await drain(listener, socket)
    assert len(socket.sent) == OUTBOX_MAX_EVENTS
    assert [m["delta"] for m in socket.texts()] == [str(n) for n in range(OUTBOX_MAX_EVENTS)]
    assert not socket.closed, "closing the slow client is the connection's job, from outside the sender"
    assert socket.close_code is None
    assert len(overflows) == 1


async def test_audio_still_goes_out_after_events_overflowed(
    listener: SocketListener, socket: FakeSocket, overflows: list[None]
) -> None:
    for n in range(OUTBOX_MAX_EVENTS + 1):
        listener.send({"type": "reply_text", "turn": 1, "delta": str(n)})
    assert len(overflows) == 1
    frame = audio(1, 0, 0.1)
    listener.emit(frame)
    await drain(listener, socket)
    assert socket.audio() == [frame]
    assert len(socket.texts()) == OUTBOX_MAX_EVENTS
    assert len(overflows) == 1


async def test_events_that_were_sent_free_their_place(listener: SocketListener, socket: FakeSocket) -> None:
    for n in range(OUTBOX_MAX_EVENTS):
        listener.send({"type": "reply_text", "turn": 1, "delta": str(n)})
    await drain(listener, socket)
    assert len(socket.sent) == OUTBOX_MAX_EVENTS
    listener.send({"type": "bye"})
    assert not listener.overflowed
    await drain(listener, socket)
    assert socket.texts()[-1] == {"type": "bye"}


async def test_turn_done_is_sent_and_reported(
    listener: SocketListener, socket: FakeSocket, done: list[TurnDone]
) -> None:
    event = turn_done(2, "what time is it")
    listener.emit(Transcript(2, "what time is it"))
    assert done == []
    listener.emit(event)
    assert done == [event]
    await drain(listener, socket)
    sent = socket.texts()
    assert [m["type"] for m in sent] == ["transcript", "turn_done"]
    assert sent[1]["turn"] == 2
    assert sent[1]["transcript"] == "what time is it"


async def test_busy_error_goes_out_as_busy(listener: SocketListener, socket: FakeSocket) -> None:
    listener.emit(Error("the speech engine is busy", "busy"))
    await drain(listener, socket)
    assert socket.texts() == [{"type": "busy", "message": "the speech engine is busy"}]


async def test_drained_returns_after_its_timeout_when_nothing_drains(listener: SocketListener) -> None:
    listener.send({"type": "bye"})
    async with asyncio.timeout(TIMEOUT_S):
        await listener.drained(0.05)


async def test_drain_stops_when_the_socket_closes(listener: SocketListener, socket: FakeSocket) -> None:
    socket.closed = True
    listener.send({"type": "bye"})
    async with asyncio.timeout(TIMEOUT_S):
        await listener.drain_into(socket)  # type: ignore[arg-type]
    assert socket.sent == []
