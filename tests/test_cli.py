"""The edgevoice command as a person runs it: real models, real files, clear errors and no tracebacks."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edgevoice.audio.pcm import SAMPLE_RATE, Samples, read_audio, to_pcm16, write_wav
from edgevoice.bench.wer import word_error_rate
from edgevoice.config import Config
from edgevoice.models.registry import Kind, resolve
from edgevoice.skills.speech import number_words
from tests.conftest import with_silence

BUNDLED = Path(__file__).parent.parent / "edgevoice" / "data" / "question.wav"


def edgevoice(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgevoice", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr + result.stdout, result.stderr + result.stdout


@pytest.mark.slow
def test_converse_answers_a_recorded_question(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    result = edgevoice("converse", str(BUNDLED), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 1
    turn = lines[0]
    assert word_error_rate("What is the capital of France?", turn["transcript"]) < 0.3
    assert turn["reply"].strip()
    assert turn["type"] == "turn_done"  # the same line a socket client gets (docs/protocol.md)
    stages = turn["timings"]
    ordered = [stages[k] for k in ("speech_end", "stt_done", "first_token", "first_audio", "last_audio")]
    assert ordered == sorted(ordered)
    info = soundfile.info(str(out))
    # A spoken sentence or few: at least a few words' worth, no more than the token budget allows.
    assert 0.5 < info.duration < 60
    words_per_second = len(turn["reply"].split()) / info.duration
    assert 0.5 < words_per_second < 6


@pytest.mark.slow
def test_converse_runs_several_turns(tmp_path: Path, espeak: Callable[[str], Samples]) -> None:
    recording = np.concatenate([with_silence(espeak("Hello, who are you?")), with_silence(espeak("What can you do?"))])
    wav = tmp_path / "two.wav"
    write_wav(wav, to_pcm16(recording), SAMPLE_RATE)
    result = edgevoice("converse", str(wav))
    assert result.returncode == 0, result.stderr
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert [t["turn"] for t in turns] == [1, 2]
    assert turns[0]["end_ms"] < turns[1]["start_ms"]


@pytest.mark.slow
def test_transcribe_any_rate_and_channels(tmp_path: Path, espeak: Callable[[str], Samples]) -> None:
    speech = espeak("Turn on the kitchen lights, please.")
    stereo_44k = tmp_path / "stereo.wav"
    upsampled = np.interp(np.arange(0, len(speech), 16000 / 44100), np.arange(len(speech)), speech)
    soundfile.write(str(stereo_44k), np.stack([upsampled, upsampled], axis=1), 44100, subtype="PCM_24")
    result = edgevoice("transcribe", str(stereo_44k))
    assert result.returncode == 0, result.stderr
    assert word_error_rate("Turn on the kitchen lights, please.", result.stdout) < 0.2


@pytest.mark.slow
def test_say_writes_speech(tmp_path: Path) -> None:
    out = tmp_path / "say.wav"
    result = edgevoice("say", "Good morning. The coffee is ready.", "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = soundfile.info(str(out))
    assert info.channels == 1
    assert 1.0 < info.duration < 8.0
    # What Piper said can be understood again.
    heard = edgevoice("transcribe", str(out)).stdout
    assert word_error_rate("Good morning. The coffee is ready.", heard) < 0.3


@pytest.mark.slow
def test_non_audio_file_is_a_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    assert_clean_failure(edgevoice("transcribe", str(text)), "not an audio file")
    assert_clean_failure(edgevoice("converse", str(text)), "not an audio file")
    assert_clean_failure(edgevoice("transcribe", str(tmp_path / "missing.wav")), "no such file")


@pytest.mark.slow
def test_empty_audio_is_a_no_op(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0, dtype=np.int16), SAMPLE_RATE)
    result = edgevoice("transcribe", str(empty))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    result = edgevoice("converse", str(empty))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_silence_only_gives_no_turn(tmp_path: Path) -> None:
    silence = tmp_path / "silence.wav"
    write_wav(silence, np.zeros(5 * SAMPLE_RATE, dtype=np.int16), SAMPLE_RATE)
    result = edgevoice("converse", str(silence), "--out", str(tmp_path / "r.wav"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_ten_minute_file_finishes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    # Ten minutes of a quiet room: low noise, no speech.
    hiss = (rng.standard_normal(600 * SAMPLE_RATE) * 0.002).astype(np.float32)
    long_file = tmp_path / "ten-minutes.wav"
    write_wav(long_file, to_pcm16(hiss), SAMPLE_RATE)
    result = edgevoice("converse", str(long_file), timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    result = edgevoice("transcribe", str(long_file), timeout=240)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_corrupted_models_are_named(tmp_path: Path, config: Config) -> None:
    truncated = tmp_path / "ggml-truncated.bin"
    source = resolve(config, Kind.STT).path
    with source.open("rb") as stream:
        truncated.write_bytes(stream.read(source.stat().st_size // 2))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + os.urandom(4096))
    env = {"EDGEVOICE_STT_MODEL": str(truncated), "EDGEVOICE_LLM_MODEL": str(garbage)}
    result = edgevoice("models", "verify", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"stt: FAILED: Whisper model {truncated} is truncated" in result.stdout
    assert "llm: FAILED" in result.stdout
    assert str(garbage) in result.stdout
    assert "tts: ok" in result.stdout
    assert_clean_failure(edgevoice("transcribe", str(BUNDLED), env=env), "truncated")
    missing = {"EDGEVOICE_TTS_VOICE": str(tmp_path / "nowhere.onnx")}
    assert_clean_failure(edgevoice("say", "hi", "--out", str(tmp_path / "x.wav"), env=missing), "does not exist")


def test_models_list_and_verify_defaults() -> None:
    listed = edgevoice("models")
    assert listed.returncode == 0, listed.stderr
    for kind in ("stt", "llm", "tts"):
        assert f"{kind}: " in listed.stdout
    assert "sha256" in listed.stdout
    assert "MISSING" not in listed.stdout
    verified = edgevoice("models", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_convert_reports_full_disk(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    result = edgevoice("models", "convert", "--out", "/dev/full/ggml.bin")
    assert_clean_failure(result, "/dev/full")


@pytest.mark.slow
def test_run_without_sound_device_answers_bundled_recording(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    env = {"PULSE_SERVER": "unix:/nonexistent", "AUDIODEV": "none"}
    if shutil.which("pulseaudio") and subprocess.run(["pulseaudio", "--check"], check=False).returncode == 0:
        pytest.skip("a sound server is running here; the fallback is for boxes without one")
    result = edgevoice("run", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["reply"].strip()
    assert read_audio(out).size > 0


@pytest.mark.slow
def test_converse_answers_with_the_skills(tmp_path: Path, serve_env: dict[str, str]) -> None:
    """A recording asking the time is answered by the clock, not the model; a timer it sets is kept for the daemon."""
    questions = []
    for number, text in enumerate(("What time is it?", "Set a timer for ten minutes.")):
        spoken = tmp_path / f"q{number}.wav"
        said = edgevoice("say", text, "--out", str(spoken), env=serve_env)
        assert said.returncode == 0, said.stderr
        questions.append(with_silence(read_audio(spoken)))
    wav = tmp_path / "questions.wav"
    write_wav(wav, to_pcm16(np.concatenate(questions)), SAMPLE_RATE)
    before = datetime.datetime.now().astimezone()
    result = edgevoice("converse", str(wav), env=serve_env)
    after = datetime.datetime.now().astimezone()
    assert result.returncode == 0, result.stderr
    time_turn, timer_turn = [json.loads(line) for line in result.stdout.splitlines()]
    assert time_turn["intent"] == "HassGetCurrentTime", time_turn
    assert time_turn["reply"].startswith("It's "), time_turn
    assert any(number_words(t.hour % 12 or 12) in time_turn["reply"] for t in (before, after)), time_turn
    assert time_turn["timings"]["first_audio"] is not None, "the answer is spoken"
    assert (timer_turn["intent"], timer_turn["reply"]) == ("HassStartTimer", "Timer set for ten minutes."), timer_turn
    # Kept where the daemon (and `edgevoice ask`) keeps its timers, in the recording's conversation.
    saved = json.loads((Path(serve_env["EDGEVOICE_DATA_DIR"]) / "timers.json").read_text())
    assert [(t["conversation"], t["duration_s"]) for t in saved["timers"]] == [("cli", 600.0)]
