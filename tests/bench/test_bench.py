"""`edgevoice bench`: its pure parts without sockets, its errors, and one real run against its own daemon."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.buffers import Pacer
from edgevoice.bench.daemon import ProcessMonitor, parse_cpu_ticks, parse_status_kb
from edgevoice.bench.measure import (
    ClipRecord,
    ServerTurn,
    Tracker,
    copied_replies,
    corpus_wer,
    stage_summary,
    summarise,
    true_end_of_speech,
)
from edgevoice.bench.run import DEFAULT_CLIPS, clip_due_s, format_report, load_clips
from edgevoice.cli import main
from edgevoice.config import Config
from edgevoice.models.registry import default_stt_path
from edgevoice.protocol import ReplyText, SpeechStarted, SpeechStopped, Transcript, TurnDone
from edgevoice.server.turnlog import percentile

RATE = 16_000


def _tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def test_true_end_of_speech_is_the_last_loud_frame() -> None:
    clip = np.concatenate([_silence(0.3), _tone(1.0, 0.5), _silence(1.0)])
    assert true_end_of_speech(clip) == int(1.3 * RATE)


def test_a_tail_below_the_threshold_is_not_speech_and_one_above_it_is() -> None:
    quiet = 0.5 * 10 ** (-45 / 20)  # 45 dB under the peak: breath, room noise
    soft = 0.5 * 10 ** (-25 / 20)  # 25 dB under the peak: a soft last syllable
    assert true_end_of_speech(np.concatenate([_tone(1.0, 0.5), _tone(0.4, quiet), _silence(0.5)])) == RATE
    assert true_end_of_speech(np.concatenate([_tone(1.0, 0.5), _tone(0.4, soft), _silence(0.5)])) == int(1.4 * RATE)


def test_silence_and_empty_clips_have_no_speech() -> None:
    assert true_end_of_speech(_silence(1.0)) == 0
    assert true_end_of_speech(np.zeros(0, dtype=np.float32)) == 0


def test_a_clip_ending_mid_frame_ends_at_its_last_sample() -> None:
    assert true_end_of_speech(_tone(0.105, 0.5)) == int(0.105 * RATE)


def test_shipped_clips_end_before_their_last_sample_and_have_references() -> None:
    clips = load_clips(DEFAULT_CLIPS)
    assert len(clips) >= 8
    for clip in clips:
        assert clip.reference
        assert 0.5 * RATE < clip.speech_end <= len(clip.samples)


def test_percentile_matches_numpy() -> None:
    values = sorted(float(v) for v in np.random.default_rng(5).exponential(300.0, size=37))
    for q in (0, 50, 95, 100):
        assert percentile(values, q / 100) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_stage_summary_skips_missing_values() -> None:
    assert stage_summary([100.0, None, 300.0, 200.0]) == {"n": 3, "p50": 200.0, "p95": 290.0, "max": 300.0}
    assert stage_summary([None]) == {"n": 0, "p50": None, "p95": None, "max": None}


def test_corpus_wer_weighs_by_reference_words() -> None:
    pairs = [("turn on the kitchen lights", "turn on the kitchen lights"), ("set a timer", "set the timer")]
    assert corpus_wer(pairs) == pytest.approx(1 / 8, abs=1e-4)
    assert corpus_wer([]) is None


def test_pacer_keeps_real_time_without_drift() -> None:
    # The bench paces as run.py does: never starting the count again, so a stall is caught up at once.
    pacer = Pacer(start=100.0, frame_s=0.02, max_lag_s=math.inf)
    assert pacer.wait_s(100.0) == pytest.approx(0.02)  # a frame leaves once it has been "captured"
    pacer.sent()
    assert pacer.wait_s(100.025) == pytest.approx(0.015)  # sent 5 ms late: the next one is not pushed back
    for _ in range(9):
        pacer.sent()
    assert pacer.wait_s(100.0) == pytest.approx(0.22)  # frame 11 is due 220 ms after the start
    assert pacer.wait_s(101.0) == 0.0  # behind after a stall: catch up at once


def _played(tracker: Tracker, record: ClipRecord, turn: int, at: float) -> None:
    """A turn's events as they reach the client, 100 ms apart from `at`, with 0.5 s of reply audio."""
    tracker.start_clip(record)
    tracker.on_event(SpeechStarted(turn, 0), at - 1.0)
    tracker.on_event(SpeechStopped(turn, 0, 900), at + 0.1)
    tracker.on_event(Transcript(turn, "Turn on the lights."), at + 0.2)
    tracker.on_event(ReplyText(turn, "Done"), at + 0.3)
    tracker.on_event(ReplyText(turn, "."), at + 0.35)
    tracker.on_audio(turn, 11_025, 22_050, at + 0.4)
    timings = {"first_audio": 250.0, "prompt_tokens": 300.0, "evaluated_prompt_tokens": 14.0}
    done = TurnDone(turn, "Turn on the lights.", "Done.", False, 0, 900, timings=timings)
    tracker.on_event(done, at + 0.45)


