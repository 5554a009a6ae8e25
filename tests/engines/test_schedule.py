"""The engine scheduler as plain logic: who goes first, what a full queue does, when a job yields."""

from __future__ import annotations

from edgevoice.engines.schedule import Claim, Rank, Scheduler


def _order(scheduler: Scheduler[str]) -> list[str]:
    out = []
    while (picked := scheduler.pop()) is not None:
        out.append(picked[0])
    return out


def test_confirmed_before_speculative_before_background() -> None:
    scheduler: Scheduler[str] = Scheduler(8)
    scheduler.add("partial", Claim(1.0, Rank.BACKGROUND))
    scheduler.add("early", Claim(2.0, Rank.SPECULATIVE))
    scheduler.add("turn", Claim(3.0))
    assert _order(scheduler) == ["turn", "early", "partial"]


def test_oldest_turn_first_then_arrival() -> None:
    scheduler: Scheduler[str] = Scheduler(8)
    scheduler.add("young", Claim(5.0))
    scheduler.add("old-a", Claim(1.0))
    scheduler.add("old-b", Claim(1.0))
    assert _order(scheduler) == ["old-a", "old-b", "young"]


def test_first_words_go_before_a_long_reply_that_is_playing() -> None:
    scheduler: Scheduler[str] = Scheduler(8)
    playing = Claim(1.0, first_words_out=True)
    scheduler.add("reply piece 3", playing)
    scheduler.add("other room's first words", Claim(2.0))
    assert _order(scheduler) == ["other room's first words", "reply piece 3"]


def test_claim_is_read_when_picking_a_confirmed_turn_moves_up() -> None:
    scheduler: Scheduler[str] = Scheduler(8)
    early = Claim(1.0, Rank.SPECULATIVE)
    scheduler.add("early", early)
    scheduler.add("turn", Claim(2.0))
    early.rank = Rank.CONFIRMED  # the pause was the end
    assert _order(scheduler) == ["early", "turn"]


def test_full_queue_refuses_or_pushes_out_background_work() -> None:
    scheduler: Scheduler[str] = Scheduler(2)
    assert scheduler.add("prepare", Claim(1.0, Rank.BACKGROUND)).queued
    assert scheduler.add("turn-1", Claim(2.0)).queued
    added = scheduler.add("turn-2", Claim(3.0))
    assert added.queued
    assert added.dropped == "prepare"
    refused = scheduler.add("turn-3", Claim(4.0))
    assert not refused.queued
    assert refused.dropped is None
    assert not scheduler.add("partial", Claim(5.0, Rank.BACKGROUND)).queued
    assert len(scheduler) == 2


def test_remove_and_drain() -> None:
    scheduler: Scheduler[str] = Scheduler(4)
    scheduler.add("a", Claim(2.0))
    scheduler.add("b", Claim(1.0))
    assert scheduler.remove("a")
    assert not scheduler.remove("a")
    scheduler.add("c", Claim(3.0))
    assert scheduler.drain() == ["b", "c"]
    assert scheduler.pop() is None


def test_ahead_of_counts_who_goes_first() -> None:
    scheduler: Scheduler[str] = Scheduler(8)
    scheduler.add("old", Claim(1.0))
    scheduler.add("bg", Claim(0.5, Rank.BACKGROUND))
    scheduler.add("young", Claim(9.0))
    assert scheduler.ahead_of(Claim(5.0)) == 1
    assert scheduler.ahead_of(Claim(5.0, Rank.BACKGROUND)) == 3


def test_should_yield() -> None:
    scheduler: Scheduler[str] = Scheduler(8)
    first_words = Claim(1.0)
    playing = Claim(0.5, first_words_out=True)
    assert not scheduler.should_yield(Claim(0.0, Rank.SPECULATIVE))
    scheduler.add("another partial", Claim(0.1, Rank.BACKGROUND))
    assert not scheduler.should_yield(Claim(0.0, Rank.BACKGROUND))  # background gives way to turns only
    scheduler.add("speculative", Claim(0.2, Rank.SPECULATIVE))
    assert not scheduler.should_yield(playing)  # only a confirmed turn makes a turn's job give way
    assert scheduler.should_yield(Claim(0.0, Rank.BACKGROUND))  # background work gives way to any turn
    assert not scheduler.should_yield(Claim(0.0, Rank.SPECULATIVE))
    scheduler.add("turn", first_words)
    assert scheduler.should_yield(Claim(0.0, Rank.SPECULATIVE))
    assert scheduler.should_yield(Claim(0.0, Rank.BACKGROUND))
    assert scheduler.should_yield(playing)
    assert not scheduler.should_yield(Claim(0.1))  # another turn before its first words: it goes on
