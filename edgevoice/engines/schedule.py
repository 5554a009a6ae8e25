"""Which waiting job an engine runs next, sans-I/O: several conversations share one engine thread.

Every job carries a Claim, the standing of the turn it is for, read afresh each time the engine
picks (a turn started early is confirmed while its jobs wait). The order, first to last:

1. rank: a confirmed turn's work, then speculative work (a turn started early, on a pause that
   may not be its end), then background work (a partial transcript to show, a prompt read ahead);
2. first words: work for a turn whose reply has not been heard yet goes before the later pieces of
   a reply already playing, so a long reply yields between pieces to another room's first words;
3. age: the turn whose speech ended first;
4. arrival, among equals.

The queue is bounded. When it is full a job is refused, unless a background job waits that it
outranks: then that one is dropped (its work is optional) and the new one takes its place.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

J = TypeVar("J")


class Rank(enum.IntEnum):
    """How much a job's turn counts; lower goes first."""

    CONFIRMED = 0
    """The user's turn has ended: someone waits for this answer."""
    SPECULATIVE = 1
    """Started on a pause that may not be the end of the turn."""
    BACKGROUND = 2
    """Nobody waits for it: a partial transcript, a prompt read ahead. It may be dropped or stopped."""


@dataclass
class Claim:
    """The standing of the turn a job is for. Mutable: the session confirms a turn and marks its
    first words heard while its jobs wait; the engine reads it when it picks the next job."""

    since: float
    """When the turn's work began (time.monotonic()): of two turns, the older goes first."""
    rank: Rank = Rank.CONFIRMED
    """Confirmed, speculative or background."""
    first_words_out: bool = False
    """The turn's first reply audio is out: its later work yields to others' first words."""

    def key(self) -> tuple[int, int, float]:
        """Sort key: lower goes first."""
        return (int(self.rank), int(self.first_words_out), self.since)


@dataclass
class _Entry(Generic[J]):
    job: J
    claim: Claim
    seq: int

    def key(self) -> tuple[int, int, float, int]:
        return (*self.claim.key(), self.seq)


@dataclass(frozen=True)
class Added(Generic[J]):
    """What add() did: whether the job is queued, and a background job it pushed out, if any."""

    queued: bool
    dropped: J | None = None


@dataclass
class Scheduler(Generic[J]):
    """A bounded set of waiting jobs, handed out best claim first. Not thread-safe: the worker locks."""

    max_waiting: int
    _waiting: list[_Entry[J]] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, job: J, claim: Claim) -> Added[J]:
        """Queue job; when the queue is full, push out the worst background job it outranks, or refuse."""
        entry = _Entry(job, claim, next(self._seq))
        if len(self._waiting) < self.max_waiting:
            self._waiting.append(entry)
            return Added(True)
        optional = [e for e in self._waiting if e.claim.rank == Rank.BACKGROUND and e.key() > entry.key()]
        if not optional:
            return Added(False)
        worst = max(optional, key=_Entry.key)
        self._waiting.remove(worst)
        self._waiting.append(entry)
        return Added(True, worst.job)

    def pop(self) -> tuple[J, Claim] | None:
        """The job to run now (best claim, then first come), taken off the queue; None when none waits."""
        if not self._waiting:
            return None
        best = min(self._waiting, key=_Entry.key)
        self._waiting.remove(best)
        return best.job, best.claim

    def remove(self, job: J) -> bool:
        """Take job off the queue (its caller gave up); False if it is not waiting."""
        for entry in self._waiting:
            if entry.job is job:
                self._waiting.remove(entry)
                return True
        return False

    def drain(self) -> list[J]:
        """Every waiting job, taken off the queue (the engine closes)."""
        jobs = [entry.job for entry in sorted(self._waiting, key=_Entry.key)]
        self._waiting.clear()
        return jobs

    def has_turns_waiting(self) -> bool:
        """Whether any waiting job is for a turn (confirmed or speculative), not background work."""
        return any(entry.claim.rank != Rank.BACKGROUND for entry in self._waiting)

    def ahead_of(self, claim: Claim) -> int:
        """How many waiting jobs would run before a new job with this claim."""
        key = claim.key()
        return sum(1 for entry in self._waiting if entry.claim.key() <= key)

    def should_yield(self, running: Claim) -> bool:
        """Whether the running job should give way at its next break: it is background work and a
        turn waits, or a confirmed turn waits and the running job is speculative, or the running
        job's turn is heard already and a confirmed turn waits for its first words."""
        for entry in self._waiting:
            waiting = entry.claim
            if running.rank == Rank.BACKGROUND and waiting.rank != Rank.BACKGROUND:
                return True
            if waiting.rank != Rank.CONFIRMED:
                continue
            if running.rank != Rank.CONFIRMED:
                return True
            if running.first_words_out and not waiting.first_words_out:
                return True
        return False
