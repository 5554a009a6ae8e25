"""The microphone and speaker path through sounddevice, on PulseAudio null sinks instead of a sound card."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edgevoice.bench.wer import word_error_rate
from edgevoice.events import Event, Interrupted, ReplyAudio, TurnDone, TurnTimings
from edgevoice.transports.local import SpeakerListener

BUNDLED = Path(__file__).parents[2] / "edgevoice" / "data" / "question.wav"


def test_speaker_plays_reply_audio_and_forwards_every_event() -> None:
    seen: list[Event] = []
    speaker = SpeakerListener(22_050, seen.append)
    audio = ReplyAudio(1, 0, 22_050, np.arange(1, 101, dtype="<i2").tobytes())
    done = TurnDone(1, "hi", "hello", TurnTimings(speech_end=0.0), 0, 100)
    speaker.emit(audio)
    speaker.emit(done)
    assert seen == [audio, done]
    out = np.full((150, 1), 7, dtype=np.int16)
    speaker.fill(out)
    assert out[:100, 0].tolist() == list(range(1, 101))
    assert not out[100:].any()
    speaker.fill(out)
    assert not out.any(), "what was played is not played again"


def test_interrupted_empties_the_speaker() -> None:
    seen: list[Event] = []
    speaker = SpeakerListener(22_050, seen.append)
    speaker.emit(ReplyAudio(1, 0, 22_050, np.arange(1, 201, dtype="<i2").tobytes()))
    out = np.zeros((100, 1), dtype=np.int16)
    speaker.fill(out)
    assert out[:, 0].tolist() == list(range(1, 101))
    interrupted = Interrupted(1, 900)
    speaker.emit(interrupted)
    assert seen[-1] == interrupted
    speaker.fill(out)
    assert not out.any(), "the rest of the interrupted reply was still played"
    speaker.emit(ReplyAudio(2, 0, 22_050, np.full(100, 5, dtype="<i2").tobytes()))
    speaker.fill(out)
    assert (out[:, 0] == 5).all(), "the next reply plays"


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
        # What an owner does with a box that will not stop: every thread's stack goes to its log, and it runs on.
        daemon.send_signal(signal.SIGUSR1)
        time.sleep(1)
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGINT)
        _, errors = daemon.communicate(timeout=30)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=10)
    assert daemon.returncode in (0, 130)
    assert "Traceback" not in errors, errors
    assert "most recent call first" in errors, errors
    assert "edgevoice/cli.py" in errors, "the main thread is among them"
    audio, rate = soundfile.read(str(heard), dtype="float32")
    loud = (abs(audio) > 0.05).sum() / rate
    assert loud > 0.3, f"only {loud:.2f} s of reply audio reached the speaker"


class Daemon:
    """`edgevoice -v run` in a subprocess; its stdout lines arrive on a queue, so every wait has a timeout."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log_file = log.open("w")
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgevoice", "-v", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        """(time.monotonic() when read, line)"""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))

    def line(self, timeout: float) -> str:
        return self.timed_line(timeout)[1]

    def timed_line(self, timeout: float) -> tuple[float, str]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output from edgevoice in {timeout} s; its log:\n{self.log.read_text()}")

    def quiet_for(self, seconds: float) -> list[str]:
        """Whatever it printed in the next `seconds` (nothing, when it is not talking to itself)."""
        deadline = time.monotonic() + seconds
        printed = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                printed.append(self.lines.get(timeout=left)[1])
            except queue.Empty:
                break
        return printed

    def stop(self) -> str:
        """SIGINT, as Ctrl-C; returns the log (stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGUSR1)  # every thread's stack into the log: what it waits on
                time.sleep(1)
                self.process.kill()
                self.process.wait(timeout=10)
            self._log_file.close()
        return self.log.read_text()


@pytest.fixture
def room(pulse: dict[str, str]) -> dict[str, str]:
    """A room in which edgevoice hears itself: one null sink 'room' is both its speaker (the
    default sink) and, through its monitor, its microphone (the default source).

    Everything edgevoice plays comes straight back into its microphone at full level, mixed
    with whatever the user says (paplay into 'room'): the worst echo a box could have.
    """
    for command in (
        ["pactl", "load-module", "module-null-sink", "sink_name=room"],
        ["pactl", "set-default-source", "room.monitor"],
        ["pactl", "set-default-sink", "room"],
    ):
        subprocess.run(command, env=pulse, check=True, timeout=10, capture_output=True)
    return pulse


def speaker_across_the_room(env: dict[str, str], gain: float) -> None:
    """Make the speaker quieter at the microphone: edgevoice plays into 'room-speaker', a sink that
    passes what it is given on to 'room' at gain (linear), with no buffer of its own.

    (The gain is not set on edgevoice's own stream: ALSA's pulse plug-in makes a new stream,
    at full volume, each time it recovers from an underrun. Nor is a module-loopback used: its
    buffer put the echo anywhere from 40 ms to 2.5 s after the speaker's stamps, more than any
    device, and the echo bench's echo_lag_ms showed it.)
    """
    for command in (
        ["pactl", "load-module", "module-remap-sink", "sink_name=room-speaker", "master=room"],
        ["pactl", "set-sink-volume", "room-speaker", str(gain)],
        ["pactl", "set-default-sink", "room-speaker"],
    ):
        subprocess.run(command, env=env, check=True, timeout=10, capture_output=True)


