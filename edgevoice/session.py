"""A voice session: audio in, turns found by the endpointer, replies out, and barge-in.

feed() is called with input audio as it arrives. When the endpointer hears a turn end, the
turn runs as a task; when it hears new speech while the assistant is still answering (the
turn's task is running or its audio is still queued at the listener), the turn is cancelled,
the listener drops what it has not played, and the new speech becomes the next turn, all
within the feed() call that recognised it.

A turn starts early, on the endpointer's pause (vad.speculate_ms of silence): transcription,
reply and speech run while the rest of the hangover passes, with everything they say held
back. When the turn really ends, the held events go out at once and the turn carries on live;
when the speaker goes on instead, the early work is cancelled and forgotten, unheard.

The turn really ends after the hangover, or sooner, after vad.quick_end_ms, when the early
transcript already sounds finished (edgevoice.turn_end). Speech that starts within a hangover of
such a quick end continues that turn: its answer stops and is not remembered, and its audio is
heard again at the start of the next turn, so the reply is to the whole sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from edgevoice.audio.vad import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VadEvent
from edgevoice.engines.loaded import Engines
from edgevoice.engines.worker import EngineBusy
from edgevoice.errors import EdgevoiceError
from edgevoice.events import Error, Event, Interrupted, SpeechStopped, Transcript, TurnDone, TurnTimings
from edgevoice.events import SpeechStarted as SpeechStartedEvent
from edgevoice.pipeline import Conversation, TurnResult, run_turn
from edgevoice.turn_end import sounds_finished

_log = logging.getLogger(__name__)


class Listener(Protocol):
    """Where a session's events go: a socket, a speaker, a file. Its methods must not block."""

    def emit(self, event: Event) -> None: ...

    def drop_audio(self) -> None:
        """Discard reply audio received but not yet played."""

    def playing(self) -> bool:
        """Whether reply audio is still queued or playing."""


class _Held:
    """Events of a turn started early: kept until the turn is confirmed, then passed on live."""

    def __init__(self, listener: Listener, on_transcript: Callable[[str], None]) -> None:
        self._listener = listener
        self._on_transcript = on_transcript
        self._events: list[Event] | None = []

    def emit(self, event: Event) -> None:
        if isinstance(event, Transcript):
            self._on_transcript(event.text)
        if self._events is None:
            self._listener.emit(event)
        else:
            self._events.append(event)

    def release(self) -> None:
        held, self._events = self._events or [], None
        for event in held:
            self._listener.emit(event)


class _EarlyTurn:
    def __init__(self, end_ms: int, held: _Held, timings: TurnTimings) -> None:
        self.end_ms = end_ms
        """End of the last voiced frame it heard: the turn it guessed at, if the end says the same."""
        self.held = held
        self.timings = timings
        self.discarded = False
        self.task: asyncio.Task[None] | None = None
        self.transcript: str | None = None
        """What the pause's audio says, once transcribed."""
        self.continued = False
        """Ended on a short pause, but the speaker went on: the next turn says it whole."""
        self.remembered = False

    def discard(self) -> None:
        self.discarded = True
        if self.task is not None:
            self.task.cancel()


