"""The microphone and speaker path through sounddevice, on PulseAudio null sinks instead of a sound card."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile

from edgevoice.wer import word_error_rate

BUNDLED = Path(__file__).parents[2] / "edgevoice" / "data" / "question.wav"


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private PulseAudio server: sink 'mic' (its monitor is the default source) and sink 'speaker'."""
    if shutil.which("pulseaudio") is None:
        pytest.fail("pulseaudio is not installed: ./install.sh --dev installs it")
    runtime = tmp_path / "pulse"
    runtime.mkdir()
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(runtime), "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("PULSE_SERVER", None)
    subprocess.run(
        [
            "pulseaudio",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "-n",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=mic",
            "--load=module-null-sink sink_name=speaker",
        ],
        env=env,
        check=True,
        timeout=30,
        capture_output=True,
    )
    try:
        for command in (["pactl", "set-default-source", "mic.monitor"], ["pactl", "set-default-sink", "speaker"]):
            subprocess.run(command, env=env, check=True, timeout=10)
        yield env
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, check=False, timeout=30)


def test_run_talks_through_microphone_and_speaker(pulse: dict[str, str], tmp_path: Path) -> None:
    heard = tmp_path / "speaker.wav"
    recorder = subprocess.Popen(
        ["parecord", "--device=speaker.monitor", "--file-format=wav", "--channels=1", str(heard)], env=pulse
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edgevoice", "run"], env=pulse, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline().startswith("edgevoice: listening"), daemon.stderr
        # Speak into the microphone: play the question into the sink whose monitor is the input.
        subprocess.run(["paplay", "--device=mic", str(BUNDLED)], env=pulse, check=True, timeout=30)
        you = daemon.stdout.readline()
        reply = daemon.stdout.readline()
        assert you.startswith("you: ")
        # The words arrived through the device path (accuracy itself is tested on files elsewhere;
        # tiny.en sometimes hears espeak's "of France" as "and friends" here).
        assert word_error_rate("What is the capital of France?", you.removeprefix("you: ")) <= 0.5
        assert "capital" in you
        assert reply.startswith("edgevoice: ")
        assert len(reply.split()) > 2
        time.sleep(3)  # let the reply play out through the speaker
    finally:
        daemon.send_signal(signal.SIGINT)
        _, errors = daemon.communicate(timeout=30)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=10)
    assert daemon.returncode in (0, 130)
    assert "Traceback" not in errors, errors
    audio, rate = soundfile.read(str(heard), dtype="float32")
    loud = (abs(audio) > 0.05).sum() / rate
    assert loud > 0.3, f"only {loud:.2f} s of reply audio reached the speaker"