def test_tracker_times_each_stage_from_the_true_end_of_speech() -> None:
    tracker = Tracker()
    record = ClipRecord(client=0, clip="lights", reference="turn on the lights", speech_end_at=10.0)
    _played(tracker, record, turn=1, at=10.0)
    assert record.stages_ms() == {"vad_end": 100.0, "transcript": 200.0, "first_text": 300.0, "first_audio": 400.0}
    assert record.wer == 0.0
    assert not record.missing
    assert not record.finished(10.5)  # the reply is still playing
    assert record.finished(10.95)
    turn = record.to_json()
    assert turn["reply"] == "Done."
    assert turn["server_timings"] == {"first_audio": 250.0, "prompt_tokens": 300.0, "evaluated_prompt_tokens": 14.0}


def test_a_clip_the_daemon_never_heard_is_missing_and_summarised() -> None:
    tracker = Tracker()
    heard = ClipRecord(client=0, clip="a", reference="turn on the lights", speech_end_at=10.0)
    _played(tracker, heard, turn=1, at=10.0)
    unheard = ClipRecord(client=1, clip="b", reference="set a timer", speech_end_at=20.0)
    tracker.start_clip(unheard)
    assert unheard.missing
    assert not unheard.finished(100.0)
    summary = summarise([heard, unheard], clients=2)
    assert summary["missing"] == 1
    assert summary["stages_ms"]["first_audio"]["n"] == 1
    assert summary["end_of_speech_to_first_audio_ms"] == {"p50": 400.0, "p95": 400.0}
    assert summary["wer"] == pytest.approx(3 / 7, abs=1e-4)  # the unheard clip's 3 words are all deleted
    assert summary["per_client"] == [{"client": 0, "turns": 1, "missing": 0}, {"client": 1, "turns": 1, "missing": 1}]
    assert summary["prompt_tokens"]["evaluated_prompt_tokens"] == {"n": 1, "p50": 14.0, "p95": 14.0, "max": 14.0}
    assert summary["prompt_tokens"]["prompt_tokens"]["p50"] == 300.0


def test_proc_parsing() -> None:
    status = "Name:\tpython\nVmHWM:\t  51200 kB\nVmRSS:\t  40960 kB\n"
    assert parse_status_kb(status, "VmHWM") == 51200
    assert parse_status_kb(status, "VmSwap") is None
    stat = "1234 (odd) name (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345"
    assert parse_cpu_ticks(stat) == 300


def test_process_monitor_reads_this_process() -> None:
    monitor = ProcessMonitor(os.getpid())
    assert monitor.sample()
    usage = monitor.usage.to_json()
    assert usage["known"] is True
    assert usage["peak_rss_mb"] > 10
    assert not ProcessMonitor(2**22 + 1).sample()  # above pid_max: no such process


def test_report_says_when_the_daemon_usage_is_not_known() -> None:
    result = {
        "url": "ws://box:8765/ws",
        "started_daemon": False,
        "clients": 1,
        "clips": [],
        "turns": [],
        "summary": {**summarise([], 1), "daemon": {"known": False, "reason": "given by --url"}},
    }
    report = format_report(result)
    assert "not known" in report
    assert "first_audio" in report


def test_no_clips_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--clips", str(tmp_path), "--url", "ws://127.0.0.1:9/ws"]) == 2
    assert capsys.readouterr().err == f"edgevoice: error: {tmp_path}: no .wav clips to play\n"