class VoiceSession:
    def __init__(self, engines: Engines, listener: Listener, conversation: Conversation | None = None) -> None:
        config = engines.config
        self._engines = engines
        self._listener = listener
        self.conversation = conversation or Conversation(config.llm.system_prompt, config.llm.history_turns)
        self._endpointer = Endpointer(config.vad)
        self._turn = 0
        self._task: asyncio.Task[None] | None = None
        self._early: _EarlyTurn | None = None
        self._quick: tuple[_EarlyTurn, int, bytes] | None = None
        """The last turn ended on a short pause: that turn, the stream time it ended, its audio."""
        self._carry = b""
        """Audio of a turn ended too soon, said again at the start of the one that continues it."""

    @property
    def responding(self) -> bool:
        return (self._task is not None and not self._task.done()) or self._listener.playing()

    @property
    def stream_ms(self) -> int:
        return self._endpointer.now_ms

    def feed(self, pcm: bytes) -> None:
        """Take input audio (16 kHz, 16-bit mono, any length). Never blocks."""
        for event in self._endpointer.feed(pcm):
            self._on_vad(event)
        self._end_if_finished()

    async def finish(self) -> None:
        """End of input: a turn in progress ends now; wait for the last turn to complete."""
        for event in self._endpointer.flush():
            self._on_vad(event)
        await self.wait_turn()

    async def wait_turn(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    def interrupt(self) -> None:
        """Stop talking now (barge-in, or a client's explicit request)."""
        if not self.responding:
            return
        if self._task is not None:
            self._task.cancel()
        self._listener.drop_audio()
        self._listener.emit(Interrupted(self._turn, self._endpointer.now_ms))

    async def close(self) -> None:
        if self._early is not None:
            self._early.discard()
            if self._early.task is not None:
                await asyncio.gather(self._early.task, return_exceptions=True)
            self._early = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_vad(self, event: VadEvent) -> None:
        if isinstance(event, SpeechStarted):
            self._continue_if_resumed(event)
            if self.responding:
                self.interrupt()
            self._turn += 1
            self._listener.emit(SpeechStartedEvent(self._turn, event.start_ms))
        elif isinstance(event, SpeechPaused):
            self._start_early(event)
        elif isinstance(event, SpeechResumed):
            if self._early is not None:
                self._early.discard()
                self._early = None
        else:
            self._end_turn(event)

    def _end_if_finished(self) -> None:
        """End the turn on its pause, before the hangover, when what was said already sounds finished."""
        early = self._early
        quick_end_ms = self._engines.config.vad.quick_end_ms
        if early is None or early.transcript is None or quick_end_ms <= 0:
            return
        if self._endpointer.silence_ms < quick_end_ms or not sounds_finished(early.transcript):
            return
        ended = self._endpointer.end_now()
        if ended is not None:
            heard = self._carry + ended.pcm  # _end_turn hands the carry to this turn and clears it
            self._end_turn(ended)
            self._quick = (early, ended.decided_ms, heard)

    def _continue_if_resumed(self, started: SpeechStarted) -> None:
        """Speech soon after a turn ended on a short pause continues that turn: it was not over.

        The early answer stops (barge-in), is not remembered, and its words are heard again with
        the new ones, so the reply is to the whole sentence.
        """
        quick, self._quick = self._quick, None
        if quick is None:
            return
        turn, ended_ms, pcm = quick
        if started.start_ms - ended_ms > self._engines.config.vad.hangover_ms:
            return
        turn.continued = True
        if turn.remembered and self.conversation.history:
            self.conversation.history.pop()  # its answer was complete, but to half a sentence
        self._carry = pcm

    def _start_early(self, paused: SpeechPaused) -> None:
        if self._early is not None:
            self._early.discard()

        def heard(text: str) -> None:
            if self._early is early:
                early.transcript = text
                self._end_if_finished()

        early = self._early = _EarlyTurn(paused.end_ms, _Held(self._listener, heard), TurnTimings(time.monotonic()))
        early.timings.speculated = early.timings.speech_end
        early.task = asyncio.get_running_loop().create_task(
            self._run(self._turn, paused, self._carry, early.timings, early),
            name=f"turn-{self._turn}-early",
        )

    def _end_turn(self, ended: SpeechEnded) -> None:
        self._listener.emit(SpeechStopped(self._turn, ended.start_ms, ended.end_ms, ended.truncated))
        self._quick = None
        carry, self._carry = self._carry, b""
        early, self._early = self._early, None
        if early is not None and early.end_ms == ended.end_ms and early.task is not None:
            # The pause was the end: what the early turn has done so far is heard from now.
            early.timings.speech_end = time.monotonic()
            early.held.release()
            self._task = early.task
            return
        if early is not None:
            early.discard()
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._turn, ended, carry, TurnTimings(time.monotonic()), None),
            name=f"turn-{self._turn}",
        )

    async def _run(
        self,
        turn: int,
        utterance: SpeechPaused | SpeechEnded,
        carry: bytes,
        timings: TurnTimings,
        early: _EarlyTurn | None,
    ) -> None:
        emit = early.held.emit if early is not None else self._listener.emit
        result = TurnResult()
        interrupted = False
        try:
            await run_turn(
                self._engines,
                self.conversation,
                turn=turn,
                pcm=carry + utterance.pcm,
                timings=timings,
                emit=emit,
                result=result,
            )
        except asyncio.CancelledError:
            interrupted = True
            timings.interrupted = time.monotonic()
        except EngineBusy as err:
            emit(Error(str(err), "busy"))
        except EdgevoiceError as err:
            _log.error("turn %d failed: %s", turn, err)
            emit(Error(str(err), "turn_failed"))
        if early is not None and early.discarded:
            return  # the speaker went on: this turn never happened
        remember = bool(result.transcript) and not (early is not None and early.continued)
        if remember:
            self.conversation.remember(result.transcript, result.reply.strip())
            if early is not None:
                early.remembered = True
        reply = result.reply.strip()
        emit(TurnDone(turn, result.transcript, reply, timings, utterance.start_ms, utterance.end_ms, interrupted))
        if remember:
            self._engines.prepare(self.conversation.history_messages())
