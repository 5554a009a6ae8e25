"""The box speaking on its own in a session, between turns: a timer ringing (its chime and its line).

An announcement is reply audio under a turn number of its own, from ANNOUNCEMENT_TURNS up, one new
number each time (docs/protocol.md, Timers): a client plays it as it plays a reply, and `interrupted`
with that number stops it. Each is sent whole, while no turn is answering, so its frames never mix
with a reply's. hush() drops those waiting and interrupts the one that may still be playing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable

from edgevoice.audio.pcm import Pcm16
from edgevoice.events import Event, Interrupted, ReplyAudio, ReplyAudioEnd, ReplyAudioStart

ANNOUNCEMENT_TURNS = 1 << 31
"""The first turn number announcements use: far above any turn a person speaks (uint32 on the wire)."""
MAX_WAITING = 4
"""Announcements waiting for a turn to end, at most; older ones go first (a newer ring says the same)."""
CHUNK_MS = 100


class Announcements:
    def __init__(self, emit: Callable[[Event], None], quiet: Callable[[], Awaitable[None]]) -> None:
        """emit: the session's listener (not its turn-taking: a person may talk over a chime without
        interrupting a reply); quiet: waits until no turn is answering."""
        self._emit = emit
        self._quiet = quiet
        self._waiting: collections.deque[tuple[Pcm16, int]] = collections.deque(maxlen=MAX_WAITING)
        self._task: asyncio.Task[None] | None = None
        self._next_turn = ANNOUNCEMENT_TURNS
        self._playing: list[tuple[int, float]] = []
        """Announcements sent, with when they end playing (monotonic), reckoned from their length."""

    def say(self, pcm: Pcm16, sample_rate: int) -> None:
        self._waiting.append((pcm, sample_rate))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send(), name="announcements")

    def hush(self, at_ms: int) -> None:
        """Stop at once: forget those waiting, and interrupt those sent that may still be playing."""
        self._waiting.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        now = time.monotonic()
        for turn, ends in self._playing:
            if ends > now:
                self._emit(Interrupted(turn, at_ms))
        self._playing.clear()

    async def close(self) -> None:
        self._waiting.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _send(self) -> None:
        while self._waiting:
            await self._quiet()
            if not self._waiting:
                return
            pcm, rate = self._waiting.popleft()
            self._send_one(pcm, rate)

    def _send_one(self, pcm: Pcm16, rate: int) -> None:
        """Every frame at once: nothing else is sent to the listener in between."""
        turn = self._next_turn
        self._next_turn = ANNOUNCEMENT_TURNS + (self._next_turn + 1 - ANNOUNCEMENT_TURNS) % ANNOUNCEMENT_TURNS
        chunk = rate * CHUNK_MS // 1000
        self._emit(ReplyAudioStart(turn, rate))
        for seq, start in enumerate(range(0, len(pcm), chunk)):
            self._emit(ReplyAudio(turn, seq, rate, pcm[start : start + chunk].astype("<i2").tobytes()))
        self._emit(ReplyAudioEnd(turn))
        now = time.monotonic()
        starts = max([now, *(ends for _turn, ends in self._playing)])
        self._playing = [(t, e) for t, e in self._playing if e > now] + [(turn, starts + len(pcm) / rate)]
