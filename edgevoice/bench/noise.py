"""Test audio made with numpy: speech trimmed to its voiced part, and room noise mixed in at an SNR."""

from __future__ import annotations

import numpy as np

from edgevoice.audio.pcm import SAMPLE_RATE, Samples
from edgevoice.bench.measure import true_end_of_speech


def trim(samples: Samples) -> Samples:
    """The speech without leading or trailing silence (within 35 dB of the loudest 10 ms)."""
    end = true_end_of_speech(samples)
    start = len(samples) - true_end_of_speech(samples[::-1].copy())
    return samples[start:end]


def pink_noise(n: int, seed: int) -> Samples:
    """Noise whose power falls 3 dB an octave, like a room's fans and traffic; unit RMS."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    noise = np.fft.irfft(spectrum, n)
    unit: Samples = (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)
    return unit


def mix_noise(samples: Samples, snr_db: float, seed: int) -> Samples:
    """samples with noise snr_db under the speech's level (its RMS over the frames within 35 dB of the loudest)."""
    hop = SAMPLE_RATE // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    speech = power[power >= power.max() * 10 ** (-35 / 10)]
    level = float(np.sqrt(speech.mean()))
    mixed = samples + pink_noise(len(samples), seed) * level * 10 ** (-snr_db / 20)
    return np.clip(mixed, -1.0, 1.0).astype(np.float32)