def say(env: dict[str, str], wav: Path) -> None:
    subprocess.run(["paplay", "--device=room", str(wav)], env=env, check=True, timeout=30)


def louder(wav: Path, gain: float, out: Path) -> Path:
    """The user raising their voice: the recording times gain, without clipping."""
    audio, rate = soundfile.read(str(wav), dtype="float32")
    assert gain * float(np.abs(audio).max()) < 1.0
    soundfile.write(str(out), audio * gain, rate, subtype="PCM_16")
    return out


def gate_report(log: str) -> tuple[int, int, float, float]:
    """(silenced, heard while speaking, coupling, closest call) from the echo gate's line in the log."""
    found = re.search(r"echo gate: silenced (\d+) of (\d+) .* coupling ([\d.]+); .* was ([\d.]+) of", log)
    assert found is not None, log
    return int(found[1]), int(found[2]), float(found[3]), float(found[4])


def assert_one_exchange(daemon: Daemon, timeout: float = 60) -> str:
    you = daemon.line(timeout)
    reply = daemon.line(10)
    assert you.startswith("you: "), (you, reply)
    assert "capital" in you, you
    assert reply.startswith("edgevoice: "), reply
    assert len(reply.split()) > 2, reply
    assert_quiet_while_replying(daemon, reply)
    return reply


def assert_quiet_while_replying(daemon: Daemon, reply: str) -> None:
    # The reply is still playing into the room (it is printed once it has all been synthesised).
    # Were the echo taken for speech, the session would barge in on itself at once ("(interrupted)"),
    # or, heard as the reply ends, answer it ("you:" after its STT, LLM and TTS). Neither may happen.
    playing_s = 0.4 * len(reply.split())
    printed = daemon.quiet_for(playing_s + 6)
    assert printed == [], f"edgevoice heard itself say {reply!r}: {printed}"


def gate_alone(env: dict[str, str]) -> dict[str, str]:
    """The echo gate without the canceller in front of it: these tests measure what the gate learns of the room."""
    return {**env, "EDGEVOICE_VAD_ECHO_CANCELLER": "false"}


def test_it_does_not_answer_its_own_voice(room: dict[str, str], tmp_path: Path) -> None:
    daemon = Daemon(gate_alone(room), tmp_path / "edgevoice.log")
    try:
        assert daemon.line(60).startswith("edgevoice: listening")
        say(room, BUNDLED)
        reply = assert_one_exchange(daemon)
    finally:
        log = daemon.stop()
    assert "Traceback" not in log, log
    silenced, heard, coupling, closest = gate_report(log)
    print(f"{reply!r}: echo gate silenced {silenced} of {heard} frames, coupling {coupling}, closest call {closest}")
    assert silenced >= 50, "the reply's echo never reached the gate"
    assert silenced >= 0.95 * heard
    assert 0.5 <= coupling <= 2.0  # the room gives the reply back at full level: about 1


def test_barge_in_over_the_echo(room: dict[str, str], tmp_path: Path) -> None:
    # The echo 20 dB under what the speaker plays; the user, at 1.5 times the recording's level,
    # well above that echo (at full level the user would have to be twice as loud as the reply).
    speaker_across_the_room(room, 0.1)
    daemon = Daemon(gate_alone(room), tmp_path / "edgevoice.log")
    try:
        assert daemon.line(60).startswith("edgevoice: listening")
        say(room, BUNDLED)
        assert_one_exchange(daemon)  # the gate learns the room from this reply
        say(room, BUNDLED)
        assert daemon.line(60).startswith("you: ")
        assert daemon.line(10).startswith("edgevoice: ")  # synthesised; still playing
        started = time.monotonic()
        say(room, louder(BUNDLED, 1.5, tmp_path / "louder.wav"))
        printed = [daemon.timed_line(60) for _ in range(3)]
        lines = [line for _, line in printed]
        print(lines, f"answered {printed[-1][0] - started:.1f} s after the user began")
        assert lines[0] == "edgevoice: (interrupted)", lines
        assert printed[0][0] > started, "interrupted before the user spoke"
        # The user's speech became the next turn. The gate alone passes only the frames where the
        # user is well above the echo it expects, so words are lost ("What the... France?", "What
        # the..."): keeping them is the echo canceller's part (tests/audio/test_echo_cancel_room.py).
        assert lines[1].startswith("you: "), lines
        assert lines[1].lower().startswith("you: what"), lines
        assert not lines[1].removeprefix("you: ").startswith("The capital"), "it answered its own reply"
        assert lines[2].startswith("edgevoice: "), lines
        assert_quiet_while_replying(daemon, lines[2])
    finally:
        log = daemon.stop()
    assert "Traceback" not in log, log
    silenced, heard, coupling, closest = gate_report(log)
    print(f"echo gate silenced {silenced} of {heard} frames, coupling {coupling}, closest call {closest}")
    assert heard - silenced >= 10, "the user's speech over the reply never passed the gate"
    assert 0.03 <= coupling <= 0.3  # -20 dB is 0.1
