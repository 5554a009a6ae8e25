"""Turn endpointing with webrtcvad, sans-I/O: feed(pcm) -> events, time measured in samples fed.

States: SILENCE (keep a pre-roll ring), CANDIDATE (voiced audio seen, not yet long enough to
be speech), SPEECH (a turn in progress, ended by hangover_ms of silence or max_utterance_ms).
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass

import webrtcvad

from edgevoice.audio.pcm import SAMPLE_RATE
from edgevoice.config import VadConfig

_BYTES_PER_SAMPLE = 2


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


VadEvent = SpeechStarted | SpeechEnded


class _State(enum.Enum):
    SILENCE = 0
    CANDIDATE = 1
    SPEECH = 2


class Endpointer:
    """Finds turns in a stream of 16 kHz 16-bit mono PCM of any chunk size."""

    def __init__(self, config: VadConfig, is_speech: Callable[[bytes], bool] | None = None) -> None:
        self._config = config
        if is_speech is None:
            detector = webrtcvad.Vad(config.aggressiveness)

            def is_speech(frame: bytes) -> bool:
                return bool(detector.is_speech(frame, SAMPLE_RATE))

        self._is_speech = is_speech
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

    @property
    def now_ms(self) -> int:
        return self._frames_fed * self._config.frame_ms

    @property
    def in_speech(self) -> bool:
        return self._state is _State.SPEECH

    def feed(self, pcm: bytes) -> list[VadEvent]:
        self._pending.extend(pcm)
        events: list[VadEvent] = []
        size = self._frame_bytes
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            event = self._frame(frame)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: a turn in progress ends now."""
        if self._state is _State.SPEECH:
            return [self._end(truncated=False)]
        self._reset()
        return []

    def _frame(self, frame: bytes) -> VadEvent | None:
        cfg = self._config
        voiced = self._is_speech(frame)
        self._frames_fed += 1
        index = self._frames_fed - 1
        if self._state is _State.SILENCE:
            if not voiced:
                self._pre_roll.append(frame)
                return None
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
                return SpeechStarted(start_ms=self._start_frame * cfg.frame_ms, decided_ms=self.now_ms)
            if silent_ms >= min(cfg.hangover_ms, cfg.min_speech_ms):
                # Too little voice before a gap: a click or a cough, not a turn.
                keep = self._utterance[-self._pre_roll.maxlen :] if self._pre_roll.maxlen else []
                self._reset()
                self._pre_roll.extend(keep)
            return None
        if silent_ms >= cfg.hangover_ms:
            return self._end(truncated=False)
        if (index - self._start_frame + 1) * cfg.frame_ms >= cfg.max_utterance_ms:
            return self._end(truncated=True)
        return None

    def _end(self, truncated: bool) -> SpeechEnded:
        cfg = self._config
        # Keep a little of the trailing silence: whisper ends words better with some room.
        tail = min(self._silent_run, max(1, 200 // cfg.frame_ms))
        frames = self._utterance[: len(self._utterance) - self._silent_run + tail]
        event = SpeechEnded(
            start_ms=self._start_frame * cfg.frame_ms,
            end_ms=(self._last_voiced_frame + 1) * cfg.frame_ms,
            decided_ms=self.now_ms,
            pcm=b"".join(frames),
            truncated=truncated,
        )
        self._reset()
        return event
