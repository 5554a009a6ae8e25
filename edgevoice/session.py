"""A voice session: audio in, turns found by the endpointer, replies out, and barge-in.

feed() is called with input audio as it arrives. When the endpointer hears a turn end, the
turn runs as a task; when it hears new speech while the assistant is still answering (the
turn's task is running or its audio is still queued at the listener), the turn is cancelled,
the listener drops what it has not played, and the new speech becomes the next turn, all
within the feed() call that recognised it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from edgevoice.audio.vad import Endpointer, SpeechEnded, SpeechStarted
from edgevoice.engines.loaded import Engines
from edgevoice.engines.worker import EngineBusy
from edgevoice.errors import EdgevoiceError
from edgevoice.events import Error, Event, Interrupted, SpeechStopped, TurnDone, TurnTimings
from edgevoice.events import SpeechStarted as SpeechStartedEvent
from edgevoice.pipeline import Conversation, TurnResult, run_turn

_log = logging.getLogger(__name__)


class Listener(Protocol):
    """Where a session's events go: a socket, a speaker, a file. Its methods must not block."""

    def emit(self, event: Event) -> None: ...

    def drop_audio(self) -> None:
        """Discard reply audio received but not yet played."""

    def playing(self) -> bool:
        """Whether reply audio is still queued or playing."""


class VoiceSession:
    def __init__(self, engines: Engines, listener: Listener, conversation: Conversation | None = None) -> None:
        config = engines.config
        self._engines = engines
        self._listener = listener
        self.conversation = conversation or Conversation(config.llm.system_prompt, config.llm.history_turns)
        self._endpointer = Endpointer(config.vad)
        self._turn = 0
        self._task: asyncio.Task[None] | None = None

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
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_vad(self, event: SpeechStarted | SpeechEnded) -> None:
        if isinstance(event, SpeechStarted):
            if self.responding:
                self.interrupt()
            self._turn += 1
            self._listener.emit(SpeechStartedEvent(self._turn, event.start_ms))
            return
        self._listener.emit(SpeechStopped(self._turn, event.start_ms, event.end_ms, event.truncated))
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._turn, event, time.monotonic()), name=f"turn-{self._turn}"
        )

    async def _run(self, turn: int, utterance: SpeechEnded, decided_at: float) -> None:
        timings = TurnTimings(speech_end=decided_at)
        result = TurnResult()
        interrupted = False
        try:
            await run_turn(
                self._engines,
                self.conversation,
                turn=turn,
                pcm=utterance.pcm,
                timings=timings,
                emit=self._listener.emit,
                result=result,
            )
        except asyncio.CancelledError:
            interrupted = True
            timings.interrupted = time.monotonic()
        except EngineBusy as err:
            self._listener.emit(Error(str(err), "busy"))
        except EdgevoiceError as err:
            _log.error("turn %d failed: %s", turn, err)
            self._listener.emit(Error(str(err), "turn_failed"))
        self._listener.emit(
            TurnDone(
                turn,
                result.transcript,
                result.reply.strip(),
                timings,
                utterance.start_ms,
                utterance.end_ms,
                interrupted,
            )
        )
