"""One place to ask: does this transcript call for a skill, and what is the answer?

`Skills.answer(transcript, conversation_id)` is the whole interface for a turn: a SkillAnswer to
say (and, with stop set, to stop talking and ringing), or None for the language model. Handlers
are plain methods, no awaits; the timers they change are saved and rung by a TimerService.
"""

from __future__ import annotations

import datetime
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevoice.config import Config
from edgevoice.skills import calculator, clock, units
from edgevoice.skills.clock import Places
from edgevoice.skills.lists import ShoppingListFile, split_items
from edgevoice.skills.matcher import Match, Matcher, normalise
from edgevoice.skills.speech import join_words, number_words, remaining_words
from edgevoice.skills.spoken_numbers import words_of
from edgevoice.skills.timer_service import OnFinished, TimerService
from edgevoice.skills.timers import Timer, TimerBook, TimerError, TimerEvent, TimerState

_log = logging.getLogger(__name__)
_COUNTING = frozenset({TimerState.RUNNING, TimerState.PAUSED})


@dataclass(frozen=True)
class SkillAnswer:
    intent: str
    """The intent matched: "HassStartTimer", "EdgevoiceStop", ..."""
    text: str
    """What to say; empty when there is nothing to say (after "stop")."""
    stop: bool = False
    """Stop talking and any ringing at once, before saying text (if any)."""
    events: tuple[TimerEvent, ...] = ()
    """What happened to timers, for the conversations and screens that show them."""
    match_ms: float = 0.0
    """How long matching the transcript took."""
    undo: Undo | None = None
    """What takes back what it changed (Skills.undo), for a turn the speaker went on from; None: it changed
    nothing that is taken back (stopping a ring is not)."""


@dataclass(frozen=True)
class Undo:
    """An answer's changes, as Skills.undo takes them back."""

    timers: tuple[tuple[str, Timer | None], ...] = ()
    """Each timer it changed, by id, as it was before (None: the answer set it)."""
    added: tuple[str, ...] = ()
    """Items it put on the shopping list."""
    removed: tuple[str, ...] = ()
    """Items it took off the shopping list."""


def worked_out(transcript: str, started: float | None = None) -> SkillAnswer | None:
    """A sum or a question about units, answered exactly; None for anything else. No state: nothing is kept."""
    started = time.perf_counter() if started is None else started
    words = words_of(normalise(transcript))
    for intent, work_out in (("EdgevoiceCalculate", calculator.answer), ("EdgevoiceConvertUnits", units.answer)):
        text = work_out(words)
        if text is not None:
            match_ms = (time.perf_counter() - started) * 1000
            _log.info("skill %s (matched in %.1f ms)", intent, match_ms)
            return SkillAnswer(intent, text, match_ms=match_ms)
    return None


def _no_ringing(conversation_id: str, event: TimerEvent) -> None:
    _log.info("timer %s %s for conversation %s (no listener)", event.timer.id, event.kind.value, conversation_id)


