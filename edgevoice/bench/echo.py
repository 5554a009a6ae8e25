"""`python -m edgevoice.bench.echo`: the box hearing its own reply, measured on its real sound devices.

A reply from Piper plays on the default output while the default input records; the mic frames
go through what the box's own microphone loop uses (the echo canceller, the echo gate while it
converges, then the endpointer), stamped the same way. Meant for a PulseAudio room whose speaker sink loops
into the mic source (the tests' null-sink rig): there the echo's level is known, and a person can
be played into the room over the reply (--user, with paplay) at the echo's own level.

Reported: ERLE (dB) over the reply once converged, the convergence time (from the reply's
start to the first 250 ms of echo cut by 10 dB or more), and for a person talking
over it: when the endpointer heard speech start against when they began, and what whisper
hears in that turn (their first word kept or not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile

from edgevoice.audio.aec import EchoCanceller
from edgevoice.audio.echo_gate import EchoGate
from edgevoice.audio.echo_path import EchoPath
from edgevoice.audio.pcm import SAMPLE_RATE, from_pcm16, read_audio, resample, to_pcm16
from edgevoice.audio.portaudio import load_sounddevice
from edgevoice.audio.vad import Endpointer, SpeechEnded, SpeechStarted
from edgevoice.config import Config, load_config

REPLY = (
    "The capital of France is Paris. It is a large city on the river Seine, famous for its museums, "
    "its cafes and the Eiffel Tower, which was built for the world fair of eighteen eighty nine."
)
FRAME_MS = 20
WINDOW_S = 0.25
CONVERGED_DB = 10.0
MAX_LATENCY_S = 1.0
LISTEN_FIRST_S = 3.5
"""The streams run this long before the reply, as the daemon's run from its start: over their first
seconds PulseAudio's stamps jump (the mic's restarted three times in its first 1.8 s) and the clocks
that pair them settle (edgevoice.audio.aec.StreamClock)."""


@dataclass
class EchoReport:
    erle_db: float | None = None
    """Echo power in over echo power out of the canceller (before the gate), over the reply after
    convergence, the person's speech left out; 0 with --gate-only."""
    convergence_s: float | None = None
    reply_s: float = 0.0
    reply_at_s: float | None = None
    """When the reply's echo began, on the mic's timeline (found in the recording by its waveform)."""
    user_at_s: float | None = None
    """When the person began, on the mic's timeline (found in the recording of what they played)."""
    heard: list[dict[str, Any]] = field(default_factory=list)
    """The endpointer's turns: start_ms and end_ms on the mic's timeline, and whisper's words."""
    gate_passed_while_speaking: int = 0
    echo_lag_ms: float | None = None
    """When the reply's echo reached the mic minus when the speaker's stamps said it played, both on the
    stamps' clock: the canceller and the gate assume it is not negative (by more than their lead)."""


def _stamp_gap(later: float, earlier: float) -> float:
    gap = later - earlier
    return gap if 0.0 <= gap <= MAX_LATENCY_S else 0.0


