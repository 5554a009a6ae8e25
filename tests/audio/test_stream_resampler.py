"""StreamResampler: client audio at any rate, chunk by chunk, into 16 kHz with no seams."""

from __future__ import annotations

import numpy as np
import pytest

from edgevoice.audio.pcm import SAMPLE_RATE, StreamResampler
from edgevoice.errors import AudioError

MAX_DELAY_S = 0.1
"""Audio the filter may still hold back at the end of a stream that is never flushed."""


def sine(rate: int, hz: float, seconds: float, amplitude: float = 0.5) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes()


def feed_in_chunks(resampler: StreamResampler, pcm: bytes, samples_per_chunk: int) -> bytes:
    step = 2 * samples_per_chunk
    return b"".join(resampler.feed(pcm[i : i + step]) for i in range(0, len(pcm), step))


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0


def dominant_hz(signal: np.ndarray, rate: int) -> float:
    window = signal * np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(window))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[int(np.argmax(spectrum))])


def test_16k_passes_through_unchanged() -> None:
    resampler = StreamResampler(SAMPLE_RATE)
    pcm = sine(SAMPLE_RATE, 440, 0.1)
    assert resampler.feed(pcm) == pcm
    assert resampler.feed(b"") == b""


def test_48k_to_16k_keeps_a_1khz_tone() -> None:
    resampler = StreamResampler(48_000)
    pcm = sine(48_000, 1000, 2.0)
    out = feed_in_chunks(resampler, pcm, 1024)
    expected = len(pcm) // 2 // 3
    assert len(out) % 2 == 0
    assert expected - MAX_DELAY_S * SAMPLE_RATE <= len(out) // 2 <= expected

    steady = samples(out)[SAMPLE_RATE // 10 :]
    assert dominant_hz(steady, SAMPLE_RATE) == pytest.approx(1000, abs=SAMPLE_RATE / len(steady) * 1.5)
    rms = float(np.sqrt(np.mean(steady**2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.05), "the level survives resampling"


def test_8k_to_16k_doubles_and_keeps_the_tone() -> None:
    resampler = StreamResampler(8000)
    pcm = sine(8000, 440, 2.0)
    out = feed_in_chunks(resampler, pcm, 160)
    expected = 2 * (len(pcm) // 2)
    assert expected - MAX_DELAY_S * SAMPLE_RATE <= len(out) // 2 <= expected
    steady = samples(out)[SAMPLE_RATE // 10 :]
    assert dominant_hz(steady, SAMPLE_RATE) == pytest.approx(440, abs=SAMPLE_RATE / len(steady) * 1.5)


@pytest.mark.parametrize("rate", [22_050, 44_100])
def test_other_rates_give_the_right_length(rate: int) -> None:
    out = feed_in_chunks(StreamResampler(rate), sine(rate, 300, 1.0), 1024)
    assert SAMPLE_RATE * (1 - MAX_DELAY_S) <= len(out) // 2 <= SAMPLE_RATE


def test_chunk_edges_leave_no_seams() -> None:
    pcm = sine(48_000, 1000, 0.5)
    whole = samples(StreamResampler(48_000).feed(pcm))
    chunked = samples(feed_in_chunks(StreamResampler(48_000), pcm, 1000))
    common = min(len(whole), len(chunked))
    assert common > 0.4 * SAMPLE_RATE
    assert np.max(np.abs(whole[:common] - chunked[:common])) < 3 / 32768


def test_empty_chunks_are_harmless() -> None:
    resampler = StreamResampler(48_000)
    assert resampler.feed(b"") == b""
    out = feed_in_chunks(resampler, sine(48_000, 1000, 0.5), 960)
    assert len(resampler.feed(b"")) % 2 == 0
    assert len(out) > 0


def test_full_scale_input_does_not_wrap_around() -> None:
    loud = sine(48_000, 1000, 0.5, amplitude=1.0)
    out = samples(feed_in_chunks(StreamResampler(48_000), loud, 1024))
    # A clipped peak stays near +-1; a wrapped one would flip sign between neighbours.
    assert np.max(np.abs(np.diff(out))) < 1.0


@pytest.mark.parametrize(("from_rate", "to_rate"), [(0, 16_000), (-8000, 16_000), (48_000, 0), (16_000, -1), (0, 0)])
def test_invalid_rates_raise_audio_error(from_rate: int, to_rate: int) -> None:
    with pytest.raises(AudioError, match="cannot resample"):
        StreamResampler(from_rate, to_rate)
