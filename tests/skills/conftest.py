"""The skills' own fixtures: the sentence matcher, loaded once, and a clock the test sets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgevoice.skills.clock import Places
from edgevoice.skills.matcher import Matcher

NOON_UTC = 1_750_075_200.0
"""2025-06-16 12:00:00 UTC, a Monday."""


@dataclass
class FakeClock:
    now: float = NOON_UTC

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def places() -> Places:
    return Places.load()


@pytest.fixture(scope="session")
def matcher(places: Places) -> Matcher:
    return Matcher.load(places)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
