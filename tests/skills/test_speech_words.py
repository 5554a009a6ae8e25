"""Spoken forms: what Piper is given to say for numbers, times, dates and durations."""

from __future__ import annotations

import datetime

import pytest

from edgevoice.skills.speech import (
    clock_words,
    date_words,
    duration_adjective,
    duration_words,
    join_words,
    number_words,
    ordinal_words,
    remaining_words,
    year_words,
)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (15, "fifteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (305, "three hundred five"),
        (1000, "one thousand"),
        (1_234_567, "one million two hundred thirty-four thousand five hundred sixty-seven"),
    ],
)
def test_number_words(n: int, words: str) -> None:
    assert number_words(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (12, "twelfth"), (20, "twentieth"), (21, "twenty-first"),
     (22, "twenty-second"), (30, "thirtieth"), (31, "thirty-first")],
)  # fmt: skip
def test_ordinal_words(n: int, words: str) -> None:
    assert ordinal_words(n) == words


@pytest.mark.parametrize(
    ("year", "words"),
    [(2025, "twenty twenty-five"), (2005, "two thousand five"), (2010, "twenty ten"), (1999, "nineteen ninety-nine"),
     (1905, "nineteen oh five"), (1900, "nineteen hundred")],
)  # fmt: skip
def test_year_words(year: int, words: str) -> None:
    assert year_words(year) == words


@pytest.mark.parametrize(
    ("hour", "minute", "words"),
    [
        (0, 0, "midnight"),
        (12, 0, "noon"),
        (15, 10, "three ten in the afternoon"),
        (15, 5, "three oh five in the afternoon"),
        (7, 0, "seven o'clock in the morning"),
        (19, 45, "seven forty-five in the evening"),
        (23, 30, "eleven thirty at night"),
        (0, 15, "twelve fifteen at night"),
        (12, 30, "twelve thirty in the afternoon"),
    ],
)
def test_clock_words(hour: int, minute: int, words: str) -> None:
    assert clock_words(hour, minute) == words


def test_date_words() -> None:
    assert date_words(datetime.date(2025, 6, 3)) == "Tuesday, June third, twenty twenty-five"
    assert date_words(datetime.date(2025, 6, 3), with_year=False) == "Tuesday, June third"


@pytest.mark.parametrize(
    ("seconds", "words", "adjective"),
    [
        (600, "ten minutes", "ten minute"),
        (60, "one minute", "one minute"),
        (90, "one minute and thirty seconds", "one minute thirty second"),
        (3900, "one hour and five minutes", "one hour five minute"),
        (3661, "one hour, one minute and one second", "one hour one minute one second"),
        (30, "thirty seconds", "thirty second"),
    ],
)
def test_durations(seconds: float, words: str, adjective: str) -> None:
    assert duration_words(seconds) == words
    assert duration_adjective(seconds) == adjective


def test_time_left_is_as_precise_as_useful() -> None:
    assert remaining_words(437.4) == "seven minutes and seventeen seconds"
    assert remaining_words(1234) == "twenty-one minutes"  # 20:34, to the minute beyond ten minutes
    assert remaining_words(-3) == "zero seconds"


def test_join_words() -> None:
    assert join_words([]) == ""
    assert join_words(["milk"]) == "milk"
    assert join_words(["milk", "eggs"]) == "milk and eggs"
    assert join_words(["milk", "eggs", "bread"]) == "milk, eggs and bread"
