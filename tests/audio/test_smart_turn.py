"""smart-turn: Whisper's log-mel features computed with numpy, and the model's verdict on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.onnx_models import SMART_TURN, packaged_model
from edgevoice.audio.pcm import SAMPLE_RATE, Samples, from_pcm16, read_audio, resample
from edgevoice.audio.smart_turn import (
    FRAMES,
    HOP,
    N_FFT,
    N_MELS,
    SECONDS,
    SmartTurn,
    fit,
    log_mel,
    mel_filters,
)
from edgevoice.bench.noise import trim
from edgevoice.config import Config
from edgevoice.models.registry import Kind, resolve
from edgevoice.turn_end import turn_complete

BUNDLED = Path(__file__).parents[2] / "edgevoice" / "data" / "question.wav"
BIN_HZ = SAMPLE_RATE / N_FFT


def tone(hz: float, seconds: float, level: float = 0.3) -> Samples:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def with_pause(speech: Samples, pause_ms: int) -> Samples:
    return np.concatenate([speech, np.zeros(SAMPLE_RATE * pause_ms // 1000, dtype=np.float32)])


def test_mel_filters_are_slaney_triangles_of_unit_area() -> None:
    filters = mel_filters()
    assert filters.shape == (N_MELS, N_FFT // 2 + 1)
    assert (filters >= 0).all()
    peaks = filters.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all(), "bands go up in frequency"
    assert peaks[0] <= 1
    assert peaks[-1] * BIN_HZ > 7000
    # Slaney normalisation: each triangle has unit area in Hz; sampled on 40 Hz bins, the wide ones show it.
    wide = (filters > 0).sum(axis=1) >= 8
    assert wide.sum() >= 15
    assert filters[wide].sum(axis=1) * BIN_HZ == pytest.approx(1.0, rel=0.1)


def test_features_have_whisper_shape_and_range() -> None:
    features = log_mel(tone(440, 1.0))
    assert features.shape == (N_MELS, FRAMES) == (80, SECONDS * SAMPLE_RATE // HOP)
    assert features.dtype == np.float32
    # Clamped to 8 decades under the loudest, then (x + 4) / 4: a range of exactly 2.
    assert float(features.max() - features.min()) == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("hz", [300.0, 1000.0, 3000.0])
def test_a_tone_is_loudest_in_the_band_around_it(hz: float) -> None:
    features = log_mel(tone(hz, 2.0))
    loudest = int(features[:, -100:].mean(axis=1).argmax())
    centre_hz = mel_filters()[loudest].argmax() * BIN_HZ
    assert abs(centre_hz - hz) <= 0.15 * hz + BIN_HZ


def test_a_short_turn_is_heard_at_the_end_after_silence() -> None:
    features = log_mel(tone(1000, 1.0))
    energy = features.max(axis=0)
    assert energy[-90:].min() > energy[: FRAMES - 110].max() + 0.5, "the tone fills the last second"
    assert np.ptp(energy[: FRAMES - 110]) < 1e-3, "the padding before it is uniform silence"


def test_a_long_turn_keeps_its_last_seconds() -> None:
    samples = np.arange(10 * SAMPLE_RATE, dtype=np.float32)
    kept = fit(samples)
    assert len(kept) == SECONDS * SAMPLE_RATE
    assert kept[-1] == samples[-1]
    assert kept[0] == samples[2 * SAMPLE_RATE]


def test_the_model_file_comes_with_the_installed_package() -> None:
    path = packaged_model(SMART_TURN)
    assert path.name == "smart-turn-v3.2-cpu.onnx"
    assert 5_000_000 < path.stat().st_size < 20_000_000


@pytest.mark.slow
def test_a_finished_question_is_complete() -> None:
    model = SmartTurn()
    probability = model.probability(with_pause(trim(read_audio(BUNDLED)), 200))
    assert 0.0 <= probability <= 1.0
    assert probability > 0.5


@pytest.mark.slow
def test_words_cut_short_by_the_voice_are_not_complete() -> None:
    # Piper reads "Turn on the" with the pitch of a sentence going on; "Turn on the lights" ends.
    from edgevoice.engines.tts import PiperTts  # noqa: PLC0415

    config = Config()
    tts = PiperTts(config.tts, resolve(config, Kind.TTS).path)
    model = SmartTurn()

    def probability(text: str) -> float:
        """The median over five readings: Piper reads a sentence a little differently each time, and
        now and then the model hears one reading of words cut short as finished."""
        readings = [
            model.probability(
                with_pause(trim(resample(from_pcm16(tts.speak(text)), tts.sample_rate, SAMPLE_RATE)), 160)
            )
            for _ in range(5)
        ]
        return float(np.median(readings))

    assert probability("Can you tell me the") < 0.5
    assert probability("Turn on the") < 0.5
    assert probability("Turn on the kitchen lights, please.") > 0.5


@pytest.mark.slow
def test_a_pause_ends_the_turn_when_the_model_and_the_words_agree() -> None:
    assert turn_complete(0.9, "What is the capital of France?", 0.5)
    assert not turn_complete(0.4, "What is the capital of France?", 0.5), "the voice says more is coming"
    assert not turn_complete(0.9, "Set a timer for", 0.5), "the words say more is coming"
    assert not turn_complete(0.9, "Remind me to buy milk,", 0.5)
    assert not turn_complete(0.9, None, 0.5), "no transcript yet: wait for it"
    assert not turn_complete(0.9, "", 0.5), "nothing heard in the words"
