"""PCM samples: reading any audio file into 16 kHz mono, resampling, int16 conversion, WAV writing."""

from __future__ import annotations

import errno
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from edgevoice.atomic import atomic_file
from edgevoice.errors import AudioError

SAMPLE_RATE = 16_000
"""The rate of everything between the microphone and whisper.cpp."""

Samples = npt.NDArray[np.float32]
Pcm16 = npt.NDArray[np.int16]


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    if from_rate == to_rate:
        return samples
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"cannot resample from {from_rate} Hz to {to_rate} Hz")
    return np.asarray(soxr.resample(samples, from_rate, to_rate, quality="HQ"), dtype=np.float32)


def read_audio(path: Path, rate: int = SAMPLE_RATE) -> Samples:
    """Any file libsndfile reads (WAV, FLAC, OGG...), any rate and channel count, as mono float32 at rate."""
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"{path}: not an audio file that can be read ({err})") from None
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(np.ascontiguousarray(mono), int(file_rate), rate)


def to_pcm16(samples: Samples) -> Pcm16:
    clean = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return (np.clip(clean, -1.0, 1.0) * 32767.0).astype(np.int16)


def from_pcm16(pcm: bytes | Pcm16) -> Samples:
    values = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
    return values.astype(np.float32) / 32768.0


def write_wav(path: Path, pcm: Pcm16, rate: int) -> None:
    """Write 16-bit mono WAV atomically: a full disk leaves the old file (if any) untouched."""
    try:
        with atomic_file(Path(path), 0o644) as raw, wave.open(raw, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm.astype("<i2").tobytes())
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise AudioError(f"{path}: disk full, nothing was written") from None
        raise AudioError(f"{path}: cannot write ({err.strerror})") from None


class StreamResampler:
    """Resamples a stream of 16-bit mono PCM chunk by chunk, carrying filter state across chunk edges."""

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise AudioError(f"cannot resample from {from_rate} Hz to {to_rate} Hz")
        self.from_rate, self.to_rate = from_rate, to_rate
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32")

    def feed(self, pcm: bytes) -> bytes:
        if self._stream is None:
            return pcm
        out = self._stream.resample_chunk(from_pcm16(pcm))
        return to_pcm16(np.asarray(out, dtype=np.float32)).tobytes()
