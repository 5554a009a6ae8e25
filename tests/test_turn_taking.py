"""Turn-taking without I/O: scripted voice and silence, scripted transcripts, the decisions that follow.

The detector is scripted too: a frame is voiced when its samples are not zero. With the default
VadConfig (20 ms frames, 200 ms of voice to start a turn, a 40 ms pause to start work early, 300 ms
to end a turn that sounds finished, a 500 ms hangover), the first 500 ms of voice below is a turn
from 0 to 500 ms, started at 200 ms.
"""

from __future__ import annotations

import dataclasses

import pytest

from edgevoice.audio.vad import TAIL_MS
from edgevoice.config import VadConfig
from edgevoice.turn_taking import (
    MAX_HELD_MS,
    Confirm,
    Continue,
    Decision,
    Discard,
    HearSoFar,
    Interrupt,
    JudgeEnd,
    StartEarly,
    StartTurn,
    TurnTaking,
    UserSpeaking,
    UserStopped,
)

CONFIG = VadConfig(partial_every_ms=0)
"""Partial transcripts (HearSoFar) have tests of their own below."""
BYTES_PER_MS = 32
RATE = 22_050


def voice(ms: int) -> bytes:
    return b"\x01\x00" * (16 * ms)


def silence(ms: int) -> bytes:
    return bytes(BYTES_PER_MS * ms)


def turn_taking(config: VadConfig = CONFIG) -> TurnTaking:
    return TurnTaking(config, is_speech=any)  # voiced: a frame with a sample that is not zero


def started_early(turns: TurnTaking) -> StartEarly:
    """The first turn, 500 ms of voice, and the pause that starts its work early."""
    assert turns.feed(voice(500)) == [UserSpeaking(1, 0)]
    (early,) = turns.feed(silence(CONFIG.speculate_ms))
    assert isinstance(early, StartEarly)
    return early


def ended_quickly(turns: TurnTaking) -> StartEarly:
    """The first turn, ended on a finished-sounding pause: 300 ms after its last word, at 800 ms."""
    early = started_early(turns)
    assert turns.heard(early.work, "What time is it?") == []
    assert turns.feed(silence(CONFIG.quick_end_ms - CONFIG.speculate_ms)) == [
        UserStopped(1, 0, 500, False),
        Confirm(early.work),
    ]
    assert turns.now_ms == 800
    return early


def ended(turns: TurnTaking) -> StartEarly:
    """The first turn, started early and ended by the hangover, at 1000 ms."""
    early = started_early(turns)
    assert turns.heard(early.work, "Set a timer and") == []
    assert turns.feed(silence(CONFIG.hangover_ms - CONFIG.speculate_ms)) == [
        UserStopped(1, 0, 500, False),
        Confirm(early.work),
    ]
    return early


def seconds_of_audio(turns: TurnTaking, seconds: float) -> None:
    turns.reply_audio(round(seconds * RATE), RATE)


def test_a_pause_starts_the_work_early() -> None:
    turns = turn_taking()
    assert turns.feed(voice(190)) == []
    assert turns.feed(voice(310)) == [UserSpeaking(1, 0)]
    assert turns.feed(silence(20)) == []
    (early,) = turns.feed(silence(20))
    assert early == StartEarly(early.work, 1, early.pcm, 0, 500)
    # The utterance, then TAIL_MS of the pause (made up with silence, as it is shorter so far).
    assert early.pcm == voice(500) + silence(TAIL_MS)
    assert not turns.responding, "work started early is not heard: nothing to interrupt yet"


