"""Silero VAD as the endpointer's speech detector, sans-I/O: is_speech(frame) -> bool per mic frame.

Silero scores fixed windows of 512 samples (32 ms at 16 kHz), each with the 64 samples before it
as context, while the endpointer's frames are config.frame_ms long (10, 20 or 30 ms). The
detector keeps the samples that do not yet fill a window; a frame's answer is the state after
the last window that ended within it, so it lags the audio by at most one window. Speech starts
at a window scoring threshold or more and ends at one scoring under threshold - 0.15, Silero's
own hysteresis: a soft syllable in the middle of a word does not end it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgevoice.audio.onnx_models import SILERO_VAD, OnnxModel, packaged_model, shared_model
from edgevoice.audio.pcm import SAMPLE_RATE

WINDOW = 512
"""Samples Silero scores at once at 16 kHz."""
CONTEXT = 64
"""Samples of the previous window prepended to each one, as Silero was trained."""
HYSTERESIS = 0.15
RESET_AFTER_WINDOWS = 2 * SAMPLE_RATE // WINDOW
"""The recurrent state drifts over long non-speech (noise, music) until the speech after it scores low;
it is cleared every two seconds or so, when the recent windows are clearly not speech."""
RESET_QUIET_WINDOWS = 5
RESET_MAX_PROBABILITY = 0.1


def silero_model() -> OnnxModel:
    """The Silero VAD session this process shares (loaded on first use)."""
    return shared_model(packaged_model(SILERO_VAD))


class SileroVad:
    """One stream's Silero state. Not thread-safe: one stream is fed from one thread."""

    def __init__(self, threshold: float = 0.5, model: OnnxModel | None = None) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
        self._model = model or silero_model()
        self.threshold = threshold
        self._release = max(0.0, threshold - HYSTERESIS)
        self._pending = np.zeros(0, dtype=np.float32)
        self._sample_rate = np.array(SAMPLE_RATE, dtype=np.int64)
        self._speaking = False
        self.probability = 0.0
        """The score of the last window."""
        self.windows = 0
        """Windows scored."""
        self._reset_model()

    def _reset_model(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._since_reset = 0
        self._quiet_run = 0

    def is_speech(self, frame: bytes) -> bool:
        """Whether the stream is in speech at the end of this frame (16-bit mono PCM at 16 kHz)."""
        for probability in self.score(np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0):
            if probability >= self.threshold:
                self._speaking = True
            elif probability < self._release:
                self._speaking = False
        return self._speaking

    def score(self, samples: npt.NDArray[np.float32]) -> list[float]:
        """The speech probability of each window completed by these samples (float, -1 to 1)."""
        pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        scores = []
        offset = 0
        while len(pending) - offset >= WINDOW:
            scores.append(self._window(pending[offset : offset + WINDOW]))
            offset += WINDOW
        self._pending = np.array(pending[offset:], dtype=np.float32)
        return scores

    def _window(self, window: npt.NDArray[np.float32]) -> float:
        batch = np.concatenate([self._context, window])[np.newaxis, :]
        output, self._state = self._model.run({"input": batch, "state": self._state, "sr": self._sample_rate})
        self._context = batch[0, -CONTEXT:]
        probability = float(output[0][0])
        self.probability = probability
        self.windows += 1
        self._since_reset += 1
        self._quiet_run = self._quiet_run + 1 if probability < RESET_MAX_PROBABILITY else 0
        if self._since_reset >= RESET_AFTER_WINDOWS and not self._speaking and self._quiet_run >= RESET_QUIET_WINDOWS:
            self._reset_model()
        return probability
