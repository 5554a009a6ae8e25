"""Connection as its session's listener: the server's work on each event first, then the outbox, one way."""

from __future__ import annotations

import asyncio
import concurrent.futures
import types
from pathlib import Path

import pytest

from edgevoice.config import load_config
from edgevoice.events import (
    Error,
    Event,
    Interrupted,
    ReplyAudio,
    ReplyAudioStart,
    Transcript,
    TurnDone,
    TurnTimings,
)
from edgevoice.server.conversations import ConversationStore
from edgevoice.server.turnlog import Written
from edgevoice.transports.socket import OUTBOX_AUDIO_SECONDS, OUTBOX_MAX_EVENTS, Connection
from tests.transports.fake_socket import FakeSocket

TIMEOUT_S = 5.0
CONFIG = load_config(None, environ={})


class TurnLog:
    """Stands in for the server's observe(): records what it was told, and holds each turn's row until wrote()."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.rows: list[concurrent.futures.Future[None]] = []

    def observe(self, _client: str, _conversation: str, event: Event) -> Written | None:
        self.seen.append(event)
        if not isinstance(event, TurnDone):
            return None
        row: Written = concurrent.futures.Future()
        self.rows.append(row)
        return row

    def wrote(self) -> None:
        for row in self.rows:
            if not row.done():
                row.set_result(None)


@pytest.fixture
def log() -> TurnLog:
    return TurnLog()


@pytest.fixture
async def socket() -> FakeSocket:
    return FakeSocket()


@pytest.fixture
async def connection(socket: FakeSocket, log: TurnLog, tmp_path: Path) -> Connection:
    store = ConversationStore(tmp_path, CONFIG.llm.system_prompt, CONFIG.llm.history_turns, 4)
    engines = types.SimpleNamespace(config=CONFIG)
    return Connection(socket, engines, store, "box", lambda _id, _connection: None, observe=log.observe)  # type: ignore[arg-type]


def audio(turn: int, seq: int, seconds: float, rate: int = 16_000) -> ReplyAudio:
    return ReplyAudio(turn, seq, rate, b"\x01\x00" * round(seconds * rate))


def turn_done(turn: int = 1) -> TurnDone:
    return TurnDone(turn, "what time is it", "Noon.", TurnTimings(speech_end=1.0), start_ms=0, end_ms=800)


async def sent_out(connection: Connection, socket: FakeSocket) -> None:
    sender = asyncio.create_task(connection.outbox.drain_into(socket))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0)
        await connection.outbox.drained(TIMEOUT_S)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def test_a_turn_done_goes_out_once_its_row_is_written(
    connection: Connection, socket: FakeSocket, log: TurnLog
) -> None:
    connection.emit(Transcript(1, "what time is it"))
    connection.emit(turn_done())
    connection.emit(Transcript(2, "and tomorrow"))
    assert log.seen == [Transcript(1, "what time is it"), turn_done(), Transcript(2, "and tomorrow")]
    assert connection.stats.turns == 1
    sender = asyncio.create_task(connection.outbox.drain_into(socket))  # type: ignore[arg-type]
    try:
        await connection.outbox.drained(0.3)
        assert socket.kinds() == ["transcript"], "turn_done went out before its row was written"
        log.wrote()
        await connection.outbox.drained(TIMEOUT_S)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert socket.kinds() == ["transcript", "turn_done", "transcript"]


async def test_reply_audio_is_not_observed_and_interrupted_drops_what_is_queued(
    connection: Connection, socket: FakeSocket, log: TurnLog
) -> None:
    connection.emit(ReplyAudioStart(1, 16_000))
    connection.emit(audio(1, 0, 0.5))
    connection.emit(Interrupted(1, 900))
    connection.emit(audio(2, 0, 0.1))
    assert log.seen == [ReplyAudioStart(1, 16_000), Interrupted(1, 900)]
    await sent_out(connection, socket)
    assert socket.kinds() == ["reply_audio_start", "interrupted"]
    assert [(frame.turn, frame.seq) for frame in socket.audio()] == [(2, 0)], "audio after the interrupt plays"
    assert connection.stats.dropped_audio_s == 0.0


async def test_audio_dropped_for_a_slow_client_is_reported(connection: Connection) -> None:
    for seq in range(int(OUTBOX_AUDIO_SECONDS) + 3):
        connection.emit(audio(1, seq, 1.0))
    assert connection.stats.dropped_audio_s == pytest.approx(3.0)


async def test_a_client_that_stops_reading_is_closed_with_4002_once(
    connection: Connection, socket: FakeSocket, log: TurnLog
) -> None:
    for n in range(OUTBOX_MAX_EVENTS + 1):
        connection.emit(Transcript(1, str(n)))
    connection.emit(Error("too late", "turn_failed"))
    connection.emit(turn_done())
    assert len(log.seen) == OUTBOX_MAX_EVENTS + 3, "the server still sees what the client is not sent"
    assert connection.stats.turns == 1
    async with asyncio.timeout(TIMEOUT_S):
        await socket.closing.wait()
    assert socket.close_code == 4002
    await asyncio.sleep(0.05)
    assert socket.closes == 1, "closed more than once"
    assert socket.sent == []
