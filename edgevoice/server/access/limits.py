"""How fast a client may send: a token bucket per connection, sans-I/O, with an injectable clock."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class Verdict(enum.Enum):
    ALLOW = "allow"
    DROP = "drop"
    """Over the rate: drop this frame; the first drop of a spell is the one to report."""
    CLOSE = "close"
    """Over the rate for too long, or by too much: the client is flooding, not bursting."""


class FrameRate:
    """A token bucket of `burst_s` seconds' worth of frames, refilled at `per_second`.

    A spell over the limit starts at the first dropped frame and ends once a whole second passes
    without a drop. A spell longer than `sustain_s`, or one that drops more than `sustain_s`
    seconds' worth of frames, is a flood: CLOSE.
    """

    def __init__(
        self,
        per_second: float,
        burst_s: float = 2.0,
        sustain_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.capacity = per_second * burst_s
        self.sustain_s = sustain_s
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()
        self._spell_start: float | None = None
        self._last_drop = 0.0
        self._spell_drops = 0
        self.dropped = 0

    def feed(self) -> Verdict:
        """One frame arrived now: may it go on?"""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._spell_start is not None and now - self._last_drop > 1.0:
            self._spell_start = None
            self._spell_drops = 0
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict.ALLOW
        self.dropped += 1
        self._last_drop = now
        if self._spell_start is None:
            self._spell_start = now
            self._spell_drops = 1
            return Verdict.DROP
        self._spell_drops += 1
        if now - self._spell_start > self.sustain_s or self._spell_drops > self.per_second * self.sustain_s:
            return Verdict.CLOSE
        return Verdict.DROP

    @property
    def spell_started(self) -> bool:
        """Whether the last DROP began a spell (the one drop worth telling the client about)."""
        return self._spell_drops == 1
