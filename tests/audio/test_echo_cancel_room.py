"""The echo canceller on the PulseAudio room: the reply loops into the mic at 0 dB and -20 dB, and a
person talks over it exactly as loud as its echo (the gate alone needs them about twice as loud)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edgevoice.audio.pcm import from_pcm16, read_audio
from edgevoice.bench.echo import REPLY
from edgevoice.bench.noise import trim
from edgevoice.config import Config
from edgevoice.models.registry import Kind, resolve
from tests.transports.test_local import (  # noqa: F401
    BUNDLED,
    Daemon,
    assert_one_exchange,
    assert_quiet_while_replying,
    room,
    say,
    speaker_across_the_room,
)

USER_AT_S = 9.0


def active_rms(samples: np.ndarray) -> float:
    power = np.mean(samples[: len(samples) // 160 * 160].reshape(-1, 160) ** 2, axis=1)
    return float(np.sqrt(power[power >= power.max() * 10**-3.5].mean()))


@pytest.fixture(scope="module")
def reply_level() -> float:
    """How loud Piper speaks (RMS of its voiced 10 ms frames): the echo's level at the mic at 0 dB."""
    from edgevoice.engines.tts import PiperTts  # noqa: PLC0415

    config = Config()
    tts = PiperTts(config.tts, resolve(config, Kind.TTS).path)
    return active_rms(from_pcm16(tts.speak(REPLY)))


def as_loud_as(level: float, out: Path) -> Path:
    """The question, spoken exactly as loud as an echo at `level`."""
    question = trim(read_audio(BUNDLED))
    scaled = question * level / active_rms(question)
    # Piper speaks the reply a little differently each time (its noise scale), and at its loudest the
    # question scaled to it peaks just past full scale (1.016 once): those few peaks are clipped.
    assert float(np.mean(np.abs(scaled) >= 1.0)) < 1e-3
    scaled = np.clip(scaled, -32767 / 32768, 32767 / 32768)
    soundfile.write(str(out), scaled, 16_000, subtype="PCM_16")
    return out


@pytest.mark.parametrize("echo_gain", [1.0, 0.1], ids=["0dB", "-20dB"])
def test_echo_is_cancelled_and_a_person_as_loud_as_it_is_heard(
    room: dict[str, str],  # noqa: F811
    reply_level: float,
    echo_gain: float,
    tmp_path: Path,
) -> None:
    if echo_gain != 1.0:
        speaker_across_the_room(room, echo_gain)
    user = as_loud_as(reply_level * echo_gain, tmp_path / "user.wav")
    report_file = tmp_path / "echo.json"
    command = [sys.executable, "-m", "edgevoice.bench.echo", "--user", str(user), "--user-at", str(USER_AT_S)]
    subprocess.run(
        [*command, "--json", str(report_file), "--save", str(tmp_path / "recordings")],
        env=room,
        check=True,
        timeout=300,
        capture_output=True,
    )
    report = json.loads(report_file.read_text())
    print(json.dumps(report))
    assert report["erle_db"] is not None, "the echo was never cut by 10 dB"
    # 49 to 73 dB over twelve runs on 2026-12-02, once the two streams' clocks stopped stepping against
    # each other (14.6 to 51 dB before: edgevoice.audio.aec.StreamClock). 7.3 dB once, with a second
    # test suite running beside it and the echo 77 ms later than the speaker's stamps said.
    assert report["erle_db"] >= 20.0
    assert report["convergence_s"] <= 1.0
    assert report["user_at_s"] is not None
    person = (report["user_at_s"], report["user_at_s"] + soundfile.info(str(user)).duration)
    heard = report["heard"]
    # The reply's echo never became a turn of its own: nothing is heard before the person speaks (the
    # turn's start is its first voiced frame; Silero's window puts it up to 32 ms early).
    assert heard, "the person was not heard"
    assert all(turn["start_ms"] / 1000 >= person[0] - 0.1 for turn in heard), (heard, person)
    # The person is heard while they speak, over an echo as loud as them, where the gate alone hears
    # nobody under about twice the echo's level. How soon is measured, not asserted: AEC3's suppressor
    # can let a person as loud as the echo through in bursts. On 2026-12-02 the turn began 0.08-0.29 s
    # after them in eight runs; before the clocks were mended, 1.08 s after them once in ten.
    assert heard[0]["start_ms"] / 1000 < person[1], (heard, person)
    if echo_gain == 1.0:
        # The person's words reach the transcriber as speech: "what is the capital of France" is six
        # words, and the turn holds at least three. Which words tiny.en makes of them is not asserted:
        # AEC3 attenuates a person talking over an echo as loud as them: on 2026-12-02 tiny.en heard
        # "capital" in 3 of the 4 runs at 0 dB ("What is the happy love brand?" in the fourth).
        words = re.sub(r"[^a-z ]", "", " ".join(turn["text"] for turn in heard).lower()).split()
        assert len(words) >= 3, heard


def test_the_daemon_is_interrupted_by_a_person_as_loud_as_its_echo(
    room: dict[str, str],  # noqa: F811
    reply_level: float,
    tmp_path: Path,
) -> None:
    daemon = Daemon(room, tmp_path / "edgevoice.log")
    try:
        assert daemon.line(60).startswith("edgevoice: listening")
        say(room, BUNDLED)
        assert_one_exchange(daemon)  # it does not answer or interrupt itself
        say(room, BUNDLED)
        assert daemon.line(60).startswith("you: ")
        assert daemon.line(10).startswith("edgevoice: ")  # synthesised; still playing
        started = time.monotonic()
        say(room, as_loud_as(reply_level, tmp_path / "as-loud.wav"))
        printed = [daemon.timed_line(60) for _ in range(3)]
        lines = [line for _, line in printed]
        print(lines, f"answered {printed[-1][0] - started:.1f} s after the person began")
        assert lines[0] == "edgevoice: (interrupted)", lines
        assert printed[0][0] > started, "interrupted before the person spoke"
        assert lines[1].startswith("you: "), lines  # their turn, from its start (the bench test times it)
        # Not its own reply ("The capital of France is Paris..."): the person's question has no "Paris" in
        # it. (AEC3 can take the person's first words with the echo, so "The capital of France." alone
        # is the person, heard from the third word: on 2026-12-02, once in ten runs.)
        assert "paris" not in lines[1].lower(), "it answered its own reply"
        assert lines[2].startswith("edgevoice: "), lines
        assert_quiet_while_replying(daemon, lines[2])
    finally:
        log = daemon.stop()
    assert "Traceback" not in log, log
    found = re.search(r"echo canceller: ([\d.]+) dB taken out", log)
    assert found is not None, log
    assert float(found[1]) >= 10.0  # over every frame while it spoke, the person's words included