class Skills:
    def __init__(
        self,
        matcher: Matcher,
        places: Places,
        local_zone: datetime.tzinfo | None,
        timers: TimerService,
        shopping: ShoppingListFile,
    ) -> None:
        self.matcher = matcher
        self.places = places
        self.local_zone = local_zone
        self.timers = timers
        self.shopping = shopping
        self._now = timers.clock  # one clock for the time of day and the timers, which tests set by hand
        self._handlers: dict[str, Callable[[Match, str], SkillAnswer]] = {
            "HassGetCurrentTime": self._time,
            "HassGetCurrentDate": self._date,
            "HassStartTimer": self._start_timer,
            "HassCancelTimer": self._cancel_timer,
            "HassCancelAllTimers": self._cancel_all_timers,
            "HassPauseTimer": self._pause_timer,
            "HassUnpauseTimer": self._resume_timer,
            "HassIncreaseTimer": self._adjust_timer,
            "HassDecreaseTimer": self._adjust_timer,
            "HassTimerStatus": self._timer_status,
            "HassNevermind": self._stop,
            "EdgevoiceStop": self._stop,
            "HassShoppingListAddItem": self._add_items,
            "HassListAddItem": self._add_items,
            "HassShoppingListCompleteItem": self._remove_items,
            "HassListRemoveItem": self._remove_items,
            "HassListCompleteItem": self._remove_items,
            "EdgevoiceShoppingListRead": self._read_list,
            "EdgevoiceShoppingListClear": self._clear_list,
        }

    @classmethod
    def open(cls, config: Config, on_finished: OnFinished = _no_ringing) -> Skills:
        """Load the sentences and the saved timers and list (slow: call it off the event loop).

        The caller runs `skills.timers.run()` for timers to ring; on_finished hears each ring.
        """
        settings = config.skills
        timers_path, shopping_path = default_paths(config)
        places = Places.load()
        timers = TimerService(TimerBook(settings.ring_every_s, settings.ring_for_s), timers_path, on_finished)
        timers.load()
        shopping = ShoppingListFile(shopping_path)
        shopping.load()
        return cls(Matcher.load(places), places, clock.local_zone(settings.time_zone), timers, shopping)

    def intent_of(self, transcript: str) -> str | None:
        """The intent transcript asks for, or None for the model: a quick look that changes nothing."""
        match = self.matcher.match(transcript)
        if match is not None:
            return match.intent
        worked = worked_out(transcript)
        return None if worked is None else worked.intent

    def answer(self, transcript: str, conversation_id: str) -> SkillAnswer | None:
        """The skill's answer to transcript, or None when it is not one the skills answer."""
        started = time.perf_counter()
        match = self.matcher.match(transcript)
        match_ms = (time.perf_counter() - started) * 1000
        if match is None:
            return worked_out(transcript, started)
        _log.info("skill %s %s (matched in %.1f ms)", match.intent, match.slots, match_ms)
        timers_before = {timer.id: timer for timer in self._book.timers}
        items_before = self.shopping.items.items
        try:
            answer = self._handlers[match.intent](match, conversation_id)
        except _NotForUs:
            return None
        undo = _undo(answer.events, timers_before, items_before, self.shopping.items.items)
        return SkillAnswer(answer.intent, answer.text, answer.stop, answer.events, match_ms, undo)

    def undo(self, undo: Undo) -> tuple[TimerEvent, ...]:
        """Take back an answer's changes (the speaker went on: the whole sentence is answered anew); saved.

        A timer it set is cancelled, one it changed is put back as it was; items it added are taken
        off the list and items it took off are put back.
        """
        now = self._now()
        events = tuple(
            event
            for timer_id, before in undo.timers
            if (event := self._book.restore(timer_id, before, now)) is not None
        )
        if events:
            self.timers.changed()
        if undo.added or undo.removed:
            self.shopping.items.remove(undo.added)
            self.shopping.items.add(undo.removed)
            self.shopping.save()
        _log.info("took back %s timer changes and %d list changes", len(events), len(undo.added) + len(undo.removed))
        return events

    def stop_ringing(self, conversation_id: str) -> tuple[TimerEvent, ...]:
        """Silence the timers of conversation_id that ring (a client's Stop button), saved; what happened to them."""
        events = tuple(self._book.stop_ringing(self._now(), conversation_id))
        if events:
            self.timers.changed()
        return events

    # The time and the date.

    def _place(self, match: Match) -> clock.Place | None:
        said = match.slots.get("place")
        if said is None:
            return None
        return self.places[str(said)]  # the matcher's place names are the table's own

    def _time(self, match: Match, conversation_id: str) -> SkillAnswer:
        return SkillAnswer(match.intent, clock.time_reply(self._now(), self.local_zone, self._place(match)))

    def _date(self, match: Match, conversation_id: str) -> SkillAnswer:
        return SkillAnswer(match.intent, clock.date_reply(self._now(), self.local_zone, self._place(match)))

    # Timers.

    @property
    def _book(self) -> TimerBook:
        return self.timers.book

    def _start_timer(self, match: Match, conversation_id: str) -> SkillAnswer:
        duration = _duration(match.slots)
        name = str(match.slots.get("name", ""))
        try:
            event = self._book.start(self._now(), conversation_id, duration, name)
        except TimerError:
            return SkillAnswer(match.intent, f"You already have {number_words(len(self._book.timers))} timers.")
        self.timers.changed()
        timer = event.timer
        what = f"{_capital(timer.name)} timer" if timer.name else "Timer"
        return SkillAnswer(match.intent, f"{what} set for {remaining_words(duration)}.", events=(event,))

    def _targets(self, match: Match, states: frozenset[TimerState]) -> list[Timer]:
        """The timers a sentence means: by name or by the time they were set for, else all of them."""
        start = _duration(match.slots, prefix="start_")
        return self._book.find(name=str(match.slots.get("name", "")), duration_s=start or None, states=states)

    def _one_target(
        self, match: Match, conversation_id: str, prefer: frozenset[TimerState] = _COUNTING
    ) -> Timer | SkillAnswer:
        """The one counting timer a command means, or what to say when there is none or several.

        Among several, those in a state the command suits ("pause": a running one), then those this
        conversation set, are the ones meant, where that leaves any.
        """
        found = self._targets(match, _COUNTING)
        for meant in (lambda t: t.state in prefer, lambda t: t.conversation_id == conversation_id):
            narrowed = [timer for timer in found if meant(timer)]
            if len(found) > 1 and narrowed:
                found = narrowed
        if len(found) == 1:
            return found[0]
        if not found:
            wanted = "that timer" if ("name" in match.slots or _duration(match.slots, "start_")) else "a timer"
            return SkillAnswer(match.intent, f"I can't find {wanted}.")
        names = join_words([f"the {timer.label}" for timer in found])
        return SkillAnswer(match.intent, f"There are {number_words(len(found))} timers: {names}. Which one?")

    def _cancel_timer(self, match: Match, conversation_id: str) -> SkillAnswer:
        ringing = self._targets(match, frozenset({TimerState.RINGING}))
        if ringing:  # "stop the timer" while it rings means the ringing
            return self._stop(match, conversation_id)
        target = self._one_target(match, conversation_id)
        if isinstance(target, SkillAnswer):
            return target
        event = self._book.cancel(target.id, self._now())
        self.timers.changed()
        return SkillAnswer(match.intent, f"Cancelled {_the(target)}.", events=(event,))

    def _cancel_all_timers(self, match: Match, conversation_id: str) -> SkillAnswer:
        now = self._now()
        events = tuple(self._book.cancel(timer.id, now) for timer in self._book.timers)
        if not events:
            return SkillAnswer(match.intent, "There are no timers.")
        self.timers.changed()
        count = "the timer" if len(events) == 1 else f"all {number_words(len(events))} timers"
        rang = any(event.reason == "stopped" for event in events)
        return SkillAnswer(match.intent, f"Cancelled {count}.", stop=rang, events=events)

    def _pause_timer(self, match: Match, conversation_id: str) -> SkillAnswer:
        target = self._one_target(match, conversation_id, frozenset({TimerState.RUNNING}))
        if isinstance(target, SkillAnswer):
            return target
        if target.state is TimerState.PAUSED:
            return SkillAnswer(match.intent, f"{_capital(_the(target))} is already paused.")
        event = self._book.pause(target.id, self._now())
        self.timers.changed()
        return SkillAnswer(match.intent, f"Paused {_the(target)}.", events=(event,))

    def _resume_timer(self, match: Match, conversation_id: str) -> SkillAnswer:
        target = self._one_target(match, conversation_id, frozenset({TimerState.PAUSED}))
        if isinstance(target, SkillAnswer):
            return target
        if target.state is TimerState.RUNNING:
            return SkillAnswer(match.intent, f"{_capital(_the(target))} is already running.")
        event = self._book.resume(target.id, self._now())
        self.timers.changed()
        return SkillAnswer(match.intent, f"Resumed {_the(target)}.", events=(event,))

    def _adjust_timer(self, match: Match, conversation_id: str) -> SkillAnswer:
        target = self._one_target(match, conversation_id)
        if isinstance(target, SkillAnswer):
            return target
        delta = _duration(match.slots)
        if match.intent == "HassDecreaseTimer":
            delta = -delta
        event = self._book.adjust(target.id, delta, self._now())
        self.timers.changed()
        done = "Added" if delta > 0 else "Took off"
        if event.remaining_s <= 0:
            return SkillAnswer(match.intent, f"{done} {remaining_words(abs(delta))}: it's done.", events=(event,))
        left = _capital(remaining_words(event.remaining_s))
        return SkillAnswer(match.intent, f"{done} {remaining_words(abs(delta))}. {left} left.", events=(event,))

    def _timer_status(self, match: Match, conversation_id: str) -> SkillAnswer:
        found = self._targets(match, frozenset(TimerState))
        if not found:
            no_timer = "There are no timers." if not self._book.timers else "I can't find that timer."
            return SkillAnswer(match.intent, no_timer)
        now = self._now()
        said = [_status(timer, now) for timer in found]
        if len(found) == 1:
            return SkillAnswer(match.intent, _capital(said[0]) + ".")
        return SkillAnswer(match.intent, f"You have {number_words(len(found))} timers: {join_words(said)}.")

    def _stop(self, match: Match, conversation_id: str) -> SkillAnswer:
        events = tuple(self._book.stop_ringing(self._now()))
        if events:
            self.timers.changed()
        return SkillAnswer(match.intent, "", stop=True, events=events)

    # The shopping list.

    def _items(self, match: Match) -> list[str]:
        said = str(match.slots.get("item", ""))
        return split_items(_as_said(match.text, said))

    def _add_items(self, match: Match, conversation_id: str) -> SkillAnswer:
        items = self._items(match)
        if not items:
            raise _NotForUs
        change = self.shopping.items.add(items)
        if change.done:
            self.shopping.save()
        parts = []
        if change.done:
            parts.append(f"Added {join_words(list(change.done))} to your shopping list.")
        if change.skipped:
            verb = "is" if len(change.skipped) == 1 else "are"
            parts.append(f"{_capital(join_words(list(change.skipped)))} {verb} already on it.")
        if change.full:
            parts.append("Your shopping list is full.")
        return SkillAnswer(match.intent, " ".join(parts))

    def _remove_items(self, match: Match, conversation_id: str) -> SkillAnswer:
        items = self._items(match)
        if not items:
            raise _NotForUs
        change = self.shopping.items.remove(items)
        if change.done:
            self.shopping.save()
        parts = []
        if change.done:
            parts.append(f"Removed {join_words(list(change.done))} from your shopping list.")
        if change.skipped:
            verb = "isn't" if len(change.skipped) == 1 else "aren't"
            parts.append(f"{_capital(join_words(list(change.skipped)))} {verb} on your shopping list.")
        return SkillAnswer(match.intent, " ".join(parts))

    def _read_list(self, match: Match, conversation_id: str) -> SkillAnswer:
        items = self.shopping.items.items
        if not items:
            return SkillAnswer(match.intent, "Your shopping list is empty.")
        return SkillAnswer(match.intent, f"On your shopping list: {join_words(items)}.")

    def _clear_list(self, match: Match, conversation_id: str) -> SkillAnswer:
        count = self.shopping.items.clear()
        if count:
            self.shopping.save()
        return SkillAnswer(match.intent, "Your shopping list is now empty." if count else "It was already empty.")