def _windows(signal: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    step = int(WINDOW_S * SAMPLE_RATE)
    count = len(signal) // step
    return np.asarray(np.mean(signal[: count * step].reshape(count, step) ** 2, axis=1), dtype=np.float64)


def erle(
    mic: npt.NDArray[np.int16], cleaned: npt.NDArray[np.int16], reply_start: int, reply_end: int, user: tuple[int, int]
) -> tuple[float | None, float | None]:
    """(ERLE after convergence in dB, convergence time in s) over the reply, the person's speech left out."""
    span = slice(reply_start, reply_end)
    into, out = _windows(mic[span].astype(np.float64)), _windows(cleaned[span].astype(np.float64))
    step = int(WINDOW_S * SAMPLE_RATE)
    starts = reply_start + np.arange(len(into)) * step
    echo_only = (into > into.max() * 1e-3) & ((starts + step <= user[0]) | (starts >= user[1]))
    gain_db = 10 * np.log10((into + 1.0) / (out + 1.0))
    converged = [i for i in range(len(into)) if echo_only[i] and gain_db[i] >= CONVERGED_DB]
    if not converged:
        return None, None
    settled = echo_only.copy()
    settled[: converged[0]] = False
    return float(10 * np.log10(into[settled].sum() / max(out[settled].sum(), 1.0))), converged[0] * WINDOW_S


def run(
    config: Config,
    user: Path | None,
    user_at_s: float,
    user_device: str,
    seconds: float,
    *,
    cancel: bool = True,
    save: Path | None = None,
) -> EchoReport:
    """cancel: the echo canceller, then the gate as its second line; False: the gate alone (as before).
    save: a folder for the recordings (mic.wav as heard, reference.wav as the canceller was given the
    speaker's output beside it, cancelled.wav after the canceller, cleaned.wav as the endpointer heard it)."""
    from edgevoice.engines.stt import WhisperStt  # noqa: PLC0415 (the models only for this bench)
    from edgevoice.engines.tts import PiperTts  # noqa: PLC0415
    from edgevoice.models.registry import Kind, resolve  # noqa: PLC0415

    sd = load_sounddevice()
    tts = PiperTts(config.tts, resolve(config, Kind.TTS).path)
    stt = WhisperStt(config.stt, resolve(config, Kind.STT).path)
    reply = tts.speak(REPLY)
    # The box listens a while before it answers: both streams have settled by the time it speaks.
    played_out = np.concatenate([np.zeros(int(LISTEN_FIRST_S * tts.sample_rate), dtype=np.int16), reply])
    canceller = EchoCanceller() if cancel else None
    # What the box's microphone loop uses: the gate stands behind the canceller while it converges.
    echo = EchoPath(canceller, EchoGate())
    mic: list[npt.NDArray[np.int16]] = []
    cancelled: list[npt.NDArray[np.int16]] = []
    cleaned: list[npt.NDArray[np.int16]] = []
    references: list[npt.NDArray[np.int16]] = []
    played = 0
    reply_from = int(LISTEN_FIRST_S * tts.sample_rate)
    reply_plays_at: list[float] = []
    mic_stamps: list[float] = []

    def on_output(out: np.ndarray, frames: int, timing: Any, status: Any) -> None:
        nonlocal played
        chunk = played_out[played : played + frames]
        out[: len(chunk), 0] = chunk
        out[len(chunk) :, 0] = 0
        plays_at = time.monotonic() + _stamp_gap(timing.outputBufferDacTime, timing.currentTime)
        if played <= reply_from < played + frames:
            reply_plays_at.append(plays_at + (reply_from - played) / tts.sample_rate)
        played += len(chunk)
        echo.speaker(out[:, 0], tts.sample_rate, plays_at, ran_dry=bool(status.output_underflow))

    def on_input(data: Any, _frames: int, timing: Any, status: Any) -> None:
        captured_at = time.monotonic() - _stamp_gap(timing.currentTime, timing.inputBufferAdcTime)
        frame = bytes(data)
        mic_stamps.append(captured_at)
        out = echo.mic(frame, captured_at, gap=bool(status.input_overflow))
        if canceller is not None:
            references.append(canceller.last_reference)
        mic.append(np.frombuffer(frame, dtype="<i2").copy())
        cancelled.append(np.frombuffer(echo.cancelled, dtype="<i2").copy())
        cleaned.append(np.frombuffer(out, dtype="<i2").copy())

    blocksize = SAMPLE_RATE * FRAME_MS // 1000
    with (
        sd.RawInputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=blocksize, callback=on_input),
        sd.OutputStream(samplerate=tts.sample_rate, channels=1, dtype="int16", callback=on_output),
    ):
        started = time.monotonic()
        if user is not None:
            time.sleep(max(0.0, user_at_s - (time.monotonic() - started)))
            subprocess.run(["paplay", f"--device={user_device}", str(user)], check=True, timeout=60)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    raw, clean = np.concatenate(mic), np.concatenate(cleaned)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        recordings = {"mic": mic, "cancelled": cancelled, "cleaned": cleaned, "reference": references}
        for name, frames in recordings.items():
            if frames:
                soundfile.write(str(save / f"{name}.wav"), np.concatenate(frames), SAMPLE_RATE, subtype="PCM_16")
    report = EchoReport(
        reply_s=len(reply) / tts.sample_rate, gate_passed_while_speaking=echo.gate.passed_while_speaking
    )
    # Where the reply is in the mic: found by its waveform, which needs no trust in the stamps.
    reply_16k = to_pcm16(resample(from_pcm16(reply), tts.sample_rate, SAMPLE_RATE)).astype(np.float64)
    start = _locate(reply_16k, raw.astype(np.float64))
    end = min(len(raw), start + len(reply_16k))
    report.reply_at_s = start / SAMPLE_RATE
    frame_samples = SAMPLE_RATE * FRAME_MS // 1000
    if reply_plays_at and start // frame_samples < len(mic_stamps):
        heard_at = mic_stamps[start // frame_samples] + start % frame_samples / SAMPLE_RATE
        report.echo_lag_ms = round((heard_at - reply_plays_at[0]) * 1000, 1)
    user_span = (len(raw), len(raw))
    if user is not None:
        # Where the person is in the mic: the recording played, found in what the mic heard.
        voice = to_pcm16(read_audio(user)).astype(np.float64)
        found = _locate(voice, raw.astype(np.float64))
        user_span = (found, found + len(voice))
        report.user_at_s = found / SAMPLE_RATE
    report.erle_db, report.convergence_s = erle(raw, np.concatenate(cancelled), start, end, user_span)
    endpointer = Endpointer(config.vad)
    events = endpointer.feed(clean.tobytes()) + endpointer.flush()
    begun: dict[str, int] = {}
    for event in events:
        if isinstance(event, SpeechStarted):
            begun = {"start_ms": event.start_ms}
        elif isinstance(event, SpeechEnded):
            text = stt.transcribe(from_pcm16(event.pcm))
            report.heard.append({**begun, "end_ms": event.end_ms, "text": text})
    return report


def _locate(voice: npt.NDArray[np.float64], heard: npt.NDArray[np.float64]) -> int:
    """The sample at which the recording `voice` starts in `heard`, by cross-correlation (FFT)."""
    size = 1 << int(np.ceil(np.log2(len(heard) + len(voice))))
    correlation = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(voice, size)), size)[: len(heard)]
    return int(np.argmax(correlation))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgevoice.bench.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--user", type=Path, help="a recording played over the reply (paplay) as the person")
    parser.add_argument("--user-at", type=float, default=5.0, help="seconds after the start to play it")
    parser.add_argument("--user-device", default="room", help="the PulseAudio sink the person is played into")
    parser.add_argument("--seconds", type=float, default=16.0, help="how long to listen")
    parser.add_argument("--gate-only", action="store_true", help="no echo canceller: the echo gate alone")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--save", type=Path, help="a folder for the recordings: mic, reference, cancelled, cleaned")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    cancel = not args.gate_only
    report = run(config, args.user, args.user_at, args.user_device, args.seconds, cancel=cancel, save=args.save)
    text = json.dumps(asdict(report), indent=2)
    if args.json is not None:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
