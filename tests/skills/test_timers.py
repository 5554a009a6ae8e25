"""TimerBook on a clock the test moves: ending, ringing again, stopping, and coming back from a file."""

from __future__ import annotations

import itertools
import json

import pytest

from edgevoice.skills.timers import (
    MAX_TIMERS,
    TimerBook,
    TimerError,
    TimerEventKind,
    TimerState,
    clean_name,
)

T0 = 1_750_075_200.0


def book(ring_every_s: float = 10.0, ring_for_s: float = 60.0) -> TimerBook:
    ids = (f"t{n}" for n in itertools.count(1))
    return TimerBook(ring_every_s, ring_for_s, new_id=lambda: next(ids))


def test_a_timer_rings_when_it_ends_and_not_before() -> None:
    timers = book()
    started = timers.start(T0, "kitchen", 600, "Pasta")
    assert started.kind is TimerEventKind.STARTED
    assert started.timer.name == "pasta"
    assert timers.next_deadline() == T0 + 600
    assert timers.due(T0 + 599.9) == []
    [rang] = timers.due(T0 + 600)
    assert rang.kind is TimerEventKind.FINISHED
    assert rang.ring == 1
    assert rang.timer.conversation_id == "kitchen"
    assert rang.text == "Your ten minute pasta timer is done."
    assert [t.state for t in timers.timers] == [TimerState.RINGING]


def test_a_ringing_timer_rings_again_until_ring_for_s_then_goes() -> None:
    timers = book(ring_every_s=10, ring_for_s=35)
    timers.start(T0, "kitchen", 60)
    rings = []
    for second in range(60, 120):
        for event in timers.due(T0 + second):
            rings.append((second, event.kind, event.ring, event.reason))
    assert rings == [
        (60, TimerEventKind.FINISHED, 1, ""),
        (70, TimerEventKind.FINISHED, 2, ""),
        (80, TimerEventKind.FINISHED, 3, ""),
        (90, TimerEventKind.FINISHED, 4, ""),
        (95, TimerEventKind.CANCELLED, 0, "expired"),
    ]
    assert timers.timers == []
    assert timers.next_deadline() is None


def test_stop_silences_every_ringing_timer_and_leaves_the_others() -> None:
    timers = book()
    timers.start(T0, "kitchen", 60, "eggs")
    timers.start(T0, "phone", 120, "rice")
    timers.start(T0, "kitchen", 600, "roast")
    timers.due(T0 + 130)
    stopped = timers.stop_ringing(T0 + 131)
    assert sorted(e.timer.name for e in stopped) == ["eggs", "rice"]
    assert {e.kind for e in stopped} == {TimerEventKind.CANCELLED}
    assert {e.reason for e in stopped} == {"stopped"}
    assert [t.name for t in timers.timers] == ["roast"]
    assert timers.due(T0 + 200) == []  # no more rings from the stopped ones


def test_a_conversations_stop_silences_only_its_own_ringing_timers() -> None:
    timers = book()
    timers.start(T0, "kitchen", 60, "eggs")
    timers.start(T0, "phone", 60, "rice")
    timers.due(T0 + 60)
    [stopped] = timers.stop_ringing(T0 + 61, "kitchen")
    assert (stopped.timer.name, stopped.reason) == ("eggs", "stopped")
    assert [(t.name, t.state) for t in timers.timers] == [("rice", TimerState.RINGING)]


def test_pause_resume_and_adjust() -> None:
    timers = book()
    timers.start(T0, "kitchen", 600)
    paused = timers.pause("t1", T0 + 100)
    assert paused.timer.state is TimerState.PAUSED
    assert paused.remaining_s == 500
    assert timers.next_deadline() is None
    assert timers.due(T0 + 10_000) == []  # a paused timer never ends
    resumed = timers.resume("t1", T0 + 10_000)
    assert resumed.remaining_s == 500
    assert timers.next_deadline() == T0 + 10_500
    added = timers.adjust("t1", 120, T0 + 10_000)
    assert added.kind is TimerEventKind.UPDATED
    assert added.remaining_s == 620
    assert [t.duration_s for t in timers.timers] == [600]  # still "the ten minute timer"
    taken = timers.adjust("t1", -1000, T0 + 10_000)
    assert taken.remaining_s == 0
    [rang] = timers.due(T0 + 10_000)
    assert rang.kind is TimerEventKind.FINISHED


def test_cancel_and_mistakes() -> None:
    timers = book()
    timers.start(T0, "kitchen", 300)
    cancelled = timers.cancel("t1", T0 + 60)
    assert cancelled.kind is TimerEventKind.CANCELLED
    assert cancelled.reason == "cancelled"
    assert cancelled.remaining_s == 240
    with pytest.raises(TimerError):
        timers.cancel("t1", T0)
    with pytest.raises(TimerError):
        timers.pause("nope", T0)
    with pytest.raises(TimerError):
        timers.start(T0, "kitchen", 0)