def test_a_pause_starts_the_work_sooner_while_the_engines_are_free_on_the_same_audio() -> None:
    """speculate_idle_ms while no engine has a turn's work, speculate_ms otherwise; either pause hands
    the work the same audio, so what is heard (and so where turns end) does not depend on the load."""
    loud = b"\xe8\x03" * (16 * 500)  # voiced: a byte above 1

    def quiet(ms: int) -> bytes:
        return b"\x01\x00" * (16 * ms)  # heard, not voiced: room noise, not digital silence

    assert CONFIG.speculate_idle_ms < CONFIG.speculate_ms
    starts: list[StartEarly] = []
    for free in (True, False):
        turns = TurnTaking(CONFIG, is_speech=lambda frame: max(frame) > 1)
        turns.engines_free(free)
        assert turns.feed(loud) == [UserSpeaking(1, 0)]
        waited = 0
        while not (decisions := turns.feed(quiet(CONFIG.frame_ms))):
            waited += CONFIG.frame_ms
        (early,) = decisions
        assert isinstance(early, StartEarly)
        assert waited + CONFIG.frame_ms == (CONFIG.speculate_idle_ms if free else CONFIG.speculate_ms)
        starts.append(early)
    sooner, later = starts
    heard = CONFIG.speculate_idle_ms  # of the pause, as heard; the rest of TAIL_MS is digital silence
    assert sooner.pcm == later.pcm == loud + quiet(heard) + silence(TAIL_MS - heard)
    assert (sooner.start_ms, sooner.end_ms) == (later.start_ms, later.end_ms) == (0, 500)


def test_without_speculate_idle_ms_a_pause_waits_speculate_ms_however_free() -> None:
    turns = turn_taking(dataclasses.replace(CONFIG, speculate_idle_ms=0))
    turns.engines_free(True)
    assert turns.feed(voice(500)) == [UserSpeaking(1, 0)]
    assert turns.feed(silence(CONFIG.speculate_ms - 20)) == []
    (early,) = turns.feed(silence(20))
    assert isinstance(early, StartEarly)


def test_the_pause_confirmed_as_the_end_after_the_hangover() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.heard(early.work, "Set a timer and") == []
    assert turns.feed(silence(CONFIG.hangover_ms - CONFIG.speculate_ms - 20)) == []
    assert turns.feed(silence(20)) == [UserStopped(1, 0, 500, False), Confirm(early.work)]
    assert turns.responding
    assert turns.finished(early.work) == []
    assert not turns.responding


def test_at_quick_end_ms_input_waits_for_the_early_transcript() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.feed(silence(CONFIG.hangover_ms)) == []
    assert turns.waiting
    assert turns.now_ms == 800, "audio past quick_end_ms is held, not judged"
    # However late it comes, the transcript ends the turn where the pause reached quick_end_ms.
    assert turns.heard(early.work, "What time is it?") == [UserStopped(1, 0, 500, False), Confirm(early.work)]
    assert not turns.waiting
    assert turns.now_ms == 500 + CONFIG.hangover_ms + CONFIG.speculate_ms


def test_held_audio_is_judged_once_the_transcript_says_the_turn_goes_on() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.feed(silence(CONFIG.hangover_ms)) == []
    assert turns.heard(early.work, "Set a timer and") == [UserStopped(1, 0, 500, False), Confirm(early.work)]


def test_speech_during_the_wait_is_judged_after_the_quick_end() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.feed(silence(CONFIG.quick_end_ms) + voice(200)) == []
    decisions = turns.heard(early.work, "What time is it?")
    assert decisions[:2] == [UserStopped(1, 0, 500, False), Confirm(early.work)]
    assert decisions[2:] == [Continue(early.work), Interrupt(1, 1040, early.work), UserSpeaking(2, 840)]


def test_early_work_that_ends_without_a_transcript_stops_the_wait() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.feed(silence(CONFIG.hangover_ms)) == []
    assert turns.finished(early.work) == [UserStopped(1, 0, 500, False), Confirm(early.work)]


def test_the_wait_is_bounded() -> None:
    turns = turn_taking()
    started_early(turns)
    assert turns.feed(silence(MAX_HELD_MS)) == []
    assert turns.feed(silence(400)) == [UserStopped(1, 0, 500, False), Confirm(1)]
    assert not turns.waiting


