"""Skills.answer: a transcript and a conversation in, what to say (or stop) and what happened to timers out."""

from __future__ import annotations

import dataclasses
import json
import zoneinfo
from pathlib import Path

import pytest

from edgevoice.config import Config, SkillsConfig
from edgevoice.skills.clock import Places
from edgevoice.skills.lists import ShoppingListFile
from edgevoice.skills.matcher import Matcher
from edgevoice.skills.router import SkillAnswer, Skills
from edgevoice.skills.timer_service import TimerService
from edgevoice.skills.timers import TimerBook, TimerEvent, TimerEventKind
from tests.skills.conftest import FakeClock


@pytest.fixture
def rung() -> list[tuple[str, TimerEvent]]:
    return []


@pytest.fixture
def skills(
    matcher: Matcher, places: Places, fake_clock: FakeClock, tmp_path: Path, rung: list[tuple[str, TimerEvent]]
) -> Skills:
    timers = TimerService(
        TimerBook(ring_every_s=10, ring_for_s=60),
        tmp_path / "timers.json",
        lambda conversation, event: rung.append((conversation, event)),
        fake_clock,
    )
    return Skills(matcher, places, zoneinfo.ZoneInfo("Europe/London"), timers, ShoppingListFile(tmp_path / "list.json"))


def say(skills: Skills, text: str, conversation: str = "kitchen") -> SkillAnswer:
    answer = skills.answer(text, conversation)
    assert answer is not None, text
    return answer


def test_time_and_date(skills: Skills) -> None:
    assert say(skills, "What time is it?").text == "It's one o'clock in the afternoon."
    assert say(skills, "What time is it in Tokyo?").text == "In Tokyo it's nine o'clock at night."
    assert say(skills, "what's the date today").text == "Today is Monday, June sixteenth, twenty twenty-five."


def test_a_timer_from_start_to_cancel(skills: Skills, fake_clock: FakeClock) -> None:
    started = say(skills, "Set a pasta timer for 8 minutes.")
    assert started.text == "Pasta timer set for eight minutes."
    [event] = started.events
    assert (event.kind, event.timer.name, event.timer.duration_s) == (TimerEventKind.STARTED, "pasta", 480)
    assert not started.stop
    fake_clock.advance(60)
    assert say(skills, "How much time is left on my timer?").text == "The pasta timer has seven minutes left."
    assert say(skills, "pause the timer").text == "Paused the pasta timer."
    fake_clock.advance(600)
    status = say(skills, "how much time is left on my timer")
    assert status.text == "The pasta timer is paused with seven minutes left."
    assert say(skills, "resume the timer").text == "Resumed the pasta timer."
    added = say(skills, "add two minutes to the timer")
    assert added.text == "Added two minutes. Nine minutes left."
    assert added.events[0].kind is TimerEventKind.UPDATED
    cancelled = say(skills, "Cancel the timer.")
    assert cancelled.text == "Cancelled the pasta timer."
    assert cancelled.events[0].reason == "cancelled"
    assert say(skills, "cancel the timer").text == "I can't find a timer."


def test_a_timer_rings_in_its_conversation_and_stop_silences_it(
    skills: Skills, fake_clock: FakeClock, rung: list[tuple[str, TimerEvent]]
) -> None:
    say(skills, "set a timer for ten minutes", "phone")
    fake_clock.advance(600)
    skills.timers.tick()
    fake_clock.advance(10)
    skills.timers.tick()
    assert [(c, e.kind, e.ring, e.text) for c, e in rung] == [
        ("phone", TimerEventKind.FINISHED, 1, "Your ten minute timer is done."),
        ("phone", TimerEventKind.FINISHED, 2, "Your ten minute timer is done."),
    ]
    stop = say(skills, "Stop.", "kitchen")  # anyone in the room may stop it
    assert stop.stop
    assert stop.text == ""
    assert [(e.kind, e.reason) for e in stop.events] == [(TimerEventKind.CANCELLED, "stopped")]
    fake_clock.advance(30)
    assert skills.timers.tick() == []


