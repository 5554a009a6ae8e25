"""The echo canceller on synthetic rooms: the far end lined up by the playback clock, AEC3 taking the echo out."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edgevoice.audio.aec import AecSettings, EchoCanceller, FarEnd, StreamClock
from edgevoice.audio.pcm import SAMPLE_RATE, Samples, read_audio, resample, to_pcm16
from edgevoice.bench.noise import trim

BUNDLED = Path(__file__).parents[2] / "edgevoice" / "data" / "question.wav"
SPEAKER_RATE = 22_050
FRAME = SAMPLE_RATE // 50
FRAME_S = FRAME / SAMPLE_RATE
ECHO_DELAY_S = 0.05
REVERB = ((0.0, 1.0), (0.025, 0.45), (0.06, 0.2), (0.11, 0.1))


def ramp(n: int) -> npt.NDArray[np.int16]:
    return (np.arange(n) % 30000).astype(np.int16)


def test_what_played_is_read_back_at_its_time_plus_the_lead() -> None:
    far = FarEnd(AecSettings(lead_ms=20))
    played = ramp(1600)
    far.write(played, SAMPLE_RATE, at=10.0)
    # A mic frame from 9.98 s takes what played from 10.0 s on.
    assert far.read(9.98, 320).tolist() == played[:320].tolist()
    assert far.read(10.0, 320).tolist() == played[320:640].tolist()
    # Before the speaker started, and after what it has been given: silence.
    assert not far.read(9.0, 320).any()
    assert not far.read(10.2, 320).any()
    straddling = far.read(9.97, 320)  # from 9.99 s: 10 ms of nothing, then the start
    assert not straddling[:160].any()
    assert straddling[160:].tolist() == played[:160].tolist()


def test_chunks_follow_on_despite_late_stamps_and_a_restart_starts_anew() -> None:
    far = FarEnd(AecSettings(lead_ms=0, restart_ms=200))
    chunk = ramp(320)
    far.write(chunk, SAMPLE_RATE, at=0.0)
    far.write(chunk, SAMPLE_RATE, at=0.02 + 0.015)  # its callback ran 15 ms late: laid straight after the first
    assert far.restarts == 0
    assert far.read(0.02, 320).tolist() == chunk.tolist()
    far.write(chunk, SAMPLE_RATE, at=0.5)  # an underrun and a restart
    assert far.restarts == 1
    assert not far.read(0.1, 320).any(), "the gap is silence"
    assert far.read(0.5, 320).tolist() == chunk.tolist()


def test_the_clock_follows_the_earliest_stamps_while_it_settles() -> None:
    clock = StreamClock(restart_s=0.2)
    late = [0.030, 0.010, 0.045, 0.0, 0.020]  # how late each callback ran
    placed = [clock.place(0.5 + 0.02 * k + late[k % 5], 0.02)[0] for k in range(10)]
    # The first callback was 30 ms late; the fourth, on time, shows it, and from then on the chunks are in time.
    assert placed[0] == pytest.approx(0.53)
    assert placed[3:] == pytest.approx([0.5 + 0.02 * k for k in range(3, 10)])
    assert clock.settling


def test_a_burst_of_early_stamps_at_the_start_is_forgotten_once_settled() -> None:
    # A device's first callbacks come at once, stamped up to 15 ms before the stream then runs.
    clock = StreamClock(restart_s=0.2)
    placed = [clock.place(0.02 * k - (0.015 if k < 10 else 0.0), 0.02)[0] for k in range(200)]
    assert not clock.settling
    assert placed[100:] == pytest.approx([0.02 * k for k in range(100, 200)], abs=1e-9)


def test_a_settled_clock_does_not_move_for_the_stamps_jitter() -> None:
    # Callbacks late by up to 8 ms, at random: the chunks are laid end to end, in time, for a minute.
    rng = np.random.default_rng(7)
    clock = StreamClock(restart_s=0.2)
    placed = np.array([clock.place(0.02 * k + rng.uniform(0, 0.008), 0.02)[0] for k in range(3000)])
    settled = placed[100:]
    assert np.diff(settled) == pytest.approx(0.02, abs=1e-9), "a step in the pairing is a change in the echo's path"
    assert 0.0 <= settled[0] - 0.02 * 100 < 0.001
    assert clock.restarts == 0


def test_a_drifting_device_is_followed_smoothly() -> None:
    # A device clock 0.05 % slower than ours (five times what a sound card drifts), for two minutes.
    clock = StreamClock(restart_s=0.2)
    placed = np.array([clock.place(0.5 + 0.02001 * k, 0.02)[0] for k in range(6000)])
    behind = 0.5 + 0.02001 * np.arange(6000) - placed
    assert behind.max() < 0.006, "followed to within its dead band and a little"
    # Never by a jump: a step of at most 0.1 % of a chunk (20 us, a third of a sample at 16 kHz).
    assert np.abs(np.diff(placed) - 0.02).max() <= 0.02 * 0.001 + 1e-12


def test_a_restart_is_taken_as_stamped_and_settles_anew() -> None:
    clock = StreamClock(restart_s=0.2)
    for k in range(100):
        clock.place(0.02 * k, 0.02)
    assert not clock.settling
    placed, fresh = clock.place(5.0, 0.02)
    assert (placed, fresh, clock.restarts) == (5.0, True, 1)
    assert clock.settling


def test_a_gap_the_device_reports_starts_the_stream_anew() -> None:
    clock = StreamClock(restart_s=0.2)
    for k in range(100):
        clock.place(0.02 * k, 0.02)
    # An underrun: the output ran dry for 30 ms, and PortAudio said so with the next chunk.
    placed, fresh = clock.place(2.03, 0.02, gap=True)
    assert (placed, fresh, clock.restarts, clock.settling) == (2.03, True, 1, True)


def test_a_settled_stream_whose_stamps_moved_starts_anew() -> None:
    # Later by 30 ms from 3 s on, every chunk (a device that recovered from an xrun and did not say so):
    # within a second the clock starts anew where the stamps are, and follows them.
    clock = StreamClock(restart_s=0.2)
    stamps = [0.02 * k + (0.03 if k >= 150 else 0.0) for k in range(300)]
    placed = [clock.place(at, 0.02)[0] for at in stamps]
    assert clock.restarts == 1
    assert placed[-50:] == pytest.approx(stamps[-50:], abs=1e-9)
    # One stamp 30 ms early is one too many for jitter (callbacks run late, never early): at once.
    _, fresh = clock.place(0.02 * 300, 0.02)
    assert fresh
    assert clock.restarts == 2


def test_the_canceller_is_trusted_once_the_pairing_settled_and_again_after_a_restart() -> None:
    canceller = EchoCanceller(AecSettings(converge_s=0.8))
    speech = to_pcm16(resample(trim(read_audio(BUNDLED)), SAMPLE_RATE, SPEAKER_RATE))
    speaker_chunk = SPEAKER_RATE // 50

    def second(start_s: float, speaker_at: float) -> None:
        """One second of the mic from start_s, 20 ms at a time, and of the speaker from speaker_at (its
        audio stamped with when it will play, 100 ms after it is handed over)."""
        for k in range(50):
            offset = (k * speaker_chunk) % (len(speech) - speaker_chunk)
            plays_at = speaker_at + 0.1 + 0.02 * k
            canceller.reference(speech[offset : offset + speaker_chunk], SPEAKER_RATE, plays_at)
            canceller.process(np.zeros(FRAME, dtype=np.int16).tobytes(), start_s + 0.02 * k)

    second(0.0, 0.0)
    assert canceller.converging, "its clocks are still settling"
    second(1.0, 1.0)
    assert canceller.converging, "settled at 1.5 s; half a second of the speaker heard since"
    second(2.0, 2.0)
    assert not canceller.converging
    second(3.0, 3.5)  # the speaker's stream restarted, 500 ms later than it had got to
    assert canceller.restarts == 1
    assert canceller.converging
    second(4.0, 4.5)
    assert canceller.converging
    for start in (5.0, 6.0):
        second(start, start + 0.5)
    assert not canceller.converging


def test_the_speaker_rate_is_resampled_to_16_khz_in_time() -> None:
    far = FarEnd(AecSettings(lead_ms=0))
    speech = resample(trim(read_audio(BUNDLED)), SAMPLE_RATE, SPEAKER_RATE)[:SPEAKER_RATE]
    played = to_pcm16(speech)
    for offset in range(0, len(played), 512):  # in the output callback's blocks
        far.write(played[offset : offset + 512], SPEAKER_RATE, at=offset / SPEAKER_RATE)
    heard = far.read(0.5, 3200).astype(np.float64)
    expected = resample(speech, SPEAKER_RATE, SAMPLE_RATE)[SAMPLE_RATE // 2 :][:3200].astype(np.float64)
    lags = range(-80, 81)
    best = max(lags, key=lambda lag: float(np.dot(np.roll(expected, lag), heard)))
    # What is read for a time is what played then, to a sample or two.
    assert abs(best) <= 2, best
    assert np.corrcoef(np.roll(expected, best), heard)[0, 1] > 0.99


def test_the_ring_keeps_the_last_seconds() -> None:
    far = FarEnd(AecSettings(lead_ms=0))
    block = 1600
    for index in range(60):  # six seconds, more than the ring holds
        far.write(np.full(block, index + 1, dtype=np.int16), SAMPLE_RATE, at=index * 0.1)
    assert (far.read(5.9, 320) == 60).all()
    assert (far.read(3.0, 320) == 31).all()
    assert not far.read(0.5, 320).any(), "forgotten: silence rather than something else"


def espeak(text: str, voice: str, tmp_path: Path) -> Samples:
    wav = tmp_path / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, timeout=60)
    return trim(read_audio(wav))


def active_rms(samples: Samples) -> float:
    power = np.mean(samples[: len(samples) // 160 * 160].reshape(-1, 160) ** 2, axis=1)
    return float(np.sqrt(power[power >= power.max() * 10**-3.5].mean()))


def room(reply: Samples, coupling: float) -> Samples:
    """The reply as the mic hears it: late, attenuated, with a short reverberation."""
    out = np.zeros(len(reply) + SAMPLE_RATE, dtype=np.float32)
    delay = int(ECHO_DELAY_S * SAMPLE_RATE)
    for extra_s, gain in REVERB:
        at = delay + int(extra_s * SAMPLE_RATE)
        out[at : at + len(reply)] += gain * reply
    return coupling * out[: len(reply)]


def level_db(samples: npt.NDArray[np.int16]) -> float:
    return 10 * float(np.log10(np.mean(samples.astype(np.float64) ** 2) + 1.0))


@pytest.mark.parametrize("coupling", [1.0, 0.1])
def test_the_echo_goes_and_a_user_as_loud_as_it_stays(coupling: float, tmp_path: Path) -> None:
    reply = np.tile(trim(read_audio(BUNDLED)), 3)  # the assistant talking for about 5 s
    reply_22k = to_pcm16(resample(reply, SAMPLE_RATE, SPEAKER_RATE))
    starts_s, total_s = 0.5, 0.5 + len(reply) / SAMPLE_RATE + 0.5
    echo = np.zeros(int(total_s * SAMPLE_RATE), dtype=np.float32)
    echo[int(starts_s * SAMPLE_RATE) :][: len(reply)] = room(reply, coupling)
    user = espeak("Stop, stop that now please.", "en-gb+f3", tmp_path)
    user *= active_rms(echo) / active_rms(user)  # as loud at the mic as the echo
    user_at = len(echo) - len(user) - SAMPLE_RATE // 2
    mic = to_pcm16(echo + np.pad(user, (user_at, len(echo) - user_at - len(user))))

    canceller = EchoCanceller()
    fed = 0
    out = []
    for index in range(len(mic) // FRAME):
        at = index * FRAME_S
        # The speaker's callback runs ahead of the mic's, in its own blocks.
        while fed < len(reply_22k) and starts_s + fed / SPEAKER_RATE < at + 0.1:
            canceller.reference(reply_22k[fed : fed + 512], SPEAKER_RATE, starts_s + fed / SPEAKER_RATE)
            fed += 512
        out.append(np.frombuffer(canceller.process(mic[index * FRAME : (index + 1) * FRAME].tobytes(), at), "<i2"))
    cleaned = np.concatenate(out)

    def span(signal: npt.NDArray[np.int16], start_s: float, end_s: float) -> npt.NDArray[np.int16]:
        return signal[int(start_s * SAMPLE_RATE) : int(end_s * SAMPLE_RATE)]

    user_s = user_at / SAMPLE_RATE
    converged = (starts_s + 1.5, user_s - 0.1)  # echo alone, after a second and a half of it
    erle = level_db(span(mic, *converged)) - level_db(span(cleaned, *converged))
    residual = level_db(span(cleaned, *converged))
    first_word = level_db(span(cleaned, user_s, user_s + 0.3))
    whole = level_db(span(cleaned, user_s, user_s + len(user) / SAMPLE_RATE))
    print(f"coupling {coupling}: ERLE {erle:.1f} dB, residual {residual:.1f} dB, user {whole:.1f} dB")
    print(f"the user's first 300 ms: {first_word:.1f} dB")
    assert erle >= 20.0
    # The user, talking over the echo at its own level, comes through far above what is left of it,
    # from the first word on.
    assert whole >= residual + 20.0
    assert first_word >= residual + 15.0
    assert canceller.erle_db is not None
    assert canceller.erle_db > 3.0