def _decisions(turns: TurnTaking, script: list[bytes], hear_at_once: bool) -> list[Decision]:
    """Feed the script; each early work hears "Set a timer" (which sounds finished) at once, or only
    after all the audio is in, as on a box too busy to transcribe in time."""
    decisions: list[Decision] = []
    pending: list[int] = []
    for pcm in script:
        got = turns.feed(pcm)
        decisions += got
        pending += [d.work for d in got if isinstance(d, StartEarly)]
        while hear_at_once and pending:
            got = turns.heard(pending.pop(0), "Set a timer")
            decisions += got
            pending += [d.work for d in got if isinstance(d, StartEarly)]
    while pending:
        got = turns.heard(pending.pop(0), "Set a timer")
        decisions += got
        pending += [d.work for d in got if isinstance(d, StartEarly)]
    return decisions


def test_the_turns_do_not_depend_on_when_transcripts_come() -> None:
    """The same audio and words give the same decisions on an idle box and a busy one."""
    script = [voice(500), silence(350), voice(400), silence(250), voice(300), silence(900), voice(250), silence(700)]
    idle = _decisions(turn_taking(), script, hear_at_once=True)
    busy = _decisions(turn_taking(), script, hear_at_once=False)
    assert [d for d in idle if not isinstance(d, Interrupt)] == [d for d in busy if not isinstance(d, Interrupt)]
    assert sum(isinstance(d, Continue) for d in idle) == 1


def test_speech_resuming_discards_the_early_work() -> None:
    turns = turn_taking()
    first = started_early(turns)
    assert turns.feed(silence(60)) == []
    assert turns.feed(voice(300)) == [Discard(first.work)]
    assert turns.heard(first.work, "What time is it?") == [], "what discarded work heard counts for nothing"
    (second,) = turns.feed(silence(CONFIG.speculate_ms))
    assert isinstance(second, StartEarly)
    assert second.work != first.work
    assert (second.turn, second.start_ms, second.end_ms) == (1, 0, 900)
    assert second.pcm == voice(500) + silence(100) + voice(300) + silence(TAIL_MS)
    assert turns.heard(second.work, "") == []
    assert turns.feed(silence(CONFIG.hangover_ms)) == [UserStopped(1, 0, 900, False), Confirm(second.work)]


def test_a_finished_sounding_pause_ends_the_turn_on_quick_end_ms() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.heard(early.work, "Set a timer for ten minutes.") == []
    assert turns.feed(silence(CONFIG.quick_end_ms - CONFIG.speculate_ms - 20)) == []
    assert turns.feed(silence(20)) == [UserStopped(1, 0, 500, False), Confirm(early.work)]
    assert turns.feed(silence(CONFIG.hangover_ms)) == [], "the turn ended once, not again after the hangover"


def test_a_transcript_that_comes_after_quick_end_ms_ends_the_turn_at_once() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.feed(silence(CONFIG.quick_end_ms)) == []
    assert turns.heard(early.work, "What time is it?") == [UserStopped(1, 0, 500, False), Confirm(early.work)]


@pytest.mark.parametrize(
    "transcript", ["What is the capital of", "Remind me to buy the", "Turn on the lights,", "Set a timer and", ""]
)
def test_a_pause_after_unfinished_words_waits_the_whole_hangover(transcript: str) -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.heard(early.work, transcript) == []
    assert turns.feed(silence(CONFIG.hangover_ms - CONFIG.speculate_ms - 20)) == []
    assert turns.feed(silence(20)) == [UserStopped(1, 0, 500, False), Confirm(early.work)]


def test_quick_end_off() -> None:
    turns = turn_taking(dataclasses.replace(CONFIG, quick_end_ms=0))
    early = started_early(turns)
    assert turns.heard(early.work, "What time is it?") == []
    assert turns.feed(silence(CONFIG.hangover_ms - CONFIG.speculate_ms - 20)) == []
    assert turns.feed(silence(20)) == [UserStopped(1, 0, 500, False), Confirm(early.work)]


