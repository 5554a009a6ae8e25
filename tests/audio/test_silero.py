"""Silero VAD as the endpointer's detector: the real model on real speech, clean and in noise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.pcm import SAMPLE_RATE, Samples, read_audio, to_pcm16
from edgevoice.audio.silero import WINDOW, SileroVad
from edgevoice.audio.vad import Endpointer, SpeechEnded, SpeechStarted
from edgevoice.bench.measure import true_end_of_speech
from edgevoice.bench.noise import mix_noise, pink_noise, trim
from edgevoice.config import Config, VadConfig
from edgevoice.errors import ConfigError

BUNDLED = Path(__file__).parents[2] / "edgevoice" / "data" / "question.wav"
LEAD_S = 1.0


def question(tail_s: float = 1.5) -> Samples:
    speech = trim(read_audio(BUNDLED))
    lead, tail = np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), np.zeros(int(tail_s * SAMPLE_RATE), np.float32)
    return np.concatenate([lead, speech, tail])


def frames(samples: Samples, frame_ms: int) -> list[bytes]:
    pcm = to_pcm16(samples)
    step = SAMPLE_RATE * frame_ms // 1000
    return [pcm[i : i + step].tobytes() for i in range(0, len(pcm) - step + 1, step)]


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_speech_is_heard_where_it_is_and_silence_is_not(frame_ms: int) -> None:
    samples = question()
    end_ms = true_end_of_speech(samples) * 1000 // SAMPLE_RATE
    vad = SileroVad()
    flags = [vad.is_speech(frame) for frame in frames(samples, frame_ms)]
    speech_ms = [i * frame_ms for i, flag in enumerate(flags) if flag]
    assert speech_ms, "no speech heard"
    # The first window that can hold speech ends 32 ms into it; Silero needs a window or two more.
    assert LEAD_S * 1000 <= speech_ms[0] <= LEAD_S * 1000 + 150
    assert end_ms - 100 <= speech_ms[-1] <= end_ms + 150
    assert vad.windows == len(flags) * frame_ms * SAMPLE_RATE // 1000 // WINDOW


def test_the_scores_do_not_depend_on_how_the_audio_is_cut() -> None:
    samples = question(tail_s=0.2)
    whole = SileroVad().score(samples)
    pieces = SileroVad()
    cut = []
    for start in range(0, len(samples), 777):
        cut += pieces.score(samples[start : start + 777])
    assert len(whole) == len(samples) // WINDOW
    assert cut == pytest.approx(whole, abs=1e-5)


def test_noise_alone_is_not_speech() -> None:
    vad = SileroVad()
    noise = pink_noise(5 * SAMPLE_RATE, seed=3) * 0.05
    flags = [vad.is_speech(frame) for frame in frames(noise, 20)]
    assert sum(flags) <= 2, f"{sum(flags)} noise frames taken for speech"


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0])
def test_in_noise_the_turn_ends_soon_after_the_speech(snr_db: float) -> None:
    clean = question()
    end_ms = true_end_of_speech(clean) * 1000 // SAMPLE_RATE
    noisy = mix_noise(clean, snr_db, seed=1)
    vad = VadConfig(detector="silero")
    endpointer = Endpointer(vad)
    events = [event for frame in frames(noisy, vad.frame_ms) for event in endpointer.feed(frame)]
    started = [e for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(started) == len(ended) == 1, events
    # The hangover is counted from the last frame Silero calls speech: the speech's own end, or a few
    # windows after it (its score decays over 100-150 ms once the voice stops, more slowly in noise).
    # webrtcvad, on the same clip at 5 dB, hears the noise as speech going on and never ends the turn.
    assert -40 <= ended[0].end_ms - end_ms <= 200, (ended[0].end_ms, end_ms)
    assert ended[0].decided_ms - end_ms <= vad.hangover_ms + 200


def test_the_detector_is_chosen_by_config() -> None:
    silence = bytes(640)
    assert Endpointer(VadConfig(detector="webrtc")).feed(silence * 10) == []
    assert Endpointer(VadConfig(detector="silero")).feed(silence * 10) == []
    with pytest.raises(ConfigError, match=r"vad\.detector"):
        dataclasses.replace(Config(), vad=VadConfig(detector="energy")).validate()
    with pytest.raises(ValueError, match="threshold"):
        SileroVad(threshold=1.0)
