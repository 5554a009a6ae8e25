"""The echo gate on synthetic rooms: the echo is the reply delayed and attenuated, the user a different voice on top."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from edgevoice.audio.echo_gate import EchoGate, EchoGateSettings
from edgevoice.audio.pcm import SAMPLE_RATE, resample
from edgevoice.audio.vad import Endpointer, SpeechStarted
from edgevoice.config import VadConfig

FRAME = SAMPLE_RATE // 50
"""Mic frames of 20 ms, as the device path feeds them."""
FRAME_S = FRAME / SAMPLE_RATE
REPLY_START_S = 0.5
REPLY_S = 3.0
ECHO_DELAY_S = 0.06
REVERB = ((0.0, 1.0), (0.03, 0.4), (0.07, 0.2), (0.12, 0.1))
"""The room's echo: (delay after the direct sound in seconds, gain)."""
ROOM_GAIN = float(np.sqrt(sum(gain**2 for _, gain in REVERB)))
"""What the reverberation adds to the echo's energy: the coupling a gate should measure is coupling * ROOM_GAIN."""
Signal = npt.NDArray[np.float32]


def voice(seconds: float, seed: int, level: float, syllables_hz: float, rate: int = SAMPLE_RATE) -> Signal:
    """Speech-like: noise and a buzz under syllable-shaped bumps, with silent gaps between them."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * syllables_hz * t + rng.uniform(0, np.pi)), 0.0, None)
    pitch = rng.uniform(100, 220)
    carrier = 0.6 * np.sign(np.sin(2 * np.pi * pitch * t)) + 0.8 * rng.standard_normal(len(t))
    return (level * envelope * carrier).astype(np.float32)


def place(signal: Signal, start_s: float, total_s: float, rate: int = SAMPLE_RATE) -> Signal:
    out = np.zeros(int(total_s * rate), dtype=np.float32)
    start = int(start_s * rate)
    piece = signal[: len(out) - start]
    out[start : start + len(piece)] = piece
    return out


def echo_of(reply: Signal, coupling: float, delay_s: float = ECHO_DELAY_S) -> Signal:
    """The reply as the mic hears it: late, attenuated, with a short decaying reverberation."""
    delay = int(delay_s * SAMPLE_RATE)
    room = np.zeros(len(reply) + delay + SAMPLE_RATE // 5, dtype=np.float32)
    for extra_s, gain in REVERB:
        at = delay + int(extra_s * SAMPLE_RATE)
        room[at : at + len(reply)] += gain * reply
    return (coupling * room[: len(reply)]).astype(np.float32)


def pcm(signal: Signal) -> npt.NDArray[np.int16]:
    return (np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)


def run(gate: EchoGate, reference: Signal, mic: Signal, reference_rate: int = SAMPLE_RATE) -> list[bytes]:
    """Drive the gate as the two device callbacks would: the speaker's buffer ahead of playback, mic frames in turn."""
    ref = pcm(reference)
    mic16 = pcm(mic)
    chunk = reference_rate // 100
    fed = 0
    out = []
    for index in range(len(mic16) // FRAME):
        at = index * FRAME_S
        while fed < len(ref) and fed / reference_rate < at + 0.1:
            gate.reference(ref[fed : fed + chunk], reference_rate, fed / reference_rate)
            fed += chunk
        out.append(gate.process(mic16[index * FRAME : (index + 1) * FRAME].tobytes(), at))
    return out


def frames_of(signal: Signal) -> list[bytes]:
    samples = pcm(signal)
    return [samples[i * FRAME : (i + 1) * FRAME].tobytes() for i in range(len(samples) // FRAME)]


def rms(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64) / 32768
    return float(np.sqrt(np.mean(samples**2)))


def frame_range(start_s: float, end_s: float) -> range:
    return range(round(start_s / FRAME_S), round(end_s / FRAME_S))


def reply_and_echo(total_s: float, coupling: float, seed: int = 1) -> tuple[Signal, Signal]:
    reply = place(voice(REPLY_S, seed, 0.25, 3.0), REPLY_START_S, total_s)
    return reply, echo_of(reply, coupling)


def test_transparent_while_the_speaker_is_silent() -> None:
    gate = EchoGate()
    user = place(voice(2.0, 7, 0.05, 4.0), 0.3, 3.0)
    quiet_room = 0.001 * np.random.default_rng(3).standard_normal(len(user)).astype(np.float32)
    mic = user + quiet_room
    out = run(gate, np.zeros_like(mic), mic)
    assert out == frames_of(mic)
    assert gate.gated_frames == 0
    assert gate.frames_while_speaking == 0
    assert gate.frames == len(out)


def test_echo_alone_becomes_silence_through_the_reply_and_its_tail() -> None:
    total = 5.0
    reply, echo = reply_and_echo(total, coupling=0.8)
    gate = EchoGate()
    out = run(gate, reply, echo)
    heard = [i for i, frame in enumerate(frames_of(echo)) if rms(frame) > 0.002]
    assert len(heard) > 100
    assert all(out[i] == bytes(2 * FRAME) for i in heard), "echo leaked through"
    assert gate.gated_frames == gate.frames_while_speaking
    assert gate.passed_while_speaking == 0
    assert gate.gated_frames >= len(heard)


def test_transparent_again_once_the_tail_has_passed() -> None:
    total = 5.0
    reply, echo = reply_and_echo(total, coupling=0.8)
    later_user = place(voice(0.8, 9, 0.02, 4.0), 4.2, total)
    gate = EchoGate()
    out = run(gate, reply, echo + later_user)
    reply_end = REPLY_START_S + REPLY_S
    tail_end = reply_end + gate.settings.tail_ms / 1000 + gate.settings.lead_ms / 1000
    after = frame_range(tail_end + FRAME_S, total)
    assert [out[i] for i in after] == [frames_of(echo + later_user)[i] for i in after]
    # A quiet user (0.02) right after the reply is still heard: only the tail is gated.
    assert any(rms(out[i]) > 0.005 for i in frame_range(4.2, 5.0))
    last_gated = max(i for i, frame in enumerate(out) if frame == bytes(2 * FRAME) and rms(frames_of(echo)[i]) > 0)
    assert last_gated * FRAME_S <= tail_end


def test_user_talking_over_the_reply_passes() -> None:
    total = 8.0
    reply = place(voice(7.0, 1, 0.25, 3.0), REPLY_START_S, total)
    echo = echo_of(reply, 0.3)
    # Some seconds into the reply (the gate has measured the room), the user speaks up: louder
    # than the echo, quieter than the reply as played.
    user = place(voice(1.2, 11, 0.4, 5.0), 4.0, total)
    gate = EchoGate()
    mic = echo + user
    out = run(gate, reply, mic)
    echo_peak = max(rms(frame) for frame in frames_of(echo))
    speaking = [i for i, frame in enumerate(frames_of(user)) if rms(frame) > 3 * echo_peak]
    assert len(speaking) > 15
    passed = [i for i in speaking if out[i] == frames_of(mic)[i]]
    assert len(passed) >= 0.8 * len(speaking), f"{len(passed)} of {len(speaking)} of the user's frames passed"
    # Echo away from the user still does not pass.
    for i in [*frame_range(REPLY_START_S, 3.9), *frame_range(5.5, total)]:
        assert out[i] == bytes(2 * FRAME), f"echo passed at {i * FRAME_S:.2f} s"
    assert gate.passed_while_speaking >= len(passed)


def vad_starts(frames: list[bytes]) -> list[int]:
    """Stream times (ms) at which an endpointer (energy detector) would start a turn."""
    endpointer = Endpointer(
        VadConfig(frame_ms=20, min_speech_ms=200, hangover_ms=500),
        is_speech=lambda frame: rms(frame) > 0.01,
    )
    return [e.decided_ms for e in endpointer.feed(b"".join(frames)) if isinstance(e, SpeechStarted)]


def test_endpointer_hears_no_turn_in_the_echo_but_hears_the_barge_in() -> None:
    total = 6.0
    reply, echo = reply_and_echo(total, coupling=0.8)
    # The room without a gate: the endpointer takes the reply's echo for a user's turn.
    assert vad_starts(frames_of(echo))
    assert vad_starts(run(EchoGate(), reply, echo)) == []
    user = place(voice(1.0, 5, 0.8, 5.0), 2.0, total)
    starts = vad_starts(run(EchoGate(), reply, echo + user))
    assert len(starts) == 1
    assert 2000 <= starts[0] <= 3000  # during the user's speech


def test_coupling_is_learned_from_the_echo() -> None:
    total = 10.0
    reply = place(voice(9.0, 2, 0.25, 3.0), 0.5, total)
    gate = EchoGate()
    assert gate.coupling == pytest.approx(EchoGateSettings().initial_coupling)
    run(gate, reply, echo_of(reply, 0.15))
    assert gate.coupling == pytest.approx(0.15 * ROOM_GAIN, rel=0.2)


def test_a_user_the_default_coupling_silences_passes_once_the_room_is_measured() -> None:
    total = 12.0
    reply = place(voice(11.0, 2, 0.25, 3.0), 0.5, total)
    echo = echo_of(reply, 0.15)
    early, late = (place(voice(1.0, 13, 0.25, 5.0), start, total) for start in (1.0, 9.0))
    # Before the gate has heard the room it assumes the echo is as loud as the reply: safe, but
    # the user must shout. Some seconds into the reply it knows better.
    passed_early = run(EchoGate(), reply, echo + early)
    passed_late = run(EchoGate(), reply, echo + late)
    heard_early = sum(1 for i in frame_range(1.0, 2.0) if passed_early[i] != bytes(2 * FRAME))
    heard_late = sum(1 for i in frame_range(9.0, 10.0) if passed_late[i] != bytes(2 * FRAME))
    assert heard_late >= 15
    assert heard_late >= 2 * heard_early


def test_coupling_rises_towards_a_louder_room_within_the_margin() -> None:
    total = 8.0
    reply = place(voice(7.0, 4, 0.2, 3.0), 0.5, total)
    gate = EchoGate()
    out = run(gate, reply, echo_of(reply, 1.6))
    assert gate.coupling == pytest.approx(1.6 * ROOM_GAIN, rel=0.2)
    assert gate.passed_while_speaking <= 0.02 * gate.frames_while_speaking
    assert len(out) == int(total / FRAME_S)


def test_coupling_stays_within_its_clamp_and_recovers_from_it() -> None:
    total = 10.0
    reply = place(voice(9.0, 6, 0.25, 3.0), 0.5, total)
    gate = EchoGate(EchoGateSettings(min_coupling=0.05))
    run(gate, reply, echo_of(reply, 0.005))  # a speaker the mic barely hears
    assert 0.05 <= gate.coupling <= 0.06
    # The room gets ten times louder (the volume turned up): echo slips through at first, the
    # frames still silenced between syllables measure the new room, and the estimate catches up.
    out = run(gate, reply, echo_of(reply, 0.5))
    assert gate.coupling == pytest.approx(0.5 * ROOM_GAIN, rel=0.2)
    assert vad_starts(out[len(out) // 2 :]) == []


def test_a_dead_mic_teaches_the_gate_nothing() -> None:
    total = 6.0
    reply = place(voice(5.0, 6, 0.25, 3.0), 0.5, total)
    gate = EchoGate()
    out = run(gate, reply, np.zeros_like(reply))  # muted: PortAudio delivers digital silence
    assert gate.gated_frames > 200
    assert gate.coupling == pytest.approx(EchoGateSettings().initial_coupling)
    assert all(frame == bytes(2 * FRAME) for frame in out)


def test_reference_at_the_speakers_own_rate() -> None:
    total = 5.0
    reply, echo = reply_and_echo(total, coupling=0.8)
    gate = EchoGate()
    out = run(gate, resample(reply, SAMPLE_RATE, 22_050), echo, reference_rate=22_050)
    assert gate.frames_while_speaking > 150
    assert gate.passed_while_speaking == 0
    assert vad_starts(out) == []


def test_reference_accepts_bytes_and_rejects_a_bad_rate() -> None:
    gate = EchoGate()
    loud = (np.full(160, 8000, dtype="<i2")).tobytes()
    gate.reference(loud, SAMPLE_RATE, at=0.0)
    assert gate.process(loud, at=0.0) == bytes(len(loud))
    assert gate.gated_frames == 1
    with pytest.raises(ValueError, match="sample_rate"):
        gate.reference(loud, 0, at=0.0)


def test_speaker_output_below_the_floor_does_not_arm_the_gate() -> None:
    gate = EchoGate()
    hiss = (np.full(160, 50, dtype="<i2")).tobytes()  # about -56 dBFS
    gate.reference(hiss, SAMPLE_RATE, at=0.0)
    frame = (np.full(FRAME, 40, dtype="<i2")).tobytes()
    assert gate.process(frame, at=0.0) == frame
    assert gate.frames_while_speaking == 0
