"""Where timer events go, and how a timer rings: a chime and its spoken line, on the sessions of the
conversation that set it and on the box's speaker.

Every timer event (one a skill answer made, or one the TimerService rang) is told to the sessions
of its timer's conversation, and of the conversation that changed it. A `finished` event also rings:
the chime and the event's line, spoken once by the voice, are announced on those sessions and on
the speaker. A timer stopped or expired silences them. A ring that found no session of its
conversation (the client was away, or the daemon was down when the timer ended) is kept, and rung
to that conversation as soon as it comes back, while the timer still rings; with no speaker either
(a timer set by `edgevoice ask`, a recording or Wyoming, on a daemon without --mic), its first ring
is written to the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from edgevoice.audio.pcm import Pcm16
from edgevoice.engines.engines import Engines
from edgevoice.errors import EdgevoiceError
from edgevoice.protocol import Timer
from edgevoice.skills.timers import TimerBook, TimerEvent, TimerEventKind, TimerState

_log = logging.getLogger(__name__)
NOTES = ((880.0, 0.16), (660.0, 0.28))
"""The chime: two notes (Hz, seconds), high then low."""
CHIME_GAP_S = 0.25
"""Silence between the chime and the spoken line."""


def chime(sample_rate: int, volume: float = 0.35) -> Pcm16:
    """Two sine notes, each faded in and out so it does not click, then a short silence."""
    parts = []
    for frequency, seconds in NOTES:
        t = np.arange(int(sample_rate * seconds)) / sample_rate
        fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.015)
        decay = np.exp(-3.0 * t / seconds)
        parts.append(np.sin(2 * np.pi * frequency * t) * fade * decay)
    parts.append(np.zeros(int(sample_rate * CHIME_GAP_S)))
    return (np.concatenate(parts) * volume * 32767).astype(np.int16)


class Announcing(Protocol):
    """A session that can be told of a timer and can speak on its own (edgevoice.session.VoiceSession)."""

    def tell(self, message: Timer) -> None: ...

    def announce(self, pcm: Pcm16, sample_rate: int) -> None: ...

    def hush(self) -> None: ...


class Ringer:
    def __init__(
        self,
        book: Callable[[], TimerBook],
        engines: Callable[[], Engines | None],
        observe: Callable[[Timer], None] | None = None,
    ) -> None:
        """book: the timers now; engines: the voice to speak lines with (None while degraded: a ring is
        told, not voiced); observe hears every event (the dashboard's feed)."""
        self._book = book
        self._engines = engines
        self._observe = observe
        self._sessions: dict[str, list[Announcing]] = {}
        self._speaker: Announcing | None = None
        self._unheard: dict[str, TimerEvent] = {}
        """Rings that reached no session of their conversation, by timer id."""
        self._ringing: dict[str, asyncio.Task[None]] = {}
        """Rings being voiced, by timer id."""

    def join(self, conversation: str, session: Announcing) -> None:
        """A session of conversation is open: it hears that conversation's timers, and rings it missed."""
        self._sessions.setdefault(conversation, []).append(session)
        ringing = {timer.id for timer in self._book().timers if timer.state is TimerState.RINGING}
        for timer_id, event in list(self._unheard.items()):
            if event.timer.conversation_id != conversation:
                continue
            del self._unheard[timer_id]
            if timer_id in ringing:
                session.tell(event.message())
                self._ring(event, [session])

    def leave(self, conversation: str, session: Announcing) -> None:
        sessions = self._sessions.get(conversation, [])
        if session in sessions:
            sessions.remove(session)
        if not sessions:
            self._sessions.pop(conversation, None)

    def set_speaker(self, session: Announcing | None) -> None:
        """The box's own speaker (the --mic conversation): every timer rings there too, from a ring
        nobody heard yet (one that ended while the daemon was down) on."""
        self._speaker = session
        if session is None:
            return
        ringing = {timer.id for timer in self._book().timers if timer.state is TimerState.RINGING}
        for timer_id, event in self._unheard.items():
            if timer_id in ringing:
                self._ring(event, [session])

    def rang(self, conversation: str, event: TimerEvent) -> None:
        """The TimerService's OnFinished: a timer rang, or stopped ringing unanswered."""
        self.publish(event)

    def publish(self, event: TimerEvent, said_in: str = "") -> None:
        """Tell event to whoever shows its timer; ring or silence it. said_in: the conversation whose
        words made it (it hears the event too)."""
        message = event.message()
        owner = event.timer.conversation_id
        sessions = list(self._sessions.get(owner, []))
        if said_in and said_in != owner:
            sessions += self._sessions.get(said_in, [])
        for session in sessions:
            session.tell(message)
        if self._observe is not None:
            self._observe(message)
        if event.kind is TimerEventKind.FINISHED:
            if not self._sessions.get(owner):
                self._unheard[event.timer.id] = event
            ringing_on = self._ringing_on(owner)
            if not ringing_on and event.ring == 1:  # set by `edgevoice ask`, a recording or Wyoming, with no --mic
                _log.warning("%s (conversation %s is not connected: it rings when it comes back)", event.text, owner)
            self._ring(event, ringing_on)
        elif event.kind is TimerEventKind.CANCELLED:
            self._unheard.pop(event.timer.id, None)
            task = self._ringing.pop(event.timer.id, None)
            if task is not None:
                task.cancel()
            if event.reason != "cancelled":  # it was ringing: stopped, or rang unanswered too long
                for session in self._ringing_on(owner):
                    session.hush()

    def _ringing_on(self, conversation: str) -> list[Announcing]:
        """The sessions a timer of conversation rings on: that conversation's, and the speaker, once each."""
        sessions = list(self._sessions.get(conversation, []))
        if self._speaker is not None and not any(session is self._speaker for session in sessions):
            sessions.append(self._speaker)
        return sessions

    def _ring(self, event: TimerEvent, sessions: list[Announcing]) -> None:
        if not sessions:
            return
        previous = self._ringing.get(event.timer.id)
        if previous is not None and not previous.done():
            return  # still voicing its last ring: this one says the same
        task = asyncio.get_running_loop().create_task(self._voice(event, sessions), name=f"ring-{event.timer.id}")
        self._ringing[event.timer.id] = task
        task.add_done_callback(lambda done: self._forget(event.timer.id, done))

    def _forget(self, timer_id: str, task: asyncio.Task[None]) -> None:
        if self._ringing.get(timer_id) is task:
            del self._ringing[timer_id]

    async def _voice(self, event: TimerEvent, sessions: list[Announcing]) -> None:
        """The chime and the line, made once and announced on every session."""
        engines = self._engines()
        if engines is None:
            return
        rate = engines.tts.sample_rate
        pieces = [chime(rate)]
        try:
            async for pcm in engines.speech(event.text):
                pieces.append(pcm)
        except EdgevoiceError as err:  # a busy or failed voice: the chime alone
            _log.warning("timer %s rings without its line: %s", event.timer.id, err)
        audio = np.concatenate(pieces)
        for session in sessions:
            session.announce(audio, rate)

    async def close(self) -> None:
        tasks = list(self._ringing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
