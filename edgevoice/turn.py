"""One conversation turn: utterance -> transcript -> streamed reply tokens -> spoken pieces -> audio chunks.

A transcript a skill answers (the time, a timer, "stop", the shopping list: edgevoice.skills) is
answered by the skill's text, spoken the same way, and the model is not asked. A skill that changes
things (it sets a timer) answers only once the turn counts: a turn started early waits until its
end is confirmed. One that only says something (the time) answers at once, like the model. Should
the speaker then go on ("Set a timer for ten minutes ... for the pasta"), the session takes back
what the skill changed (result.undo) and the whole sentence's turn answers anew.

The LLM and Piper run at once on their own threads: each piece of the reply goes to Piper as soon
as the chunker releases it, while the model keeps generating. Cancelling the task that runs a
turn stops both engines at their next token or sentence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from edgevoice.audio.pcm import from_pcm16
from edgevoice.conversation import Conversation
from edgevoice.engines.engines import Engines
from edgevoice.engines.llm import GenerationStats
from edgevoice.engines.schedule import Claim
from edgevoice.events import (
    Event,
    ReplyAudio,
    ReplyAudioEnd,
    ReplyAudioStart,
    ReplyText,
    Transcript,
    TurnTimings,
)
from edgevoice.skills.box import ConversationSkills
from edgevoice.skills.router import Undo
from edgevoice.speech_text import SpeechChunker

AUDIO_CHUNK_MS = 100
_PIECES_AHEAD = 8


@dataclass
class TurnResult:
    transcript: str = ""
    reply: str = ""
    intent: str = ""
    """The skill that answered, or "" for the model."""
    stop: bool = False
    """The skill said to stop talking and ringing ("stop", "never mind")."""
    undo: Undo | None = None
    """What takes back the skill's changes, should the speaker go on (the turn continued)."""


async def run_turn(
    engines: Engines,
    conversation: Conversation,
    *,
    turn: int,
    pcm: bytes,
    timings: TurnTimings,
    emit: Callable[[Event], None],
    result: TurnResult,
    skills: ConversationSkills | None = None,
    counts: Callable[[], Awaitable[object]] | None = None,
    claim: Claim | None = None,
) -> None:
    """Run one turn to its end, filling result and timings as stages complete.

    The conversation is read, not changed: the caller remembers the exchange once it knows the
    turn counted (a turn started early and then dropped must leave no trace). counts() returns
    once it does; a skill waits for it before it acts. claim: the turn's standing with the engines
    (schedule.py), marked once its first words are heard.
    """
    claim = claim or Claim(timings.speculated or timings.speech_end)
    result.transcript = await engines.transcribe(from_pcm16(pcm), claim)
    timings.stt_done = time.monotonic()
    emit(Transcript(turn, result.transcript))
    if not result.transcript:
        return

    replies: AsyncIterator[str] | None = None
    intent = None if skills is None else skills.matches(result.transcript)
    if skills is not None and intent is not None:
        if counts is not None and skills.changes(intent):
            await counts()
            # This turn's own transcript can decide that the speaker went on (Continue), which
            # cancels this task from inside it: the cancel lands at the next suspension, and
            # counts() does not suspend once the turn counts. So look before acting.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
        answer = skills.answer(result.transcript)
        if answer is not None:
            result.intent, result.stop, result.undo = answer.intent, answer.stop, answer.undo
            if not answer.text:
                return
            replies = _said(answer.text)

    def took(stats: GenerationStats) -> None:
        timings.prompt_tokens = stats.prompt_tokens
        timings.evaluated_prompt_tokens = stats.evaluated_prompt_tokens

    if replies is None:
        replies = engines.reply(conversation.messages(result.transcript), claim, conversation.key, took)
    pieces: asyncio.Queue[str | None] = asyncio.Queue(maxsize=_PIECES_AHEAD)
    speaker = asyncio.create_task(_speak(engines, turn, pieces, timings, emit, claim), name=f"speak-{turn}")
    chunker = SpeechChunker(engines.config.tts.first_clause_words, engines.config.tts.first_words)
    try:
        async for delta in replies:
            if timings.first_token is None:
                timings.first_token = time.monotonic()
            result.reply += delta
            emit(ReplyText(turn, delta))
            for piece in chunker.feed(delta):
                if speaker.done():
                    await speaker  # it failed: its error ends the turn
                await pieces.put(piece)
        for piece in chunker.flush():
            await pieces.put(piece)
        await pieces.put(None)
        await speaker
    finally:
        speaker.cancel()


async def _said(text: str) -> AsyncIterator[str]:
    """A skill's answer, as one piece of reply text (its first_token is when it was ready)."""
    yield text


async def _speak(  # noqa: PLR0917 (the turn's parts, each named where it is called)
    engines: Engines,
    turn: int,
    pieces: asyncio.Queue[str | None],
    timings: TurnTimings,
    emit: Callable[[Event], None],
    claim: Claim,
) -> None:
    rate = engines.tts.sample_rate
    chunk_samples = rate * AUDIO_CHUNK_MS // 1000
    seq = 0
    while (piece := await pieces.get()) is not None:
        # Until the turn has its first audio, the model waits for the voice (see Engines).
        async for pcm in engines.speech(piece, first_words=seq == 0, claim=claim):
            for start in range(0, len(pcm), chunk_samples):
                if seq == 0:
                    timings.first_audio = time.monotonic()
                    claim.first_words_out = True  # its later pieces yield to other rooms' first words
                    emit(ReplyAudioStart(turn, rate))
                emit(ReplyAudio(turn, seq, rate, pcm[start : start + chunk_samples].astype("<i2").tobytes()))
                seq += 1
    if seq:
        timings.last_audio = time.monotonic()
        emit(ReplyAudioEnd(turn))