def test_speech_within_the_hangover_of_a_quick_end_continues_that_turn() -> None:
    turns = turn_taking()
    first = ended_quickly(turns)
    assert turns.feed(silence(CONFIG.hangover_ms - 20)) == []
    # The new voice starts 480 ms after the quick end: its answer stops and is not remembered.
    decisions = turns.feed(voice(200))
    assert decisions == [Continue(first.work), Interrupt(1, turns.now_ms, first.work), UserSpeaking(2, 1280)]
    (second,) = turns.feed(voice(100) + silence(CONFIG.speculate_ms))
    assert isinstance(second, StartEarly)
    assert second.turn == 2
    # The next turn hears the first one's words again, then its own.
    heard_before = voice(500) + silence(TAIL_MS)
    assert second.pcm.startswith(heard_before)
    assert second.pcm[len(heard_before) :].endswith(voice(300) + silence(TAIL_MS))
    assert turns.heard(second.work, "for ten minutes and") == []
    assert turns.feed(silence(CONFIG.hangover_ms)) == [UserStopped(2, 1280, 1580, False), Confirm(second.work)]


def test_speech_after_the_hangover_of_a_quick_end_is_a_turn_of_its_own() -> None:
    turns = turn_taking()
    first = ended_quickly(turns)
    turns.finished(first.work)
    assert turns.feed(silence(CONFIG.hangover_ms + 20)) == []
    assert turns.feed(voice(200)) == [UserSpeaking(2, 1320)]
    (second,) = turns.feed(voice(100) + silence(CONFIG.speculate_ms))
    assert isinstance(second, StartEarly)
    assert not second.pcm.startswith(voice(20)), "nothing of the first turn is heard again"
    assert second.pcm.endswith(voice(300) + silence(TAIL_MS))


def test_a_turn_ended_by_the_hangover_is_never_continued() -> None:
    turns = turn_taking()
    early = ended(turns)
    turns.finished(early.work)
    assert turns.feed(silence(20) + voice(200)) == [UserSpeaking(2, 1020)]


def test_barge_in_while_the_turn_runs() -> None:
    turns = turn_taking()
    early = ended(turns)
    assert turns.responding
    assert turns.feed(voice(200)) == [Interrupt(1, 1200, early.work), UserSpeaking(2, 1000)]
    assert not turns.responding
    turns.finished(early.work)  # the cancelled work ends
    assert turns.interrupt() == []


def test_barge_in_while_the_reply_still_plays() -> None:
    turns = turn_taking()
    early = ended(turns)
    seconds_of_audio(turns, 2.0)
    turns.finished(early.work)  # all of it said; it plays until 3000 ms
    assert turns.responding
    turns.feed(silence(1500))
    assert turns.feed(voice(200)) == [Interrupt(1, 2700, None), UserSpeaking(2, 2500)]
    assert not turns.responding, "the interrupted audio is not playing any more"


def test_no_barge_in_once_the_reply_has_played() -> None:
    turns = turn_taking()
    early = ended(turns)
    seconds_of_audio(turns, 0.5)
    turns.finished(early.work)  # plays until 1500 ms
    turns.feed(silence(480))
    assert turns.responding
    turns.feed(silence(20))
    assert not turns.responding
    assert turns.feed(voice(200)) == [UserSpeaking(2, 1500)]


def test_reply_audio_plays_after_what_came_before_or_from_now() -> None:
    turns = turn_taking()
    seconds_of_audio(turns, 0.1)
    seconds_of_audio(turns, 0.1)
    seconds_of_audio(turns, 0.1)
    turns.feed(silence(280))
    assert turns.responding, "three pieces sent at once play one after the other"
    turns.feed(silence(20))
    assert not turns.responding
    turns.feed(silence(2000))
    seconds_of_audio(turns, 0.2)
    turns.feed(silence(180))
    assert turns.responding, "audio after a pause plays from when it came"
    turns.feed(silence(20))
    assert not turns.responding


