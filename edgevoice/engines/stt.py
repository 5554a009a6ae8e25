"""Speech to text with whisper.cpp (pywhispercpp): greedy, no cross-turn context, encoder sized to the clip."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
from pywhispercpp.model import Model

from edgevoice.audio.pcm import SAMPLE_RATE, Samples
from edgevoice.config import SttConfig
from edgevoice.engines.worker import CancelToken
from edgevoice.errors import ModelError
from edgevoice.models.check import check_whisper_ggml

_log = logging.getLogger(__name__)

ENCODER_FRAMES_PER_SECOND = 50
MIN_SECONDS = 1.05
"""whisper.cpp refuses input shorter than one second; shorter clips are padded with silence."""
MIN_SPEECH_SECONDS = 0.1
MAX_WORDS_PER_SECOND = 5.0
"""Faster than anyone speaks: more words than this per second of audio means the decoder looped."""
MAX_TOKENS_PER_SECOND = 12.0
_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")


def screen(samples: Samples) -> Samples | None:
    """Audio safe to hand to the native library, or None when there is nothing to transcribe.

    NaN and infinities are zeroed, values are clipped to [-1, 1], DC is removed; clips under
    0.1 s or without any signal are not worth an inference.
    """
    if samples.size < MIN_SPEECH_SECONDS * SAMPLE_RATE:
        return None
    clean = np.nan_to_num(samples.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    # Clip before taking the mean: a float32 sum of huge values overflows to inf - inf = NaN.
    clean = np.clip(clean, -1.0, 1.0)
    clean = np.clip(clean - np.float32(clean.mean(dtype=np.float64)), -1.0, 1.0)
    if float(np.abs(clean).max()) < 1e-4:
        return None
    minimum = int(MIN_SECONDS * SAMPLE_RATE)
    if clean.size < minimum:
        clean = np.concatenate([clean, np.zeros(minimum - clean.size, dtype=np.float32)])
    return np.ascontiguousarray(clean, dtype=np.float32)


def runaway(text: str, seconds: float) -> bool:
    """Whether a transcript shows whisper's decoding loop: too many words, or a phrase said twice in a row."""
    words = text.lower().split()
    if len(words) > seconds * MAX_WORDS_PER_SECOND + 6:
        return True
    for length in range(3, len(words) // 2 + 1):
        for start in range(len(words) - 2 * length + 1):
            if words[start : start + length] == words[start + length : start + 2 * length]:
                return True
    return False


class WhisperStt:
    """One whisper.cpp context. Not thread-safe: call it from one engine thread."""

    computes_here = True

    def __init__(self, config: SttConfig, model_path: Path) -> None:
        hparams = check_whisper_ggml(model_path)
        self._config = config
        self._max_ctx = hparams["n_audio_ctx"]
        try:
            # Flash attention off: with it, whisper.cpp 1.8's output for one clip depends on the
            # audio_ctx of earlier calls on the same context.
            self._model = Model(
                str(model_path),
                redirect_whispercpp_logs_to=None,
                context_params={"flash_attn": False, "use_gpu": True},
                print_progress=False,
                print_realtime=False,
                print_timestamps=False,
            )
        except Exception as err:
            raise ModelError(f"whisper.cpp could not load {model_path}: {err}") from None
        self.model_path = model_path

    def audio_ctx_for(self, n_samples: int) -> int:
        frames = n_samples / SAMPLE_RATE * ENCODER_FRAMES_PER_SECOND
        wanted = max(self._config.audio_ctx_min, math.ceil(frames * self._config.audio_ctx_margin))
        return min(self._max_ctx, -(-wanted // 64) * 64)

    def transcribe(self, samples: Samples, token: CancelToken | None = None) -> str:
        """The clip's words; raises Cancelled, part way through, once token is cancelled."""
        clip = screen(samples)
        if clip is None:
            return ""
        audio_ctx = self.audio_ctx_for(clip.size)
        text = self._decode(clip, audio_ctx, token)
        if audio_ctx < self._max_ctx and runaway(text, clip.size / SAMPLE_RATE):
            # A shortened encoder context occasionally sends the decoder into a loop. Twice the
            # context ends the loop as well as the full one did on the clips tried, in half the time
            # or less, and without the full context's compute buffers (90 MB more, kept after).
            wider = min(self._max_ctx, 2 * audio_ctx)
            _log.info("transcript looked like a decoding loop at audio_ctx %d; retrying at %d", audio_ctx, wider)
            text = self._decode(clip, wider, token)
        return text

    def _decode(self, clip: Samples, audio_ctx: int, token: CancelToken | None) -> str:
        # Every decode parameter is passed on every call: pywhispercpp keeps keyword arguments
        # from earlier calls, so nothing may be left to a previous turn.
        segments = self._model.transcribe(
            clip,
            n_threads=self._config.threads,
            audio_ctx=audio_ctx,
            language=self._config.language,
            no_context=True,
            single_segment=True,
            no_timestamps=True,
            suppress_blank=True,
            suppress_nst=True,
            temperature=0.0,
            temperature_inc=self._config.temperature_inc,
            greedy={"best_of": 1},
            max_tokens=int(clip.size / SAMPLE_RATE * MAX_TOKENS_PER_SECOND) + 16,
            abort_callback=None if token is None else lambda: token.cancelled,
        )
        if token is not None:
            token.check()  # an aborted decode returns what it had: not a transcript
        text = " ".join(segment.text.strip() for segment in segments)
        return " ".join(_NON_SPEECH.sub(" ", text).split())

    def warm_up(self) -> None:
        """One inference on a second of noise, so the first real turn does not pay allocation."""
        rng = np.random.default_rng(0)
        self.transcribe((rng.standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32))
