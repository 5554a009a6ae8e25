"""One conversation turn: utterance -> transcript -> streamed reply tokens -> spoken pieces -> audio chunks.

The LLM and Piper run at once on their own threads: each piece of the reply goes to Piper as soon
as the chunker releases it, while the model keeps generating. Cancelling the task that runs a
turn stops both engines at their next token or sentence.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgevoice.audio.pcm import from_pcm16
from edgevoice.engines.llm import Message
from edgevoice.engines.loaded import Engines
from edgevoice.events import (
    Event,
    ReplyAudio,
    ReplyAudioEnd,
    ReplyAudioStart,
    ReplyText,
    Transcript,
    TurnTimings,
)
from edgevoice.speech_text import SpeechChunker

AUDIO_CHUNK_MS = 100
_PIECES_AHEAD = 8


@dataclass
class Conversation:
    """A bounded history of exchanges, rendered into chat messages for each turn."""

    system_prompt: str
    max_turns: int
    history: collections.deque[tuple[str, str]] = field(default_factory=collections.deque)

    def history_messages(self) -> list[Message]:
        """The system prompt and the exchanges remembered: every next turn's prompt starts with these."""
        messages = [Message("system", self.system_prompt)]
        for said, answered in self.history:
            messages += [Message("user", said), Message("assistant", answered)]
        return messages

    def messages(self, user_text: str) -> list[Message]:
        return [*self.history_messages(), Message("user", user_text)]

    def remember(self, user_text: str, reply: str) -> None:
        if self.max_turns == 0:
            return
        self.history.append((user_text, reply))
        while len(self.history) > self.max_turns:
            self.history.popleft()


@dataclass
class TurnResult:
    transcript: str = ""
    reply: str = ""


async def run_turn(
    engines: Engines,
    conversation: Conversation,
    *,
    turn: int,
    pcm: bytes,
    timings: TurnTimings,
    emit: Callable[[Event], None],
    result: TurnResult,
) -> None:
    """Run one turn to its end, filling result and timings as stages complete.

    The conversation is read, not changed: the caller remembers the exchange once it knows the
    turn counted (a turn started early and then dropped must leave no trace).
    """
    result.transcript = await engines.transcribe(from_pcm16(pcm))
    timings.stt_done = time.monotonic()
    emit(Transcript(turn, result.transcript))
    if not result.transcript:
        return

    messages = conversation.messages(result.transcript)
    pieces: asyncio.Queue[str | None] = asyncio.Queue(maxsize=_PIECES_AHEAD)
    # Two cores cannot run the model and the voice at full speed at once: while the first piece is
    # being voiced the model waits, so the first audio comes as soon as it can.
    llm_may_go = threading.Event()
    llm_may_go.set()
    speaker = asyncio.create_task(
        _speak(engines, turn, pieces, timings, emit, llm_may_go=llm_may_go), name=f"speak-{turn}"
    )
    speaker.add_done_callback(lambda _: llm_may_go.set())  # a voice that failed holds nothing back
    chunker = SpeechChunker(engines.config.tts.first_clause_words, engines.config.tts.first_words)
    try:
        async for delta in engines.reply(messages, llm_may_go):
            if timings.first_token is None:
                timings.first_token = time.monotonic()
            result.reply += delta
            emit(ReplyText(turn, delta))
            for piece in chunker.feed(delta):
                if speaker.done():
                    await speaker  # it failed: its error ends the turn
                if timings.first_audio is None and pieces.empty():
                    llm_may_go.clear()
                await pieces.put(piece)
        for piece in chunker.flush():
            await pieces.put(piece)
        await pieces.put(None)
        await speaker
    finally:
        llm_may_go.set()
        speaker.cancel()


async def _speak(
    engines: Engines,
    turn: int,
    pieces: asyncio.Queue[str | None],
    timings: TurnTimings,
    emit: Callable[[Event], None],
    *,
    llm_may_go: threading.Event,
) -> None:
    rate = engines.tts.sample_rate
    chunk_samples = rate * AUDIO_CHUNK_MS // 1000
    seq = 0
    while (piece := await pieces.get()) is not None:
        async for pcm in engines.speech(piece):
            for start in range(0, len(pcm), chunk_samples):
                if seq == 0:
                    timings.first_audio = time.monotonic()
                    emit(ReplyAudioStart(turn, rate))
                emit(ReplyAudio(turn, seq, rate, pcm[start : start + chunk_samples].astype("<i2").tobytes()))
                seq += 1
            llm_may_go.set()
        llm_may_go.set()
    if seq:
        timings.last_audio = time.monotonic()
        emit(ReplyAudioEnd(turn))