class _NotForUs(Exception):
    """A handler found, after all, that the model should answer."""


def _duration(slots: dict[str, Any], prefix: str = "") -> float:
    """Seconds from the hours, minutes and seconds slots (with prefix "start_": the timer's set time)."""
    return sum(
        float(slots.get(prefix + unit, 0)) * size for unit, size in (("hours", 3600), ("minutes", 60), ("seconds", 1))
    )


def _undo(
    events: tuple[TimerEvent, ...], timers_before: dict[str, Timer], items_before: list[str], items_after: list[str]
) -> Undo | None:
    """What takes back an answer's changes: its timer events (but a ring stopped stays stopped) and the list's."""
    timer_ids = dict.fromkeys(event.timer.id for event in events if event.reason != "stopped")
    timers = tuple((timer_id, timers_before.get(timer_id)) for timer_id in timer_ids)
    added = tuple(item for item in items_after if item not in items_before)
    removed = tuple(item for item in items_before if item not in items_after)
    return Undo(timers, added, removed) if (timers or added or removed) else None


def _capital(text: str) -> str:
    """The first letter upper case, the rest as it was ("iPad charger" -> "IPad charger", not "Ipad charger")."""
    return text[:1].upper() + text[1:]


def _the(timer: Timer) -> str:
    return f"the {timer.name} timer" if timer.name else "the timer"


def _status(timer: Timer, now: float) -> str:
    what = f"the {timer.name} timer" if timer.name else f"the {timer.label}"
    if timer.state is TimerState.RINGING:
        return f"{what} is done"
    left = remaining_words(timer.remaining_s(now))
    return f"{what} is paused with {left} left" if timer.state is TimerState.PAUSED else f"{what} has {left} left"


def _as_said(text: str, item: str) -> str:
    """The item as it stands in the transcript, commas included (hassil drops them from the slot)."""
    words = item.split()
    if not words:
        return item
    found = re.search(r"[\s,;]+".join(re.escape(word) for word in words), text)
    return found.group(0) if found else item


def default_paths(config: Config) -> tuple[Path, Path]:
    """Where the timers and the shopping list are kept."""
    return (
        config.skills.timers_file or config.data_dir / "timers.json",
        config.skills.shopping_list_file or config.data_dir / "shopping_list.json",
    )
