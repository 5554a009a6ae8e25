"""Outbox: the bounded queue between a connection and its WebSocket, with a fake socket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator

import pytest

from edgevoice import protocol as P
from edgevoice.events import (
    Event,
    ReplyAudio,
    ReplyAudioEnd,
    ReplyAudioStart,
    Transcript,
    TurnDone,
    TurnTimings,
    to_message,
)
from edgevoice.transports import socket as connection
from edgevoice.transports.socket import OUTBOX_AUDIO_SECONDS, OUTBOX_MAX_EVENTS, Outbox
from tests.transports.fake_socket import FakeSocket

TIMEOUT_S = 5.0


@pytest.fixture
async def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
async def socket() -> FakeSocket:
    return FakeSocket()


@contextlib.asynccontextmanager
async def draining(outbox: Outbox, ws: FakeSocket) -> AsyncIterator[asyncio.Task[None]]:
    sender = asyncio.create_task(outbox.drain_into(ws))  # type: ignore[arg-type]
    try:
        yield sender
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def drain(outbox: Outbox, ws: FakeSocket) -> None:
    async with draining(outbox, ws):
        await asyncio.sleep(0)
        await outbox.drained(TIMEOUT_S)


def put(outbox: Outbox, event: Event) -> bool:
    if isinstance(event, ReplyAudio):
        outbox.send_audio(event)
        return True
    return outbox.send(to_message(event))


def _done(turn: int) -> P.TurnDone:
    return P.TurnDone(turn, "hi", "hello", False, 0, 800, {})


def audio(turn: int, seq: int, seconds: float, rate: int = 16_000) -> ReplyAudio:
    return ReplyAudio(turn, seq, rate, b"\x01\x00" * round(seconds * rate))


def turn_done(turn: int = 1, transcript: str = "hello") -> TurnDone:
    return TurnDone(turn, transcript, "Hi there.", TurnTimings(speech_end=1.0), start_ms=0, end_ms=800)


async def test_events_and_audio_go_out_in_order(outbox: Outbox, socket: FakeSocket) -> None:
    put(outbox, ReplyAudioStart(1, 22_050))
    frames = [audio(1, seq, 0.1, rate=22_050) for seq in range(3)]
    for frame in frames:
        put(outbox, frame)
    put(outbox, ReplyAudioEnd(1))
    await drain(outbox, socket)
    assert isinstance(socket.sent[0], str)
    assert socket.audio() == frames
    assert socket.kinds() == ["reply_audio_start", "reply_audio_end"]
    assert isinstance(socket.sent[-1], str)


async def test_drop_audio_removes_queued_audio_but_keeps_events(outbox: Outbox, socket: FakeSocket) -> None:
    put(outbox, Transcript(1, "what time is it"))
    put(outbox, audio(1, 0, 0.5))
    put(outbox, ReplyAudioStart(1, 16_000))
    put(outbox, audio(1, 1, 0.5))
    outbox.send(P.Interrupted(1, 900))

    outbox.drop_audio()
    await drain(outbox, socket)
    assert socket.audio() == []
    assert socket.kinds() == ["transcript", "reply_audio_start", "interrupted"]
    assert outbox.dropped_audio_s == 0.0, "audio dropped on purpose is not counted as lost"


async def test_drop_audio_with_only_audio_queued_is_drained_at_once(outbox: Outbox) -> None:
    put(outbox, audio(1, 0, 1.0))
    outbox.drop_audio()
    async with asyncio.timeout(0.5):
        await outbox.drained(TIMEOUT_S)


async def test_audio_beyond_the_bound_drops_the_oldest(outbox: Outbox, socket: FakeSocket) -> None:
    put(outbox, ReplyAudioStart(1, 16_000))
    extra = 5
    total = int(OUTBOX_AUDIO_SECONDS) + extra
    for seq in range(total):
        put(outbox, audio(1, seq, 1.0))
    put(outbox, ReplyAudioEnd(1))
    assert outbox.dropped_audio_s == pytest.approx(extra)
    assert not outbox.overflowed

    await drain(outbox, socket)
    assert [frame.seq for frame in socket.audio()] == list(range(extra, total))
    assert socket.kinds() == ["reply_audio_start", "reply_audio_end"]


async def test_audio_that_was_sent_does_not_count_against_the_bound(outbox: Outbox, socket: FakeSocket) -> None:
    async with draining(outbox, socket):
        for seq in range(int(OUTBOX_AUDIO_SECONDS) * 2):
            put(outbox, audio(1, seq, 1.0))
            await outbox.drained(TIMEOUT_S)
    assert outbox.dropped_audio_s == 0.0
    assert len(socket.audio()) == int(OUTBOX_AUDIO_SECONDS) * 2


async def test_events_beyond_the_bound_are_refused_and_not_queued(outbox: Outbox, socket: FakeSocket) -> None:
    for n in range(OUTBOX_MAX_EVENTS):
        assert outbox.send(P.ReplyText(1, str(n)))
    assert not outbox.overflowed
    assert not put(outbox, Transcript(1, "one too many"))
    assert outbox.overflowed
    assert not outbox.send(P.Bye()), "once overflowed, nothing more is queued"
    assert not put(outbox, turn_done())

    await drain(outbox, socket)
    assert len(socket.sent) == OUTBOX_MAX_EVENTS
    assert [m.delta for m in socket.texts() if isinstance(m, P.ReplyText)] == [str(n) for n in range(OUTBOX_MAX_EVENTS)]
    assert not socket.closed, "closing the slow client is the connection's job, from outside the sender"
    assert not outbox.send(P.Bye()), "a client that fell behind stays refused"


async def test_audio_still_goes_out_after_events_overflowed(outbox: Outbox, socket: FakeSocket) -> None:
    for n in range(OUTBOX_MAX_EVENTS + 1):
        outbox.send(P.ReplyText(1, str(n)))
    assert outbox.overflowed
    frame = audio(1, 0, 0.1)
    put(outbox, frame)
    await drain(outbox, socket)
    assert socket.audio() == [frame]
    assert len(socket.texts()) == OUTBOX_MAX_EVENTS


async def test_events_that_were_sent_free_their_place(outbox: Outbox, socket: FakeSocket) -> None:
    for n in range(OUTBOX_MAX_EVENTS):
        outbox.send(P.ReplyText(1, str(n)))
    await drain(outbox, socket)
    assert len(socket.sent) == OUTBOX_MAX_EVENTS
    assert outbox.send(P.Bye())
    assert not outbox.overflowed
    await drain(outbox, socket)
    assert socket.texts()[-1] == P.Bye()


async def test_a_message_after_a_write_waits_for_it_and_holds_back_what_follows(
    outbox: Outbox, socket: FakeSocket
) -> None:
    written: concurrent.futures.Future[None] = concurrent.futures.Future()
    outbox.send(P.Transcript(1, "hi"))
    outbox.send(_done(1), after=written)
    outbox.send(P.SpeechStarted(2, 900))
    async with draining(outbox, socket):
        await outbox.drained(0.3)
        assert socket.kinds() == ["transcript"], "sent before its write was done"
        written.set_result(None)
        await outbox.drained(TIMEOUT_S)
    assert socket.kinds() == ["transcript", "turn_done", "speech_started"]


async def test_a_write_that_never_finishes_holds_its_message_for_a_while_only(
    outbox: Outbox, socket: FakeSocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "AFTER_WRITE_TIMEOUT_S", 0.2)
    stuck: concurrent.futures.Future[None] = concurrent.futures.Future()
    outbox.send(_done(1), after=stuck)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with draining(outbox, socket):
        await outbox.drained(TIMEOUT_S)
    assert socket.kinds() == ["turn_done"]
    assert 0.2 <= loop.time() - started < TIMEOUT_S


async def test_drained_waits_until_the_sender_has_sent_everything(outbox: Outbox, socket: FakeSocket) -> None:
    socket.gate.clear()  # the client is slow: every send waits
    for n in range(3):
        outbox.send(P.ReplyText(1, str(n)))
    put(outbox, audio(1, 0, 0.1))
    sent_when_drained: list[int] = []

    async def wait_drained() -> None:
        await outbox.drained(TIMEOUT_S)
        sent_when_drained.append(len(socket.sent))

    async with draining(outbox, socket):
        waiter = asyncio.create_task(wait_drained())
        await asyncio.sleep(0.2)
        assert not waiter.done(), "drained() returned while the sender was still sending"
        socket.gate.set()
        async with asyncio.timeout(TIMEOUT_S):
            await waiter
    assert sent_when_drained == [4]


async def test_drained_returns_after_its_timeout_when_nothing_drains(outbox: Outbox) -> None:
    outbox.send(P.Bye())
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(TIMEOUT_S):
        await outbox.drained(0.2)
    assert loop.time() - started >= 0.2, "drained() returned with a message still queued and no sender"


async def test_drain_stops_when_the_socket_closes(outbox: Outbox, socket: FakeSocket) -> None:
    socket.closed = True
    outbox.send(P.Bye())
    async with asyncio.timeout(TIMEOUT_S):
        await outbox.drain_into(socket)  # type: ignore[arg-type]
    assert socket.sent == []
