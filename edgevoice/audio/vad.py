"""Turn endpointing, sans-I/O: feed(pcm) -> events, time measured in samples fed.

Each frame is judged speech or not by config.detector (Silero VAD or webrtcvad) or by an injected
is_speech. States: SILENCE (keep a pre-roll ring), CANDIDATE (voiced audio seen, not yet long enough to
be speech), SPEECH (a turn in progress, ended by hangover_ms of silence or max_utterance_ms).

Within SPEECH, speculate_ms of silence gives SpeechPaused: the turn will probably end, and work
on it can start while the rest of the hangover runs. If no voice comes back, SpeechEnded follows
with the same start_ms and end_ms (its pcm holds up to TAIL_MS of the silence as heard; the pause's
holds the silence of the shortest pause that may be taken, speculate_idle_ms or speculate_ms, and
digital silence after it, so it is the same audio whichever was taken); voice that does come back
first gives SpeechResumed. The owner may change speculate_ms as it goes (speculate_idle_ms while
the box has nothing else to do).
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass

import webrtcvad

from edgevoice.audio.pcm import SAMPLE_RATE
from edgevoice.audio.silero import SileroVad
from edgevoice.config import VadConfig

_BYTES_PER_SAMPLE = 2
TAIL_MS = 200
"""Trailing silence on an utterance, made up with zeros when the pause is shorter."""


@dataclass(frozen=True)
class SpeechStarted:
    start_ms: int
    """Stream time of the first voiced frame."""
    decided_ms: int
    """Stream time at which enough speech had been heard to call it a turn."""


@dataclass(frozen=True)
class SpeechEnded:
    start_ms: int
    end_ms: int
    """Stream time at the end of the last voiced frame."""
    decided_ms: int
    """Stream time at which the silence that ends the turn was complete."""
    pcm: bytes
    """The utterance, 16-bit mono at 16 kHz, from the pre-roll to the end of speech."""
    truncated: bool = False
    """True when max_utterance_ms cut the turn rather than silence."""


@dataclass(frozen=True)
class SpeechPaused:
    start_ms: int
    end_ms: int
    """Stream time at the end of the last voiced frame."""
    decided_ms: int
    pcm: bytes
    """The utterance so far, with up to TAIL_MS of the pause."""


@dataclass(frozen=True)
class SpeechResumed:
    at_ms: int
    """Stream time of the voiced frame that ended the pause."""


VadEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded


def speech_detector(config: VadConfig) -> Callable[[bytes], bool]:
    """The is_speech(frame) of config.detector, with its own state: one per stream."""
    if config.detector == "silero":
        return SileroVad(config.silero_threshold).is_speech
    detector = webrtcvad.Vad(config.aggressiveness)

    def is_speech(frame: bytes) -> bool:
        return bool(detector.is_speech(frame, SAMPLE_RATE))

    return is_speech


class _State(enum.Enum):
    SILENCE = 0
    CANDIDATE = 1
    SPEECH = 2


class Endpointer:
    """Finds turns in a stream of 16 kHz 16-bit mono PCM of any chunk size."""

    def __init__(
        self, config: VadConfig, is_speech: Callable[[bytes], bool] | None = None, hangover_ms: int | None = None
    ) -> None:
        """hangover_ms: the silence that ends a turn, if not config.hangover_ms."""
        self._config = config
        self._hangover_ms = config.hangover_ms if hangover_ms is None else hangover_ms
        self.speculate_ms = config.speculate_ms
        """The silence that gives SpeechPaused; 0: none."""
        shortest = min((ms for ms in (config.speculate_ms, config.speculate_idle_ms) if ms > 0), default=0)
        self._pause_tail_frames = max(1, -(-shortest // config.frame_ms))
        """Frames of the heard silence a SpeechPaused's pcm keeps, whichever pause was taken."""
        self._is_speech = is_speech or speech_detector(config)
        self._frame_bytes = SAMPLE_RATE * config.frame_ms // 1000 * _BYTES_PER_SAMPLE
        self._pending = bytearray()
        self._pre_roll: collections.deque[bytes] = collections.deque(maxlen=config.pre_roll_ms // config.frame_ms)
        self._frames_fed = 0
        self._reset()

    def _reset(self) -> None:
        self._state = _State.SILENCE
        self._utterance: list[bytes] = []
        self._start_frame = 0
        self._voiced_frames = 0
        self._last_voiced_frame = 0
        self._silent_run = 0
        self._paused = False

    @property
    def now_ms(self) -> int:
        return self._frames_fed * self._config.frame_ms

    @property
    def in_speech(self) -> bool:
        return self._state is _State.SPEECH

    @property
    def silence_ms(self) -> int:
        """Silence since the last voiced frame of the turn in progress; 0 outside a turn."""
        return self._silent_run * self._config.frame_ms if self._state is _State.SPEECH else 0

    def heard_pcm(self) -> bytes:
        """The turn in progress as heard so far, pre-roll and trailing pause included; b"" outside a turn.
        What an end-of-turn model judges: the pause is part of what it listens to."""
        return b"".join(self._utterance) if self._state is _State.SPEECH else b""

    def end_now(self) -> SpeechEnded | None:
        """End the turn in progress on its current pause (judged to be the end after all); None if
        there is no such pause. The event matches the SpeechPaused of that pause."""
        if self._state is not _State.SPEECH or self._silent_run == 0:
            return None
        return self._end(truncated=False)

    def feed(self, pcm: bytes) -> list[VadEvent]:
        self._pending.extend(pcm)
        events: list[VadEvent] = []
        size = self._frame_bytes
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            events.extend(self._frame(frame))
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: a turn in progress ends now."""
        if self._state is _State.SPEECH:
            return [self._end(truncated=False)]
        self._reset()
        return []

    def _frame(self, frame: bytes) -> list[VadEvent]:
        cfg = self._config
        voiced = self._is_speech(frame)
        self._frames_fed += 1
        index = self._frames_fed - 1
        if self._state is _State.SILENCE:
            if not voiced:
                self._pre_roll.append(frame)
                return []
            self._state = _State.CANDIDATE
            self._utterance = list(self._pre_roll)
            self._pre_roll.clear()
            self._start_frame = index
            self._voiced_frames = 0
            self._silent_run = 0
        self._utterance.append(frame)
        if voiced:
            self._voiced_frames += 1
            self._last_voiced_frame = index
            self._silent_run = 0
        else:
            self._silent_run += 1
        silent_ms = self._silent_run * cfg.frame_ms
        if self._state is _State.CANDIDATE:
            if self._voiced_frames * cfg.frame_ms >= cfg.min_speech_ms:
                self._state = _State.SPEECH
                return [SpeechStarted(start_ms=self._start_frame * cfg.frame_ms, decided_ms=self.now_ms)]
            if silent_ms >= min(self._hangover_ms, cfg.min_speech_ms):
                # Too little voice before a gap: a click or a cough, not a turn.
                keep = self._utterance[-self._pre_roll.maxlen :] if self._pre_roll.maxlen else []
                self._reset()
                self._pre_roll.extend(keep)
            return []
        events: list[VadEvent] = []
        if voiced and self._paused:
            self._paused = False
            events.append(SpeechResumed(at_ms=index * cfg.frame_ms))
        if silent_ms >= self._hangover_ms:
            return [*events, self._end(truncated=False)]
        if (index - self._start_frame + 1) * cfg.frame_ms >= cfg.max_utterance_ms:
            return [*events, self._end(truncated=True)]
        if 0 < self.speculate_ms <= silent_ms < self._hangover_ms and not self._paused:
            self._paused = True
            events.append(
                SpeechPaused(
                    start_ms=self._start_frame * cfg.frame_ms,
                    end_ms=(self._last_voiced_frame + 1) * cfg.frame_ms,
                    decided_ms=self.now_ms,
                    pcm=self._trimmed_pcm(self._pause_tail_frames),
                )
            )
        return events

    def _trimmed_pcm(self, heard_frames: int | None = None) -> bytes:
        """The utterance and TAIL_MS of silence after it: whisper ends words better with some room.

        The silence heard so far is kept up to TAIL_MS (or heard_frames); a shorter pause (an early
        start) is made up to TAIL_MS with digital silence, so the audio does not stop in the middle
        of a word's decay.
        """
        frames = max(1, TAIL_MS // self._config.frame_ms)
        tail = min(self._silent_run, frames if heard_frames is None else min(frames, heard_frames))
        kept = self._utterance[: len(self._utterance) - self._silent_run + tail]
        pad = frames - tail if self._silent_run else 0  # cut mid-word (max_utterance_ms, flush): as heard
        return b"".join(kept) + bytes(self._frame_bytes * pad)

    def _end(self, truncated: bool) -> SpeechEnded:
        cfg = self._config
        event = SpeechEnded(
            start_ms=self._start_frame * cfg.frame_ms,
            end_ms=(self._last_voiced_frame + 1) * cfg.frame_ms,
            decided_ms=self.now_ms,
            pcm=self._trimmed_pcm(),
            truncated=truncated,
        )
        self._reset()
        return event
