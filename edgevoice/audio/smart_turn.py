"""Has the speaker finished? pipecat's smart-turn v3.2 model on the audio of the turn so far.

The model is a Whisper-tiny encoder with a classifier on top, trained on turns cut just after the
speaker stops, complete or not: "what is the capital of France" and "set a timer for... " sound
different in pitch and rhythm before the words say so. It reads the last 8 seconds of the turn
as Whisper's log-mel spectrogram (80 bands, 10 ms hop), the audio before them padded with
silence, and gives the probability that the turn is complete. Features are computed here with
numpy, the same arithmetic as Whisper's feature extractor, so neither transformers nor pipecat
is needed. One decision costs tens of milliseconds of CPU: it runs off the event loop.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from edgevoice.audio.onnx_models import SMART_TURN, OnnxModel, packaged_model, shared_model
from edgevoice.audio.pcm import SAMPLE_RATE, Samples

SECONDS = 8
"""The model hears this much of the end of the turn."""
N_FFT = 400
HOP = 160
N_MELS = 80
FRAMES = SECONDS * SAMPLE_RATE // HOP
_NORMALISE_EPS = 1e-7
_POWER_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0
"""Log-mel values are clamped to this many decades under the loudest, as Whisper does."""


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear to 1 kHz (3 mels per 200 Hz), logarithmic above."""
    linear = 3.0 * hz / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = 200.0 * mel / 3.0
    log = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log, linear)


@functools.cache
def mel_filters() -> npt.NDArray[np.float64]:
    """Triangular filters (N_MELS x N_FFT/2+1) over 0-8 kHz, each scaled to unit area (Slaney)."""
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(SAMPLE_RATE / 2.0))), N_MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))


@functools.cache
def _window() -> npt.NDArray[np.float64]:
    """Periodic Hann window, as torch.stft uses."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def fit(samples: Samples) -> Samples:
    """The last SECONDS of the turn; a shorter turn is preceded by silence."""
    wanted = SECONDS * SAMPLE_RATE
    if len(samples) >= wanted:
        return np.asarray(samples[-wanted:], dtype=np.float32)
    return np.concatenate([np.zeros(wanted - len(samples), dtype=np.float32), samples.astype(np.float32)])


def log_mel(samples: Samples) -> npt.NDArray[np.float32]:
    """Whisper's input features (N_MELS x FRAMES) for the turn's audio (float, 16 kHz)."""
    audio = fit(samples)
    # Whisper's extractor normalises the waveform (zero mean, unit variance) over the padded window.
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + _NORMALISE_EPS)
    padded = np.pad(audio.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _window(), axis=-1)) ** 2
    mel = np.log10(np.maximum(mel_filters() @ power.T, _POWER_FLOOR))[:, :FRAMES]
    mel = np.maximum(mel, mel.max() - _DYNAMIC_RANGE)
    features: npt.NDArray[np.float32] = ((mel + 4.0) / 4.0).astype(np.float32)
    return features


def smart_turn_model() -> OnnxModel:
    """The smart-turn session this process shares (loaded on first use)."""
    return shared_model(packaged_model(SMART_TURN))


class SmartTurn:
    """probability(samples): how sure the model is that the turn heard so far is complete."""

    def __init__(self, model: OnnxModel | None = None) -> None:
        self._model = model or smart_turn_model()

    def probability(self, samples: Samples) -> float:
        """samples: the turn from its start to now (float, 16 kHz), its trailing pause included."""
        features = log_mel(samples)[np.newaxis, :, :]
        (output,) = self._model.run({"input_features": features})
        return float(np.asarray(output).reshape(-1)[0])
