"""Kitchen timers without I/O: a TimerBook changed by commands and asked what is due at a given time.

Every method takes the time as wall-clock seconds (time.time()) from its caller: a timer saved to
disk then still ends at the right moment after a restart, and tests move the clock by hand. A
timer that ends rings at once, then again every ring_every_s, until someone stops it or ring_for_s
has passed since its first ring. The asyncio driver is TimerService (timer_service.py).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from edgevoice import protocol
from edgevoice.skills.speech import duration_adjective, duration_words

MAX_TIMERS = 20
"""Timers kept at once; one more is refused (a runaway client cannot grow the file without end)."""
MAX_NAME_CHARS = 40
LATE_NOTICE_S = 60.0
"""A timer that rings this much after its end (the box was off) says when it ended."""
FORMAT_VERSION = 1


class TimerError(ValueError):
    """A command the book cannot carry out: no such timer, or too many timers."""


class TimerState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    RINGING = "ringing"


class TimerEventKind(StrEnum):
    STARTED = "started"
    UPDATED = "updated"
    """Paused, resumed, or time added or taken away."""
    FINISHED = "finished"
    """It rang: its first ring, or one of the rings that follow until it is stopped."""
    CANCELLED = "cancelled"
    """It is gone: see TimerEvent.reason."""


@dataclass(frozen=True)
class Timer:
    id: str
    conversation_id: str
    """The conversation that set it: it hears the timer ring."""
    name: str
    """"pasta", or "" for a timer set without a name."""
    duration_s: float
    """As set; time added later does not change it, since people name a timer by it ("the ten minute timer")."""
    state: TimerState
    ends_at: float = 0.0
    """While running: when it ends (wall clock)."""
    left_s: float = 0.0
    """While paused: the time it had left."""
    rang_at: float = 0.0
    """While ringing: when it first rang."""
    rings: int = 0
    """While ringing: how many times it has rung."""

    def remaining_s(self, now: float) -> float:
        if self.state is TimerState.RUNNING:
            return max(0.0, self.ends_at - now)
        return self.left_s if self.state is TimerState.PAUSED else 0.0

    @property
    def label(self) -> str:
        """How it is spoken of: "ten minute pasta timer"."""
        named = f"{self.name} " if self.name else ""
        return f"{duration_adjective(self.duration_s)} {named}timer"


@dataclass(frozen=True)
class TimerEvent:
    """Something that happened to a timer, for the conversations and screens that show it."""

    kind: TimerEventKind
    timer: Timer
    remaining_s: float
    ring: int = 0
    """FINISHED: 1 for the first ring, then 2, 3, ..."""
    late_s: float = 0.0
    """FINISHED: how long after its end it first rang (more than a moment when the box was off)."""
    reason: str = ""
    """CANCELLED: "cancelled" (someone cancelled it), "stopped" (its ringing was stopped) or
    "expired" (it rang for ring_for_s and nobody stopped it)."""
    text: str = ""
    """FINISHED: the line to say with the chime."""

    def message(self) -> protocol.Timer:
        """The `timer` message a client receives (docs/protocol.md, Timers)."""
        timer = self.timer
        return protocol.Timer(
            self.kind.value,
            timer.id,
            timer.conversation_id,
            timer.name,
            timer.duration_s,
            round(self.remaining_s, 3),
            timer.state.value,
            timer.ends_at if timer.state is TimerState.RUNNING else 0.0,
            self.ring,
            self.reason,
            self.text,
        )

    def to_json(self) -> dict[str, Any]:
        return self.message().to_json()


def clean_name(said: str) -> str:
    """A timer's name as kept and compared: "The Pasta" -> "pasta"."""
    words = said.casefold().split()
    while words and words[0] in ("the", "a", "an", "my", "our"):
        words = words[1:]
    if words and words[-1] == "timer":
        words = words[:-1]
    return " ".join(words)[:MAX_NAME_CHARS]


def _new_id() -> str:
    return uuid.uuid4().hex[:8]


