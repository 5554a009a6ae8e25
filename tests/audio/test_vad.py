"""Endpointer logic with an injected energy detector, so no webrtcvad decisions are involved."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from edgevoice.audio.vad import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VadEvent
from edgevoice.config import VadConfig

RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2

CONFIG = VadConfig(
    frame_ms=FRAME_MS,
    pre_roll_ms=300,
    min_speech_ms=200,
    hangover_ms=500,
    max_utterance_ms=30_000,
    speculate_ms=0,
)
"""Without early starts: the tests of pauses below turn them on."""
PRE_ROLL_FRAMES = 300 // FRAME_MS
MIN_SPEECH_FRAMES = 200 // FRAME_MS
HANGOVER_FRAMES = 500 // FRAME_MS
TAIL_FRAMES = 200 // FRAME_MS
"""Trailing silence the endpointer keeps after the last voiced frame."""


def energy_is_speech(frame: bytes) -> bool:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.int32)
    return float(np.abs(samples).mean()) > 500


def speech(ms: int) -> bytes:
    n = RATE * ms // 1000
    t = np.arange(n) / RATE
    return (8000 * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return np.zeros(RATE * ms // 1000, dtype="<i2").tobytes()


def endpointer(config: VadConfig = CONFIG) -> Endpointer:
    return Endpointer(config, is_speech=energy_is_speech)


def run(pcm: bytes, config: VadConfig = CONFIG, *, flush: bool = True) -> list[VadEvent]:
    ep = endpointer(config)
    events = ep.feed(pcm)
    if flush:
        events += ep.flush()
    return events


def test_fake_detector_sees_speech_and_silence() -> None:
    assert energy_is_speech(speech(FRAME_MS))
    assert not energy_is_speech(silence(FRAME_MS))


def test_one_turn_gives_started_then_ended_with_frame_exact_times() -> None:
    ep = endpointer()
    assert ep.feed(silence(1000)) == []
    assert not ep.in_speech

    events = ep.feed(speech(400))
    assert events == [SpeechStarted(start_ms=1000, decided_ms=1000 + MIN_SPEECH_FRAMES * FRAME_MS)]
    assert ep.in_speech

    events = ep.feed(silence(1000))
    assert len(events) == 1
    ended = events[0]
    assert isinstance(ended, SpeechEnded)
    assert ended.start_ms == 1000
    assert ended.end_ms == 1400
    assert ended.decided_ms == 1400 + 500
    assert not ended.truncated
    assert not ep.in_speech
    assert ep.now_ms == 2400
    assert ep.flush() == []


def test_turn_with_a_short_pause_inside_stays_one_turn() -> None:
    pcm = silence(500) + speech(300) + silence(300) + speech(300) + silence(1000)
    events = run(pcm)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    ended = events[1]
    assert isinstance(ended, SpeechEnded)
    assert (ended.start_ms, ended.end_ms, ended.decided_ms) == (500, 1400, 1900)


@pytest.mark.parametrize(
    ("lead_ms", "pre_roll_frames"),
    [(0, 0), (100, 5), (300, PRE_ROLL_FRAMES), (1000, PRE_ROLL_FRAMES)],
)
def test_pre_roll_is_included_in_the_utterance(lead_ms: int, pre_roll_frames: int) -> None:
    voiced = speech(400)
    events = run(silence(lead_ms) + voiced + silence(1000))
    ended = events[-1]
    assert isinstance(ended, SpeechEnded)
    voiced_frames = 400 // FRAME_MS
    assert len(ended.pcm) == (pre_roll_frames + voiced_frames + TAIL_FRAMES) * FRAME_BYTES
    pre = pre_roll_frames * FRAME_BYTES
    assert ended.pcm[:pre] == silence(pre_roll_frames * FRAME_MS)
    assert ended.pcm[pre : pre + len(voiced)] == voiced
    assert ended.pcm[pre + len(voiced) :] == silence(TAIL_FRAMES * FRAME_MS)


def test_pre_roll_survives_a_rejected_click() -> None:
    """Audio before and around a click still counts as pre-roll for the turn that follows."""
    click = speech(60)
    pcm = silence(1000) + click + silence(100) + speech(400) + silence(1000)
    events = run(pcm)
    # The click and the 100 ms gap are shorter than the silence that rejects a candidate, so
    # the click starts the turn; with a long gap it is rejected but kept as pre-roll.
    assert isinstance(events[0], SpeechStarted)
    assert events[0].start_ms == 1000

    pcm = silence(1000) + click + silence(240) + speech(400) + silence(1000)
    events = run(pcm)
    started, ended = events
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    assert started.start_ms == 1300
    # The pre-roll is the last 300 ms before the turn: the tail of the click and its gap.
    assert len(ended.pcm) == (PRE_ROLL_FRAMES + 20 + TAIL_FRAMES) * FRAME_BYTES
    assert (
        ended.pcm[: PRE_ROLL_FRAMES * FRAME_BYTES]
        == (silence(1000) + click + silence(240))[-PRE_ROLL_FRAMES * FRAME_BYTES :]
    )


@pytest.mark.parametrize("click_ms", [FRAME_MS, 100, 200 - FRAME_MS])
def test_click_shorter_than_min_speech_starts_no_turn(click_ms: int) -> None:
    ep = endpointer()
    events = ep.feed(silence(500) + speech(click_ms) + silence(2000))
    events += ep.flush()
    assert events == []
    assert not ep.in_speech


def test_sound_of_exactly_min_speech_starts_a_turn() -> None:
    events = run(silence(500) + speech(200) + silence(2000))
    assert events[0] == SpeechStarted(start_ms=500, decided_ms=700)
    assert isinstance(events[1], SpeechEnded)


def test_ending_needs_the_full_hangover_of_silence() -> None:
    ep = endpointer()
    ep.feed(silence(200) + speech(400))
    assert ep.in_speech
    assert ep.feed(silence(500 - FRAME_MS)) == []
    assert ep.in_speech
    events = ep.feed(silence(FRAME_MS))
    assert len(events) == 1
    ended = events[0]
    assert isinstance(ended, SpeechEnded)
    assert ended.end_ms == 600
    assert ended.decided_ms == 1100
    assert ended.decided_ms - ended.end_ms == CONFIG.hangover_ms


def test_speech_resuming_one_frame_before_hangover_continues_the_turn() -> None:
    pcm = speech(400) + silence(500 - FRAME_MS) + speech(400) + silence(600)
    events = run(pcm, flush=False)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    ended = events[1]
    assert isinstance(ended, SpeechEnded)
    assert (ended.start_ms, ended.end_ms) == (0, 400 + 480 + 400)


def test_max_utterance_cuts_a_monologue_into_truncated_turns() -> None:
    config = VadConfig(
        frame_ms=FRAME_MS, pre_roll_ms=300, min_speech_ms=200, hangover_ms=500, max_utterance_ms=1000, speculate_ms=0
    )
    lead, talk = silence(400), speech(2300)
    events = run(lead + talk + silence(1000), config, flush=False)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded] * 3
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    starts = [e for e in events if isinstance(e, SpeechStarted)]

    assert [(s.start_ms, s.decided_ms) for s in starts] == [(400, 600), (1400, 1600), (2400, 2600)]
    assert [(e.start_ms, e.end_ms, e.decided_ms, e.truncated) for e in ends] == [
        (400, 1400, 1400, True),
        (1400, 2400, 2400, True),
        (2400, 2700, 3200, False),
    ]
    for event in ends[:2]:
        assert event.end_ms - event.start_ms <= config.max_utterance_ms
    # Nothing is lost or doubled at the cuts: the pieces, less pre-roll and tail, are the stream.
    frames_of_lead = PRE_ROLL_FRAMES * FRAME_BYTES
    tail = TAIL_FRAMES * FRAME_BYTES
    assert ends[0].pcm[:frames_of_lead] == lead[-frames_of_lead:]
    joined = ends[0].pcm[frames_of_lead:] + ends[1].pcm + ends[2].pcm[:-tail]
    assert joined == talk


def _feed_in_chunks(pcm: bytes, sizes: list[int]) -> list[VadEvent]:
    ep = endpointer()
    events: list[VadEvent] = []
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(pcm):
            break
        events += ep.feed(pcm[position : position + size])
        position += size
    return events + ep.flush()


@pytest.mark.parametrize("sizes", [[7, 333, 1], [1], [FRAME_BYTES - 1], [FRAME_BYTES + 1, 5], [4096]])
def test_chunk_sizes_do_not_change_the_events(sizes: list[int]) -> None:
    pcm = (
        silence(700)
        + speech(500)
        + silence(300)
        + speech(60)  # inside the first turn's hangover
        + silence(900)
        + speech(100)  # a click
        + silence(600)
        + speech(800)
        + silence(250)  # flushed while the turn is in progress
        + b"\x00" * 3  # and a partial frame
    )
    whole = run(pcm)
    assert [type(e) for e in whole] == [SpeechStarted, SpeechEnded] * 2
    assert _feed_in_chunks(pcm, sizes) == whole


def test_flush_ends_a_turn_in_progress() -> None:
    ep = endpointer()
    ep.feed(silence(400) + speech(600) + silence(100))
    assert ep.in_speech
    events = ep.flush()
    assert len(events) == 1
    ended = events[0]
    assert isinstance(ended, SpeechEnded)
    assert (ended.start_ms, ended.end_ms, ended.decided_ms, ended.truncated) == (400, 1000, 1100, False)
    # The 100 ms pause heard, made up to TAIL_MS with digital silence.
    assert len(ended.pcm) == (PRE_ROLL_FRAMES + 30 + TAIL_FRAMES) * FRAME_BYTES
    assert ended.pcm.endswith(bytes((TAIL_FRAMES - 5) * FRAME_BYTES))
    assert not ep.in_speech
    assert ep.flush() == []


@pytest.mark.parametrize("before", [b"", silence(90), silence(1000)])
def test_flush_in_silence_is_a_no_op(before: bytes) -> None:
    later = silence(200) + speech(400) + silence(1000)
    plain = endpointer()
    plain.feed(before)
    flushed = endpointer()
    flushed.feed(before)
    flushed_events = flushed.flush()
    assert flushed_events == []
    assert flushed.feed(later) == plain.feed(later)


def test_now_ms_counts_whole_frames_fed() -> None:
    ep = endpointer()
    ep.feed(b"\x00" * (FRAME_BYTES * 3 - 1))
    assert ep.now_ms == 2 * FRAME_MS
    ep.feed(b"\x00")
    assert ep.now_ms == 3 * FRAME_MS


@pytest.mark.parametrize("frame_ms", [10, 30])
def test_other_frame_lengths_time_turns_to_their_frame(frame_ms: int) -> None:
    config = VadConfig(frame_ms=frame_ms, pre_roll_ms=300, min_speech_ms=210, hangover_ms=510, speculate_ms=0)
    events = run(silence(600) + speech(900) + silence(1200), config)
    started, ended = events
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    min_speech = -(-210 // frame_ms) * frame_ms
    hangover = -(-510 // frame_ms) * frame_ms
    assert started == SpeechStarted(start_ms=600, decided_ms=600 + min_speech)
    assert (ended.start_ms, ended.end_ms, ended.decided_ms) == (600, 1500, 1500 + hangover)
    frame_bytes = RATE * frame_ms // 1000 * 2
    pre, tail = 300 // frame_ms, 200 // frame_ms
    assert len(ended.pcm) == (pre + 900 // frame_ms + tail) * frame_bytes


def test_zero_pre_roll_keeps_no_audio_before_speech() -> None:
    config = VadConfig(frame_ms=FRAME_MS, pre_roll_ms=0, min_speech_ms=200, hangover_ms=500, speculate_ms=0)
    voiced = speech(400)
    events = run(silence(1000) + voiced + silence(1000), config)
    ended = events[-1]
    assert isinstance(ended, SpeechEnded)
    assert ended.pcm.startswith(voiced)


EARLY = dataclasses.replace(CONFIG, speculate_ms=200)


def test_a_pause_comes_before_the_end_with_the_same_audio() -> None:
    events = run(silence(300) + speech(600) + silence(700), EARLY, flush=False)
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, SpeechEnded]
    _, paused, ended = events
    assert isinstance(paused, SpeechPaused)
    assert isinstance(ended, SpeechEnded)
    assert paused.decided_ms == paused.end_ms + EARLY.speculate_ms
    assert ended.decided_ms == ended.end_ms + EARLY.hangover_ms
    assert (paused.start_ms, paused.end_ms, paused.pcm) == (ended.start_ms, ended.end_ms, ended.pcm)


def test_speech_after_a_pause_resumes_the_same_turn() -> None:
    pcm = silence(300) + speech(600) + silence(300) + speech(400) + silence(700)
    events = run(pcm, EARLY, flush=False)
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded]
    first_pause, resumed, second_pause, ended = events[1:]
    assert isinstance(resumed, SpeechResumed)
    assert resumed.at_ms == 300 + 600 + 300
    assert isinstance(first_pause, SpeechPaused)
    assert isinstance(second_pause, SpeechPaused)
    assert isinstance(ended, SpeechEnded)
    assert len(first_pause.pcm) < len(ended.pcm)
    assert second_pause.pcm == ended.pcm


def test_early_starts_are_off_at_zero_or_at_the_hangover() -> None:
    pcm = silence(300) + speech(600) + silence(700)
    for config in (CONFIG, dataclasses.replace(EARLY, speculate_ms=500)):
        assert [type(e) for e in run(pcm, config, flush=False)] == [SpeechStarted, SpeechEnded]


def test_a_pause_judged_to_be_the_end_ends_the_turn_at_once() -> None:
    ep = endpointer(EARLY)
    events = ep.feed(silence(300) + speech(600) + silence(260))
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused]
    paused = events[1]
    assert isinstance(paused, SpeechPaused)
    assert ep.silence_ms == 260
    ended = ep.end_now()
    assert isinstance(ended, SpeechEnded)
    assert (ended.start_ms, ended.end_ms, ended.pcm) == (paused.start_ms, paused.end_ms, paused.pcm)
    assert ended.decided_ms == 300 + 600 + 260
    assert not ended.truncated
    # The turn is over: silence goes on without a second end, and new speech is a new turn.
    assert ep.silence_ms == 0
    assert ep.end_now() is None
    assert ep.feed(silence(600)) == []
    assert [type(e) for e in ep.feed(speech(400))] == [SpeechStarted]


def test_no_pause_no_early_end() -> None:
    ep = endpointer(EARLY)
    assert ep.end_now() is None  # no turn
    ep.feed(silence(300) + speech(600))
    assert ep.silence_ms == 0
    assert ep.end_now() is None  # mid-word
