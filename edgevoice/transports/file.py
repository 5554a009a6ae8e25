"""Conversations over a recording: turns found in a file, replies collected into one WAV.

With skills, a question a skill answers (the time, a timer, the shopping list) gets the skill's
answer, as over /ws. A timer set from a recording is kept with the daemon's timers (the data
directory, as `edgevoice ask` keeps it) and rings in the daemon, not during the recording: the
recording is read faster than it was spoken, and nobody listens to it live.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from edgevoice.audio.pcm import SAMPLE_RATE, Pcm16, to_pcm16, write_wav
from edgevoice.engines.engines import Engines
from edgevoice.events import Busy, Error, Event, ReplyAudio, TurnDone
from edgevoice.session import VoiceSession
from edgevoice.skills.box import ConversationSkills

GAP_BETWEEN_REPLIES_MS = 300


def turn_record(event: TurnDone) -> dict[str, object]:
    """A finished turn's JSON line: the turn_done message a socket client gets (docs/protocol.md)."""
    return event.message().to_json()


class CollectingListener:
    """Keeps reply audio in memory and reports each finished turn as a JSON line."""

    def __init__(self, out: TextIO = sys.stdout, on_event: Callable[[Event], None] | None = None) -> None:
        self._out = out
        self._on_event = on_event
        self.audio: list[Pcm16] = []
        self.sample_rate = 0
        self.turns: list[TurnDone] = []
        self.errors: list[Error | Busy] = []

    def emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        if isinstance(event, ReplyAudio):
            self.sample_rate = event.sample_rate
            self.audio.append(np.frombuffer(event.pcm, dtype="<i2"))
        elif isinstance(event, TurnDone):
            self.turns.append(event)
            if self.audio and self.sample_rate:
                self.audio.append(np.zeros(self.sample_rate * GAP_BETWEEN_REPLIES_MS // 1000, dtype=np.int16))
            print(json.dumps(turn_record(event)), file=self._out, flush=True)
        elif isinstance(event, Error | Busy):
            self.errors.append(event)
            code = event.code if isinstance(event, Error) else "busy"
            print(json.dumps({"error": event.message, "code": code}), file=self._out, flush=True)

    def write(self, path: Path) -> None:
        pcm = np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)
        write_wav(path, pcm, self.sample_rate or SAMPLE_RATE)


async def converse_file(
    engines: Engines, samples: np.ndarray, listener: CollectingListener, skills: ConversationSkills | None = None
) -> None:
    """Feed a recording frame by frame; each turn runs to its end before the recording goes on.

    The replies are collected, not played: the speaker in the recording never talks over one.
    skills: answered before the model (None: the model answers every turn).
    """
    session = VoiceSession(engines, listener, audio_plays=False, skills=skills)
    pcm = to_pcm16(samples).tobytes()
    frame = SAMPLE_RATE * engines.config.vad.frame_ms // 1000 * 2
    for start in range(0, len(pcm), frame):
        session.feed(pcm[start : start + frame])
        await session.wait_turn()
    await session.finish()
