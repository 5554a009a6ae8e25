"""Speech to text on the converted tiny.en model: words come back from two different voices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.pcm import SAMPLE_RATE, Samples
from edgevoice.bench import pauses
from edgevoice.bench.noise import mix_noise, trim
from edgevoice.bench.pauses import framed
from edgevoice.bench.wer import word_error_rate
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.stt import WhisperStt, runaway
from edgevoice.engines.worker import Cancelled, CancelToken
from edgevoice.models.convert_cmd import convert_whisper
from edgevoice.models.registry import DEFAULT_STT_SOURCE, Kind, resolve
from edgevoice.models.whisper_ggml import WeightType
from tests.conftest import SENTENCES


def _corpus_wer(transcribe: Callable[[Samples], str], speak: Callable[[str], Samples]) -> float:
    errors = 0.0
    words = 0
    for sentence in SENTENCES:
        heard = transcribe(speak(sentence))
        n = len(sentence.split())
        errors += word_error_rate(sentence, heard) * n
        words += n
        print(f"{sentence!r} -> {heard!r}")
    return errors / words


def test_espeak_speech_is_transcribed(engines: Engines, espeak: Callable[[str], Samples]) -> None:
    assert _corpus_wer(engines.stt.transcribe, espeak) < 0.2


def test_piper_speech_is_transcribed(engines: Engines, piper_speech: Callable[[str], Samples]) -> None:
    assert _corpus_wer(engines.stt.transcribe, piper_speech) < 0.2


@pytest.mark.slow
def test_f16_conversion_transcribes(config: Config, tmp_path: Path, espeak: Callable[[str], Samples]) -> None:
    """The default file has 8-bit weights; the 16-bit one (--type f16) is written and heard as well."""
    out = tmp_path / "ggml-tiny.en-f16.bin"
    assert convert_whisper(DEFAULT_STT_SOURCE.locate(), out, WeightType.F16)
    assert not convert_whisper(DEFAULT_STT_SOURCE.locate(), out, WeightType.F16), "second run must be a no-op"
    assert out.stat().st_size > 1.6 * resolve(config, Kind.STT).path.stat().st_size
    stt = WhisperStt(config.stt, out)
    assert _corpus_wer(stt.transcribe, espeak) < 0.2


@pytest.mark.parametrize(
    ("name", "samples"),
    [
        ("empty", np.zeros(0, dtype=np.float32)),
        ("a few samples", np.full(40, 0.3, dtype=np.float32)),
        ("silence", np.zeros(3 * SAMPLE_RATE, dtype=np.float32)),
        ("dc offset", np.full(2 * SAMPLE_RATE, 0.7, dtype=np.float32)),
        ("nan and inf", np.array([np.nan, np.inf, -np.inf, 0.5] * SAMPLE_RATE, dtype=np.float32)),
        ("clipped square", np.sign(np.sin(np.arange(2 * SAMPLE_RATE) / 8)).astype(np.float32) * 40.0),
    ],
)
def test_hostile_audio_never_reaches_whisper_raw(engines: Engines, name: str, samples: Samples) -> None:
    text = engines.stt.transcribe(samples)
    assert isinstance(text, str)
    if name in ("empty", "a few samples", "silence", "dc offset"):
        assert text == ""


def test_audio_ctx_is_sized_to_the_clip(engines: Engines) -> None:
    stt = engines.stt
    assert engines.config.stt.audio_ctx_min == 320
    assert stt.audio_ctx_for(2 * SAMPLE_RATE) == 320
    assert stt.audio_ctx_for(10 * SAMPLE_RATE) == 768
    assert stt.audio_ctx_for(60 * SAMPLE_RATE) == 1500


def test_decoding_loop_is_retried_with_full_context(
    engines: Engines, espeak: Callable[[str], Samples], monkeypatch: pytest.MonkeyPatch
) -> None:
    stt = engines.stt
    real_decode = stt._decode
    contexts: list[int] = []

    def looping_when_shortened(clip: Samples, audio_ctx: int, token: CancelToken | None) -> str:
        # What tiny.en does now and then at a short context: the same sentence over and over.
        contexts.append(audio_ctx)
        text = real_decode(clip, audio_ctx, token)
        return f"{text} {text} {text}" if audio_ctx < 640 else text

    monkeypatch.setattr(stt, "_decode", looping_when_shortened)
    sentence = "What is the capital of France?"
    assert word_error_rate(sentence, stt.transcribe(espeak(sentence))) < 0.2
    assert contexts == [320, 640]  # once, at twice the context


@pytest.mark.parametrize(
    ("text", "seconds", "looped"),
    [
        ("What is the capital of France?", 2.0, False),
        ("What is the capital of France? What is the capital of France?", 2.5, True),
        ("the the the the the the the the the the the the the the the the the", 2.0, True),
        ("Yes, yes, I know.", 1.5, False),
        ("one two three four five six seven eight nine ten eleven twelve thirteen", 10.0, False),
    ],
)
def test_runaway_detection(text: str, seconds: float, looped: bool) -> None:
    assert runaway(text, seconds) is looped


def test_a_cancelled_transcription_raises_instead_of_answering(
    engines: Engines, espeak: Callable[[str], Samples]
) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        engines.stt.transcribe(espeak("What is the capital of France?"), token)
    # The context is fine afterwards.
    assert "capital" in engines.stt.transcribe(espeak("What is the capital of France?"), CancelToken()).lower()


DOUBTFUL_CLIPS = [
    ("en-gb-scotland", "How many minutes are in three hours?", 17),
    ("en-us", "What is the largest ocean on earth?", 7),
]
"""Noisy clips whose greedy decode whisper doubts: with temperature fallback (stt.temperature_inc 0.2)
their words differed between runs of one process."""


@pytest.mark.slow
@pytest.mark.parametrize(("voice", "text", "seed"), DOUBTFUL_CLIPS)
def test_the_same_clip_gives_the_same_words_every_time(
    config: Config, engines: Engines, voice: str, text: str, seed: int
) -> None:
    assert config.stt.temperature_inc == 0.0, "the default decodes greedily"
    clip = mix_noise(framed(trim(pauses.espeak(voice)(text)), 0.5, 0.5), 10.0, seed)
    heard = {engines.stt.transcribe(clip) for _ in range(5)}
    assert len(heard) == 1, heard