def test_stagger_must_not_be_negative(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--clips", str(tmp_path), "--url", "ws://127.0.0.1:9/ws", "--stagger", "-5"]) == 2
    assert capsys.readouterr().err == "edgevoice: error: --stagger must not be negative\n"


def test_unreachable_url_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(DEFAULT_CLIPS / "piper-05-front-door.wav", tmp_path)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert main(["bench", "--clips", str(tmp_path), "--url", f"ws://127.0.0.1:{port}/ws"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgevoice: error: cannot talk to ws://127.0.0.1:{port}/ws")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_bench_runs_its_own_daemon_and_writes_the_turns(config: Config, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("espeak-01-kitchen-lights", "piper-05-front-door"):
        for suffix in (".wav", ".txt"):
            shutil.copy(DEFAULT_CLIPS / f"{name}{suffix}", clips)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEVOICE_")}
    env["EDGEVOICE_DATA_DIR"] = str(tmp_path / "data")
    env["EDGEVOICE_STT_MODEL"] = str(config.stt.model or default_stt_path(config))
    out = tmp_path / "out.json"
    command = [sys.executable, "-m", "edgevoice", "bench", "--clips", str(clips), "--json", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(out.read_text())
    assert report["started_daemon"] is True
    assert len(report["turns"]) == 2
    for turn in report["turns"]:
        ms = turn["ms_after_end_of_speech"]
        assert ms["first_audio"] >= ms["vad_end"] > 0, turn  # held early work goes out with the end
        assert turn["wer"] < 0.5, turn
    summary = report["summary"]
    assert summary["end_of_speech_to_first_audio_ms"]["p50"] > 0
    assert summary["wer"] < 0.5
    assert summary["daemon"]["peak_rss_mb"] > 50
    assert summary["daemon"]["cpu_s"] > 0
    for stage in ("vad_end", "transcript", "first_text", "first_audio"):
        assert f"\n{stage} " in result.stdout
    assert "peak RSS" in result.stdout


def test_staggered_clients_keep_their_turns_and_unstaggered_ones_play_back_to_back() -> None:
    # Four rooms staggered by 2 s: client 1's first clip is 2 s after client 0's (its start offset),
    # and each client's next clip 8 s after its last, so the box hears a new speaker every 2 s.
    assert [clip_due_s(n, 4, 2000) for n in range(3)] == [0.0, 8.0, 16.0]
    assert clip_due_s(5, 1, 500) == 2.5
    assert clip_due_s(7, 4, 0) == 0.0


def test_the_reply_audio_running_out_between_pieces_is_a_gap() -> None:
    """Playback starts with the first audio; a piece that comes after what was received had played out
    leaves the listener a silence, and only that counts: audio that comes ahead queues behind."""
    tracker = Tracker()
    record = ClipRecord(client=0, clip="story", reference=None, speech_end_at=10.0)
    tracker.start_clip(record)
    tracker.on_event(SpeechStarted(1, 0), 9.0)
    assert record.reply_gap_ms() is None  # no reply audio yet
    tracker.on_audio(1, 11_025, 22_050, 10.4)  # 0.5 s: plays until 10.9
    tracker.on_audio(1, 11_025, 22_050, 10.6)  # ahead: queues, plays until 11.4
    tracker.on_audio(1, 2_205, 22_050, 11.45)  # 50 ms late: a short gap
    tracker.on_audio(1, 2_205, 22_050, 11.75)  # it played until 11.55: 200 ms with nothing to play
    assert record.reply_gap_ms() == pytest.approx(250.0)
    assert record.audible_gaps() == 1
    assert record.to_json()["reply_gap_ms"] == pytest.approx(250.0)
    summary = summarise([record], clients=1)
    assert summary["reply_gap_ms"]["n"] == 1
    assert summary["replies_with_audible_gaps"] == 1
    smooth = ClipRecord(client=0, clip="lights", reference="turn on the lights", speech_end_at=10.0)
    _played(Tracker(), smooth, turn=1, at=10.0)
    assert smooth.reply_gap_ms() == 0.0
    assert summarise([record, smooth], clients=1)["replies_with_audible_gaps"] == 1


def _answered(client: int, said: str, reply: str) -> ClipRecord:
    record = ClipRecord(client=client, clip=said, reference=said)
    done = TurnDone(1, said, reply, False, 0, 900, timings={})
    record.server_turns.append(ServerTurn(1, transcript=said, reply=reply, done=done))
    return record


def test_a_reply_copying_an_earlier_reply_of_its_conversation_is_counted() -> None:
    copied = "The answer to this question is no."
    records = [
        _answered(0, "Can you recommend a film?", copied),
        _answered(1, "Why is the sky blue?", "The answer to this question is Rayleigh scattering."),
        _answered(0, "Why is the sky blue?", copied),  # a copy in client 0's conversation
        _answered(1, "Why is the sky blue?", "The answer to this question is Rayleigh scattering."),  # asked again
        _answered(0, "What time is it?", "It is noon."),
        ClipRecord(client=0, clip="unanswered", reference="Hello?"),
    ]
    summary = summarise(records, clients=2)
    assert summary["copied_replies"] == 1
    assert copied_replies(records[:2]) == 0, "another client's conversation is not this one's"
