"""Sums and units worked out from what whisper writes: exact answers, and None for what is not one."""

from __future__ import annotations

import pytest

from edgevoice.skills import calculator, units
from edgevoice.skills.matcher import normalise
from edgevoice.skills.spoken_numbers import read_number, say_number, words_of


def heard(transcript: str) -> list[str]:
    """A transcript's words as the skills get them (skills.router.worked_out)."""
    return words_of(normalise(transcript))


@pytest.mark.parametrize(
    ("said", "value"),
    [
        ("fifty six", 56),
        ("fifty-six", 56),
        ("a hundred and five", 105),
        ("two thousand three hundred and forty five", 2345),
        ("three point one four", 3.14),
        ("a dozen", 12),
        ("two and a half", 2.5),
        ("1,250", 1250),
        ("-3.5", -3.5),
        ("minus four", -4),
        ("zero", 0),
        ("one million", 1_000_000),
    ],
)
def test_numbers_are_read_as_said_or_written(said: str, value: float) -> None:
    words = words_of(said)
    number = read_number(words, 0)
    assert number is not None
    assert number.value == pytest.approx(value)
    assert number.end == len(words)


def test_two_numbers_in_a_row_are_two() -> None:
    number = read_number(words_of("five six"), 0)
    assert number is not None
    assert (number.value, number.end) == (5, 1)
    assert read_number(words_of("the sun"), 0) is None


@pytest.mark.parametrize(
    ("value", "said"),
    [(56.0, "56"), (1 / 3, "0.3333"), (12_500.0, "12,500"), (176.66666, "176.7"), (1e-7, "0.0000001")],
)
def test_results_are_written_whole_or_to_four_digits(value: float, said: str) -> None:
    assert say_number(value) == said


@pytest.mark.parametrize(
    ("question", "reply"),
    [
        ("What's seven times eight?", "Seven times eight is 56."),
        ("What is 7 + 8?", "7 plus 8 is 15."),
        ("what is 100-30", "100 minus 30 is 70."),
        ("What's 10% of 200?", "10 percent of 200 is 20."),
        ("What is ten percent of two hundred?", "Ten percent of two hundred is 20."),
        ("What is half of fifty?", "Half of fifty is 25."),
        ("Hey, what is two plus three times four?", "Two plus three times four is 14."),
        ("Subtract 3 from 10.", "10 minus 3 is 7."),
        ("Add three and five.", "Three plus five is 8."),
        ("Can you tell me what 15 times 4 is?", "15 times 4 is 60."),
        ("What is the square root of 81?", "The square root of 81 is 9."),
        ("What's 12 squared?", "12 squared is 144."),
        ("What is 1/3?", "1 divided by 3 is about 0.3333."),
        ("What is 5 divided by 0?", "You can't divide by zero."),
        ("What is 2 divided into 10?", "2 divided into 10 is 5."),
    ],
)
def test_sums_are_worked_out(question: str, reply: str) -> None:
    assert calculator.answer(heard(question)) == reply


@pytest.mark.parametrize(
    "question",
    [
        "I have three apples and I eat one. How many apples do I have left?",
        "What is seven?",
        "Fifty six.",
        "What is the capital of France?",
        "Set a timer for ten minutes.",
        "What is two plus?",
        "What is the square root of minus four?",
        "Five and six.",
    ],
)
def test_what_is_not_a_sum_is_left_to_the_model(question: str) -> None:
    assert calculator.answer(heard(question)) is None


@pytest.mark.parametrize(
    ("question", "reply"),
    [
        ("How many centimeters are in a meter?", "There are 100 centimeters in a meter."),
        ("How many minutes are in an hour?", "There are 60 minutes in an hour."),
        ("How many ounces are in a pound?", "There are 16 ounces in a pound."),
        ("How many ounces in a cup?", "There are 8 fluid ounces in a cup."),
        ("How many ounces are in the pound?", "There are 16 ounces in a pound."),
        ("How many days are in a leap year?", "There are 366 days in a leap year."),
        ("How many weeks are in a year?", "There are about 52.14 weeks in a year."),
        ("How many feet is 3 meters?", "3 meters is about 9.843 feet."),
        ("How many grams in two and a half pounds?", "There are about 1134 grams in 2.5 pounds."),
        ("Convert 5 miles to kilometers.", "5 miles is about 8.047 kilometers."),
        ("What is 2 cups in milliliters?", "2 cups is about 473.2 milliliters."),
        ("Which is longer, a mile or a kilometer?", "A mile is longer: it is about 1.609 kilometers."),
        ("Which is lighter, a pound or a kilogram?", "A pound is lighter: it is about 0.4536 kilograms."),
        ("What is 350 degrees Fahrenheit in Celsius?", "350 degrees Fahrenheit is about 176.7 degrees Celsius."),
        ("What is 100 degrees celsius in fahrenheit?", "100 degrees Celsius is 212 degrees Fahrenheit."),
    ],
)
def test_units_are_converted(question: str, reply: str) -> None:
    assert units.answer(heard(question)) == reply


@pytest.mark.parametrize(
    "question",
    [
        "How many people live in France?",
        "How many grams are in a mile?",
        "Which is longer, a mile or a pound?",
        "How many legs does a spider have?",
        "What is the weather in London?",
        "How many days are in a month of rain?",
    ],
)
def test_what_is_not_about_units_is_left_to_the_model(question: str) -> None:
    assert units.answer(heard(question)) is None