def test_early_work_done_before_it_is_confirmed_is_not_running() -> None:
    turns = turn_taking()
    early = started_early(turns)
    turns.finished(early.work)
    assert turns.feed(silence(CONFIG.hangover_ms - CONFIG.speculate_ms)) == [
        UserStopped(1, 0, 500, False),
        Confirm(early.work),
    ]
    assert not turns.responding
    assert turns.feed(voice(200)) == [UserSpeaking(2, 1000)]


def test_an_explicit_interrupt_stops_an_answer_and_only_an_answer() -> None:
    turns = turn_taking()
    assert turns.interrupt() == []
    early = started_early(turns)
    assert turns.interrupt() == [], "work started early is not heard yet: nothing to interrupt"
    turns.heard(early.work, "")
    turns.feed(silence(CONFIG.hangover_ms - CONFIG.speculate_ms))
    seconds_of_audio(turns, 1.0)
    assert turns.interrupt() == [Interrupt(1, 1000, early.work)]
    assert turns.interrupt() == []
    assert not turns.responding


def test_without_early_starts_the_turn_starts_at_its_end() -> None:
    turns = turn_taking(dataclasses.replace(CONFIG, speculate_ms=0))
    assert turns.feed(voice(500)) == [UserSpeaking(1, 0)]
    assert turns.feed(silence(CONFIG.hangover_ms - 20)) == []
    (stopped, start) = turns.feed(silence(20))
    assert stopped == UserStopped(1, 0, 500, False)
    assert isinstance(start, StartTurn)
    assert (start.turn, start.start_ms, start.end_ms) == (1, 0, 500)
    assert start.pcm == voice(500) + silence(TAIL_MS)
    assert turns.responding


def test_a_monologue_cut_at_max_utterance_ms_starts_a_turn() -> None:
    turns = turn_taking(dataclasses.replace(CONFIG, max_utterance_ms=1000))
    decisions = turns.feed(voice(1000))
    assert decisions[0] == UserSpeaking(1, 0)
    stopped, start = decisions[1:]
    assert stopped == UserStopped(1, 0, 1000, True)
    assert isinstance(start, StartTurn)
    assert start.pcm == voice(1000)


def test_the_end_of_input_ends_the_turn_in_progress() -> None:
    turns = turn_taking()
    early = started_early(turns)
    assert turns.flush() == [UserStopped(1, 0, 500, False), Confirm(early.work)]
    assert turns.flush() == []


def test_every_work_is_confirmed_or_discarded_once() -> None:
    """A long exchange: each StartEarly is answered by exactly one Confirm or Discard."""
    turns = turn_taking()
    script = [voice(400) + silence(100) + voice(300) + silence(600)] * 3
    decisions = _decisions(turns, script, hear_at_once=False)
    started = [d.work for d in decisions if isinstance(d, StartEarly)]
    ended = [d.work for d in decisions if isinstance(d, Confirm | Discard)]
    assert sorted(ended) == started
    assert len(started) == 6
    assert [d.turn for d in decisions if isinstance(d, UserSpeaking)] == [1, 2, 3]


SMART = dataclasses.replace(CONFIG, turn_end="smart-turn")


def judge_asked(turns: TurnTaking, early: StartEarly) -> JudgeEnd:
    """The pause reaches turn_check_ms: the end-of-turn model is asked about the turn so far."""
    assert turns.heard(early.work, "What time is it?") == []
    (judge,) = turns.feed(silence(SMART.turn_check_ms - SMART.speculate_ms))
    assert isinstance(judge, JudgeEnd)
    assert judge.work == early.work
    assert judge.pcm.startswith(voice(500)), "the model hears the turn from its start, its pause included"
    return judge