def test_stop_the_timer_while_it_rings_stops_the_ringing(skills: Skills, fake_clock: FakeClock) -> None:
    say(skills, "set a timer for 1 minute")
    fake_clock.advance(60)
    skills.timers.tick()
    answer = say(skills, "stop the timer")
    assert answer.stop
    assert answer.events[0].reason == "stopped"


@pytest.mark.parametrize("said", ["stop", "never mind", "cancel that", "Be quiet."])
def test_stop_with_nothing_ringing_still_stops_talking(skills: Skills, said: str) -> None:
    answer = say(skills, said)
    assert (answer.stop, answer.text, answer.events) == (True, "", ())


def test_which_timer(skills: Skills, fake_clock: FakeClock) -> None:
    say(skills, "set a pasta timer for 8 minutes", "kitchen")
    say(skills, "set a timer for 5 minutes called eggs", "kitchen")
    ambiguous = say(skills, "pause the timer")
    both = "the eight minute pasta timer and the five minute eggs timer"
    assert ambiguous.text == f"There are two timers: {both}. Which one?"
    assert ambiguous.events == ()
    assert say(skills, "pause the eggs timer").text == "Paused the eggs timer."
    assert say(skills, "cancel the 8 minute timer").text == "Cancelled the pasta timer."
    # Among several, a conversation's own timer is the one it means.
    say(skills, "set a timer for 3 minutes", "phone")
    assert say(skills, "cancel the timer", "phone").events[0].timer.conversation_id == "phone"
    status = say(skills, "timer status")
    assert status.text == "The eggs timer is paused with five minutes left."


def test_pause_and_resume_mean_the_timer_they_can_act_on(skills: Skills) -> None:
    say(skills, "set a pasta timer for 8 minutes")
    say(skills, "set a rice timer for 20 minutes")
    say(skills, "pause the rice timer")
    assert say(skills, "pause the timer").text == "Paused the pasta timer."  # the one still running
    assert say(skills, "Pause the pasta timer.").text == "The pasta timer is already paused."
    say(skills, "resume the rice timer")
    assert say(skills, "resume the timer").text == "Resumed the pasta timer."
    assert say(skills, "resume the rice timer").text == "The rice timer is already running."


def test_cancel_all_and_the_timer_limit(skills: Skills) -> None:
    assert say(skills, "cancel all timers").text == "There are no timers."
    for _ in range(20):
        say(skills, "set a timer for 5 minutes")
    assert say(skills, "set a timer for 5 minutes").text == "You already have twenty timers."
    cancelled = say(skills, "cancel all timers")
    assert cancelled.text == "Cancelled all twenty timers."
    assert len(cancelled.events) == 20


def test_timers_are_saved_as_they_change(skills: Skills, tmp_path: Path) -> None:
    say(skills, "set a tea timer for 4 minutes")
    saved = json.loads((tmp_path / "timers.json").read_text())
    assert [t["name"] for t in saved["timers"]] == ["tea"]
    say(skills, "cancel the tea timer")
    assert json.loads((tmp_path / "timers.json").read_text())["timers"] == []


def test_the_shopping_list(skills: Skills, tmp_path: Path) -> None:
    assert say(skills, "What's on my shopping list?").text == "Your shopping list is empty."
    assert say(skills, "Add milk to my shopping list.").text == "Added milk to your shopping list."
    added = say(skills, "add eggs, bread and milk to the shopping list")
    assert added.text == "Added eggs and bread to your shopping list. Milk is already on it."
    assert say(skills, "what's on my shopping list").text == "On your shopping list: milk, eggs and bread."
    assert say(skills, "Remove milk from the shopping list.").text == "Removed milk from your shopping list."
    assert say(skills, "take cheese off the list").text == "Cheese isn't on your shopping list."
    assert json.loads((tmp_path / "list.json").read_text())["items"] == ["eggs", "bread"]
    assert say(skills, "clear my shopping list").text == "Your shopping list is now empty."