class TimerBook:
    def __init__(
        self, ring_every_s: float = 10.0, ring_for_s: float = 120.0, new_id: Callable[[], str] = _new_id
    ) -> None:
        if not ring_every_s > 0 or not ring_for_s >= 0:
            raise ValueError("ring_every_s must be more than 0 and ring_for_s not negative")
        self.ring_every_s = ring_every_s
        self.ring_for_s = ring_for_s
        self._new_id = new_id
        self._timers: dict[str, Timer] = {}

    @property
    def timers(self) -> list[Timer]:
        """Every timer, oldest first."""
        return list(self._timers.values())

    def find(
        self, *, name: str = "", duration_s: float | None = None, states: frozenset[TimerState] | None = None
    ) -> list[Timer]:
        """The timers with that name (as clean_name keeps it), set for that long, in one of those states."""
        wanted = clean_name(name)
        return [
            timer
            for timer in self._timers.values()
            if (not wanted or timer.name == wanted)
            and (duration_s is None or math.isclose(timer.duration_s, duration_s))
            and (states is None or timer.state in states)
        ]

    def start(self, now: float, conversation_id: str, duration_s: float, name: str = "") -> TimerEvent:
        if len(self._timers) >= MAX_TIMERS:
            raise TimerError(f"at most {MAX_TIMERS} timers")
        if not duration_s > 0:
            raise TimerError("a timer needs a time to run")
        timer = Timer(
            self._new_id(), conversation_id, clean_name(name), duration_s, TimerState.RUNNING, ends_at=now + duration_s
        )
        self._timers[timer.id] = timer
        return TimerEvent(TimerEventKind.STARTED, timer, duration_s)

    def cancel(self, timer_id: str, now: float) -> TimerEvent:
        timer = self._take(timer_id)
        reason = "stopped" if timer.state is TimerState.RINGING else "cancelled"
        return TimerEvent(TimerEventKind.CANCELLED, timer, timer.remaining_s(now), reason=reason)

    def pause(self, timer_id: str, now: float) -> TimerEvent:
        timer = self._running(timer_id)
        if timer.state is TimerState.RUNNING:
            timer = self._put(replace(timer, state=TimerState.PAUSED, left_s=timer.remaining_s(now), ends_at=0.0))
        return TimerEvent(TimerEventKind.UPDATED, timer, timer.remaining_s(now))

    def resume(self, timer_id: str, now: float) -> TimerEvent:
        timer = self._running(timer_id)
        if timer.state is TimerState.PAUSED:
            timer = self._put(replace(timer, state=TimerState.RUNNING, ends_at=now + timer.left_s, left_s=0.0))
        return TimerEvent(TimerEventKind.UPDATED, timer, timer.remaining_s(now))

    def adjust(self, timer_id: str, delta_s: float, now: float) -> TimerEvent:
        """Add time (delta_s > 0) or take it away; a timer left with none ends now and rings at the next due()."""
        timer = self._running(timer_id)
        left = max(0.0, timer.remaining_s(now) + delta_s)
        if timer.state is TimerState.PAUSED and left > 0:
            timer = self._put(replace(timer, left_s=left))
        else:
            timer = self._put(replace(timer, state=TimerState.RUNNING, ends_at=now + left, left_s=0.0))
        return TimerEvent(TimerEventKind.UPDATED, timer, left)

    def stop_ringing(self, now: float, conversation_id: str | None = None) -> list[TimerEvent]:
        """Silence every ringing timer (anyone in the room may say "stop"), or those conversation_id set;
        each is then gone."""
        ringing = [
            t.id
            for t in self._timers.values()
            if t.state is TimerState.RINGING and conversation_id in (None, t.conversation_id)
        ]
        return [self.cancel(timer_id, now) for timer_id in ringing]

    def restore(self, timer_id: str, before: Timer | None, now: float) -> TimerEvent | None:
        """Put a timer back as it was before a command (before None: take away the timer the command set).

        None when there is nothing to do: it is already gone, or the book is full again.
        """
        current = self._timers.get(timer_id)
        if before is None:
            return None if current is None else self.cancel(timer_id, now)
        if current is None and len(self._timers) >= MAX_TIMERS:
            return None
        self._timers[timer_id] = before
        kind = TimerEventKind.STARTED if current is None else TimerEventKind.UPDATED
        return TimerEvent(kind, before, before.remaining_s(now))

    def due(self, now: float) -> list[TimerEvent]:
        """What happens by now: timers that end ring, ringing ones ring again or, past ring_for_s, go."""
        events: list[TimerEvent] = []
        for timer in list(self._timers.values()):
            if timer.state is TimerState.RUNNING and timer.ends_at <= now:
                late = now - timer.ends_at
                rung = self._put(replace(timer, state=TimerState.RINGING, rang_at=now, rings=1, ends_at=0.0))
                events.append(TimerEvent(TimerEventKind.FINISHED, rung, 0.0, 1, late, text=_done_line(rung, late)))
            elif timer.state is TimerState.RINGING:
                if now - timer.rang_at >= self.ring_for_s:
                    del self._timers[timer.id]
                    events.append(TimerEvent(TimerEventKind.CANCELLED, timer, 0.0, reason="expired"))
                elif now >= self._next_ring(timer):
                    # Rings missed while the process was stopped are skipped, not played in a burst.
                    rings = int((now - timer.rang_at) // self.ring_every_s) + 1
                    rung = self._put(replace(timer, rings=rings))
                    events.append(TimerEvent(TimerEventKind.FINISHED, rung, 0.0, rings, text=_done_line(rung, 0.0)))
        return events

    def next_deadline(self) -> float | None:
        """When due() next has something to do (wall clock), or None while nothing runs or rings."""
        deadlines = [
            timer.ends_at
            if timer.state is TimerState.RUNNING
            else min(self._next_ring(timer), timer.rang_at + self.ring_for_s)
            for timer in self._timers.values()
            if timer.state is not TimerState.PAUSED
        ]
        return min(deadlines, default=None)

    def _next_ring(self, timer: Timer) -> float:
        return timer.rang_at + timer.rings * self.ring_every_s

    def _running(self, timer_id: str) -> Timer:
        """A timer that is counting down or paused (a ringing one can only be stopped)."""
        timer = self._timers.get(timer_id)
        if timer is None or timer.state is TimerState.RINGING:
            raise TimerError(f"no timer {timer_id} counting down")
        return timer

    def _take(self, timer_id: str) -> Timer:
        timer = self._timers.pop(timer_id, None)
        if timer is None:
            raise TimerError(f"no timer {timer_id}")
        return timer

    def _put(self, timer: Timer) -> Timer:
        self._timers[timer.id] = timer
        return timer

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "timers": [
                {
                    "id": t.id,
                    "conversation": t.conversation_id,
                    "name": t.name,
                    "duration_s": t.duration_s,
                    "state": t.state.value,
                    "ends_at": t.ends_at,
                    "left_s": t.left_s,
                    "rang_at": t.rang_at,
                    "rings": t.rings,
                }
                for t in self._timers.values()
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], ring_every_s: float = 10.0, ring_for_s: float = 120.0) -> TimerBook:
        """The book to_json saved; ValueError when data is not one (a damaged or foreign file)."""
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            raise ValueError("not a timers file of this version")
        records = data.get("timers")
        if not isinstance(records, list):
            raise ValueError("timers must be a list")
        book = cls(ring_every_s, ring_for_s)
        for record in records[:MAX_TIMERS]:
            timer = _timer_from(record)
            book._timers[timer.id] = timer
        return book


def _timer_from(record: object) -> Timer:
    if not isinstance(record, Mapping):
        raise ValueError("a timer must be an object")
    try:
        state = TimerState(record["state"])
        texts = [record[key] for key in ("id", "conversation", "name")]
        numbers = [record[key] for key in ("duration_s", "ends_at", "left_s", "rang_at")]
        rings = record["rings"]
    except (KeyError, ValueError) as err:
        raise ValueError(f"bad timer record: {err}") from None
    if not all(isinstance(t, str) for t in texts) or not texts[0]:
        raise ValueError("a timer's id, conversation and name are strings")
    if not all(isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) for n in numbers):
        raise ValueError("a timer's times are numbers")
    if not isinstance(rings, int) or isinstance(rings, bool) or rings < 0:
        raise ValueError("a timer's rings is a count")
    duration, ends_at, left, rang_at = (float(n) for n in numbers)
    return Timer(texts[0], texts[1], texts[2][:MAX_NAME_CHARS], duration, state, ends_at, left, rang_at, rings)


def _done_line(timer: Timer, late_s: float) -> str:
    label = timer.label
    if late_s >= LATE_NOTICE_S:
        return f"Your {label} finished {duration_words(round(late_s / 60) * 60)} ago."
    return f"Your {label} is done."