def test_smart_turn_ends_the_turn_when_the_model_and_the_words_agree() -> None:
    turns = turn_taking(SMART)
    early = started_early(turns)
    judge = judge_asked(turns, early)
    assert turns.judged(judge.work, 0.9) == [UserStopped(1, 0, 500, False), Confirm(early.work)]
    assert turns.now_ms == 500 + SMART.turn_check_ms


def test_smart_turn_holds_input_until_the_model_answers() -> None:
    turns = turn_taking(SMART)
    early = started_early(turns)
    judge = judge_asked(turns, early)
    assert turns.feed(silence(2000)) == []
    assert turns.waiting
    assert turns.judged(judge.work, 0.9)[:2] == [UserStopped(1, 0, 500, False), Confirm(early.work)]


def test_a_pause_the_model_hears_as_unfinished_lasts_turn_wait_ms() -> None:
    turns = turn_taking(SMART)
    early = started_early(turns)
    judge = judge_asked(turns, early)
    assert turns.judged(judge.work, 0.2) == []
    assert turns.feed(silence(SMART.turn_wait_ms - SMART.turn_check_ms - 20)) == []
    assert turns.feed(silence(20)) == [UserStopped(1, 0, 500, False), Confirm(early.work)]


@pytest.mark.parametrize("transcript", ["Set a timer for", ""])
def test_words_that_do_not_sound_finished_keep_the_pause_open_whatever_the_model_says(transcript: str) -> None:
    turns = turn_taking(SMART)
    early = started_early(turns)
    assert turns.heard(early.work, transcript) == []
    (judge,) = turns.feed(silence(SMART.turn_check_ms - SMART.speculate_ms))
    assert isinstance(judge, JudgeEnd)
    assert not turns.waiting, "the words already keep the pause open: no need to wait for the model"
    assert turns.judged(judge.work, 0.99) == []
    assert turns.feed(silence(SMART.turn_wait_ms - SMART.turn_check_ms)) == [
        UserStopped(1, 0, 500, False),
        Confirm(early.work),
    ]


def test_the_model_is_asked_once_per_pause() -> None:
    turns = turn_taking(SMART)
    early = started_early(turns)
    judge = judge_asked(turns, early)
    turns.judged(judge.work, 0.1)
    assert not any(isinstance(d, JudgeEnd) for d in turns.feed(silence(300)))
    assert turns.feed(voice(100)) == [Discard(early.work)]
    (second,) = turns.feed(silence(SMART.speculate_ms))
    assert isinstance(second, StartEarly)
    assert turns.heard(second.work, "What time is it?") == []
    (again,) = turns.feed(silence(SMART.turn_check_ms - SMART.speculate_ms))
    assert isinstance(again, JudgeEnd)
    assert again.work == second.work


def test_while_the_person_speaks_what_was_heard_is_offered_every_partial_every_ms() -> None:
    turns = turn_taking(dataclasses.replace(CONFIG, partial_every_ms=600))
    decisions = turns.feed(voice(1500))  # a turn from 200 ms: offers at 800 and 1400 ms
    assert decisions[0] == UserSpeaking(1, 0)
    partials = decisions[1:]
    assert [type(d) for d in partials] == [HearSoFar, HearSoFar]
    assert all(isinstance(d, HearSoFar) and d.turn == 1 for d in partials)
    first, second = partials
    assert isinstance(first, HearSoFar)
    assert isinstance(second, HearSoFar)
    assert len(second.pcm) > len(first.pcm), "each offers the turn from its start"
    assert not any(isinstance(d, HearSoFar) for d in turns.feed(silence(300))), "not while the person pauses"


def test_partial_transcripts_off() -> None:
    turns = turn_taking(dataclasses.replace(CONFIG, partial_every_ms=0))
    assert turns.feed(voice(3000)) == [UserSpeaking(1, 0)]