def test_undo_takes_back_a_timer_set_and_a_change(skills: Skills, tmp_path: Path, fake_clock: FakeClock) -> None:
    """A turn the speaker went on from ("Set a timer for ten minutes ... for the pasta") leaves no timer behind."""
    started = say(skills, "Set a timer for ten minutes.")
    assert started.undo is not None
    [cancelled] = skills.undo(started.undo)
    assert (cancelled.kind, cancelled.reason, cancelled.timer.id) == (
        TimerEventKind.CANCELLED,
        "cancelled",
        started.events[0].timer.id,
    )
    assert skills.timers.book.timers == []
    assert json.loads((tmp_path / "timers.json").read_text())["timers"] == []
    # A change is put back as it was: paused, then taken back, it runs on to the same end.
    tea = say(skills, "set a tea timer for 4 minutes").events[0].timer
    fake_clock.advance(30)
    paused = say(skills, "pause the tea timer")
    assert paused.undo is not None
    [resumed] = skills.undo(paused.undo)
    assert (resumed.kind, resumed.timer) == (TimerEventKind.UPDATED, tea)
    cancelled_tea = say(skills, "cancel the tea timer")
    assert cancelled_tea.undo is not None
    [back] = skills.undo(cancelled_tea.undo)
    assert (back.kind, back.timer, back.remaining_s) == (TimerEventKind.STARTED, tea, 210)
    assert skills.timers.book.timers == [tea]
    # What only says something, and a ring stopped, have nothing to take back.
    assert say(skills, "What time is it?").undo is None
    fake_clock.advance(300)
    skills.timers.tick()
    assert say(skills, "stop").undo is None


def test_undo_takes_back_shopping_list_changes(skills: Skills, tmp_path: Path) -> None:
    say(skills, "Add milk to my shopping list.")
    added = say(skills, "add eggs, bread and milk to the shopping list")
    assert added.undo is not None
    assert skills.undo(added.undo) == ()
    assert skills.shopping.items.items == ["milk"]
    removed = say(skills, "Remove milk from the shopping list.")
    assert removed.undo is not None
    skills.undo(removed.undo)
    assert json.loads((tmp_path / "list.json").read_text())["items"] == ["milk"]


def test_everything_else_is_for_the_model(skills: Skills) -> None:
    for said in ("what is the capital of France", "tell me a joke", "What time does the bakery open tomorrow?"):
        assert skills.answer(said, "kitchen") is None


def test_open_reads_what_an_earlier_run_kept(config: Config, tmp_path: Path) -> None:
    settings = SkillsConfig(time_zone="Asia/Tokyo", ring_every_s=5, ring_for_s=30)
    configured = dataclasses.replace(config, data_dir=tmp_path, skills=settings)
    first = Skills.open(configured)
    say(first, "set a timer for ten minutes")
    say(first, "add milk to my shopping list")
    assert (tmp_path / "timers.json").is_file()
    assert (tmp_path / "shopping_list.json").is_file()

    second = Skills.open(configured)
    assert [t.duration_s for t in second.timers.book.timers] == [600]
    assert (second.timers.book.ring_every_s, second.timers.book.ring_for_s) == (5, 30)
    assert say(second, "what's on my shopping list").text == "On your shopping list: milk."
    assert second.local_zone == zoneinfo.ZoneInfo("Asia/Tokyo")


def test_sums_and_units_are_skills_a_turn_sees_before_it_acts(skills: Skills) -> None:
    """intent_of (the quick look an early turn takes) knows them too, and answering them changes nothing."""
    assert skills.intent_of("What is 7 times 8?") == "EdgevoiceCalculate"
    assert skills.intent_of("How many ounces are in a pound?") == "EdgevoiceConvertUnits"
    assert skills.intent_of("Set a timer for ten minutes.") == "HassStartTimer"
    assert skills.intent_of("What is the capital of France?") is None
    answer = say(skills, "What's 10% of 200?")
    assert (answer.intent, answer.text, answer.events, answer.undo) == (
        "EdgevoiceCalculate",
        "10 percent of 200 is 20.",
        (),
        None,
    )
