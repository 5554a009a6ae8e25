"""Speech synthesis with Piper: text in, 16-bit PCM at the voice's own rate out, a sentence at a time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
from piper.config import PiperConfig, SynthesisConfig
from piper.voice import PiperVoice

from edgevoice.audio.pcm import Pcm16
from edgevoice.config import TtsConfig
from edgevoice.engines.worker import CancelToken
from edgevoice.errors import ModelError
from edgevoice.models.check import check_piper_voice
from edgevoice.speech_text import phoneme_runs, short_pieces

_log = logging.getLogger(__name__)


class PiperTts:
    """One ONNX session for one voice. Not thread-safe: call it from one engine thread."""

    def __init__(self, config: TtsConfig, voice_path: Path) -> None:
        voice_config = check_piper_voice(voice_path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Every sentence is a new input length. onnxruntime's arena and its per-shape memory plans
        # keep what each length needed: over a few hundred sentences the process grew by ~200 MB.
        # Without them memory stays flat, for ~10% more synthesis time (measured in the notes).
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        try:
            session = onnxruntime.InferenceSession(
                str(voice_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._voice = PiperVoice(session=session, config=PiperConfig.from_dict(voice_config))
        except Exception as err:
            raise ModelError(f"Piper could not load voice {voice_path}: {err}") from None
        self._synthesis = SynthesisConfig(
            length_scale=config.length_scale, noise_scale=config.noise_scale, noise_w_scale=config.noise_w_scale
        )
        self._max_words = config.max_words
        self._max_phonemes = config.max_phonemes
        self.voice_path = voice_path

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate)

    def synthesize(self, text: str, token: CancelToken | None = None) -> Iterator[Pcm16]:
        """One PCM array per sentence, or piece of a long one (tts.max_words, tts.max_phonemes), as each is ready."""
        for piece in short_pieces(text, self._max_words):
            for sentence in self._voice.phonemize(piece):
                for run in phoneme_runs(sentence, self._max_phonemes) if sentence else []:
                    if token is not None:
                        token.check()
                    yield self._speak_phonemes(run)

    def _speak_phonemes(self, phonemes: list[str]) -> Pcm16:
        """One run of the voice: its audio brought to full scale, as Piper's own synthesize does."""
        ids = self._voice.phonemes_to_ids(phonemes)
        audio = np.asarray(self._voice.phoneme_ids_to_audio(ids, self._synthesis), dtype=np.float32)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if self._synthesis.normalize_audio:
            audio = audio / peak if peak >= 1e-8 else np.zeros_like(audio)
        scaled: npt.NDArray[np.float32] = np.clip(audio * self._synthesis.volume, -1.0, 1.0) * 32767.0
        return scaled.astype(np.int16)

    def speak(self, text: str) -> Pcm16:
        parts = list(self.synthesize(text))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def warm_up(self) -> None:
        self.speak("Ready.")