def test_a_ringing_timer_can_only_be_stopped() -> None:
    timers = book()
    timers.start(T0, "kitchen", 60)
    timers.due(T0 + 60)
    with pytest.raises(TimerError):
        timers.pause("t1", T0 + 61)
    with pytest.raises(TimerError):
        timers.adjust("t1", 60, T0 + 61)


def test_at_most_max_timers() -> None:
    timers = book()
    for _ in range(MAX_TIMERS):
        timers.start(T0, "kitchen", 60)
    with pytest.raises(TimerError):
        timers.start(T0, "kitchen", 60)


def test_find_by_name_time_and_state() -> None:
    timers = book()
    timers.start(T0, "kitchen", 600, "pasta")
    timers.start(T0, "kitchen", 300)
    timers.start(T0, "kitchen", 300, "the Eggs timer")
    assert [t.id for t in timers.find(name="Pasta")] == ["t1"]
    assert [t.id for t in timers.find(name="eggs")] == ["t3"]
    assert [t.id for t in timers.find(duration_s=300)] == ["t2", "t3"]
    timers.pause("t2", T0)
    assert [t.id for t in timers.find(states=frozenset({TimerState.PAUSED}))] == ["t2"]
    assert clean_name("My Pasta Timer") == "pasta"


def test_survives_a_json_round_trip() -> None:
    timers = book()
    timers.start(T0, "kitchen", 600, "pasta")
    timers.start(T0, "phone", 300)
    timers.pause("t2", T0 + 100)
    timers.start(T0, "kitchen", 30)
    timers.due(T0 + 30)
    saved = json.loads(json.dumps(timers.to_json()))
    again = TimerBook.from_json(saved, 10.0, 60.0)
    assert again.timers == timers.timers
    assert again.next_deadline() == timers.next_deadline()
    assert again.due(T0 + 40) == timers.due(T0 + 40)


def test_a_timer_that_ended_while_down_is_announced_with_when() -> None:
    timers = book(ring_every_s=10, ring_for_s=60)
    timers.start(T0, "kitchen", 600, "pasta")
    saved = json.loads(json.dumps(timers.to_json()))
    # The daemon was off from T0 + 60 until five minutes after the timer's end.
    restarted = TimerBook.from_json(saved, 10.0, 60.0)
    [late] = restarted.due(T0 + 900)
    assert late.kind is TimerEventKind.FINISHED
    assert late.late_s == 300
    assert late.text == "Your ten minute pasta timer finished five minutes ago."
    # It then rings as any other, from when it was announced.
    assert [e.ring for e in restarted.due(T0 + 910)] == [2]


def test_rings_missed_while_stopped_are_skipped() -> None:
    timers = book(ring_every_s=10, ring_for_s=300)
    timers.start(T0, "kitchen", 60)
    timers.due(T0 + 60)
    events = timers.due(T0 + 60 + 95)  # the process was stopped for 95 s
    assert [e.ring for e in events] == [10]
    assert timers.due(T0 + 60 + 96) == []


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"version": 2, "timers": []},
        {"version": 1},
        {"version": 1, "timers": [{"id": "x"}]},
        {"version": 1, "timers": ["x"]},
        {"version": 1, "timers": [{"id": "x", "conversation": "c", "name": "", "duration_s": 60, "state": "odd",
                                   "ends_at": 0, "left_s": 0, "rang_at": 0, "rings": 0}]},
        {"version": 1, "timers": [{"id": "x", "conversation": "c", "name": "", "duration_s": "60", "state": "running",
                                   "ends_at": 0, "left_s": 0, "rang_at": 0, "rings": 0}]},
    ],
)  # fmt: skip
def test_a_damaged_file_is_refused(data: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # from_json raises nothing else
        TimerBook.from_json(data)  # type: ignore[arg-type]


def test_event_json_shape() -> None:
    timers = book()
    started = timers.start(T0, "kitchen", 600, "pasta")
    assert started.to_json() == {
        "type": "timer",
        "event": "started",
        "id": "t1",
        "conversation": "kitchen",
        "name": "pasta",
        "duration_s": 600,
        "remaining_s": 600,
        "state": "running",
        "ends_at": T0 + 600,
        "ring": 0,
        "reason": "",
        "text": "",
    }
    [rang] = timers.due(T0 + 600)
    wire = rang.to_json()
    assert (wire["event"], wire["state"], wire["ends_at"], wire["ring"]) == ("finished", "ringing", 0, 1)
    assert wire["text"] == "Your ten minute pasta timer is done."
