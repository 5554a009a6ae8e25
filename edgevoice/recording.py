"""Conversations over a recording: turns found in a file, replies collected into one WAV."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from edgevoice.audio.pcm import SAMPLE_RATE, Pcm16, to_pcm16, write_wav
from edgevoice.engines.loaded import Engines
from edgevoice.events import Error, Event, ReplyAudio, TurnDone
from edgevoice.session import VoiceSession

GAP_BETWEEN_REPLIES_MS = 300


def turn_record(event: TurnDone) -> dict[str, object]:
    return {
        "turn": event.turn,
        "transcript": event.transcript,
        "reply": event.reply,
        "interrupted": event.interrupted,
        "speech_start_ms": event.start_ms,
        "speech_end_ms": event.end_ms,
        "timings_ms": event.timings.as_ms(),
    }


class CollectingListener:
    """Keeps reply audio in memory and reports each finished turn as a JSON line."""

    def __init__(self, out: TextIO = sys.stdout, on_event: Callable[[Event], None] | None = None) -> None:
        self._out = out
        self._on_event = on_event
        self.audio: list[Pcm16] = []
        self.sample_rate = 0
        self.turns: list[TurnDone] = []
        self.errors: list[Error] = []

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
        elif isinstance(event, Error):
            self.errors.append(event)
            print(json.dumps({"error": event.message, "code": event.code}), file=self._out, flush=True)

    def drop_audio(self) -> None:
        """Nothing plays here, so there is nothing queued to drop."""

    def playing(self) -> bool:
        return False

    def write(self, path: Path) -> None:
        pcm = np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)
        write_wav(path, pcm, self.sample_rate or SAMPLE_RATE)


async def converse_file(engines: Engines, samples: np.ndarray, listener: CollectingListener) -> None:
    """Feed a recording frame by frame; each turn runs to its end before the recording goes on."""
    session = VoiceSession(engines, listener)
    pcm = to_pcm16(samples).tobytes()
    frame = SAMPLE_RATE * engines.config.vad.frame_ms // 1000 * 2
    for start in range(0, len(pcm), frame):
        session.feed(pcm[start : start + frame])
        await session.wait_turn()
    await session.finish()
