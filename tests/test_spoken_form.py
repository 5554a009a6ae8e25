"""The spoken form of reply text: units, temperatures, money, ranges, symbols and emoji as said aloud."""

from __future__ import annotations

import pytest

from edgevoice.spoken_form import drop_emoji, spoken_form


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("It is 5 km away.", "It is 5 kilometers away."),
        ("It is 1 km away.", "It is 1 kilometer away."),
        ("Drive 2.5km north.", "Drive 2.5 kilometers north."),
        ("The limit is 50 km/h here.", "The limit is 50 kilometers per hour here."),
        ("Go 1 mi at 30 mph.", "Go 1 mile at 30 miles per hour."),
        ("Add 200 g of flour and 250 ml of milk.", "Add 200 grams of flour and 250 milliliters of milk."),
        ("Add 2 tbsp of oil and 1 tsp of salt.", "Add 2 tablespoons of oil and 1 teaspoon of salt."),
        ("It weighs 3 kg, or 6.6 lbs.", "It weighs 3 kilograms, or 6.6 pounds."),
        ("A 60 W bulb uses 1 kWh in 16 hrs.", "A 60 watts bulb uses 1 kilowatt hour in 16 hours."),
        ("It is 20°C outside.", "It is 20 degrees Celsius outside."),
        ("Bake at 350 °F.", "Bake at 350 degrees Fahrenheit."),
        ("Turn it 90° left.", "Turn it 90 degrees left."),
        ("It is 50% done.", "It is 50 percent done."),
        ("It costs $5.", "It costs 5 dollars."),
        ("It costs $1 or €2.50.", "It costs 1 dollar or 2.50 euros."),
        ("They paid $3 million.", "They paid 3 million dollars."),
        ("Wait 5-10 minutes.", "Wait 5 to 10 minutes."),
        ("Use 1/2 cup of sugar.", "Use one half cup of sugar."),
        ("2+2=4", "2 plus 2 equals 4"),
        ("3 x 4 is 12.", "3 times 4 is 12."),
        ("Salt & pepper.", "Salt and pepper."),
        ("Red vs. blue.", "Red versus blue."),
        ("Sure - the shop opens at 9.", "Sure, the shop opens at 9."),
        ("- Tomatoes", "Tomatoes"),
        ("• Basil", "Basil"),
    ],
)
def test_spoken_form(text: str, spoken: str) -> None:
    assert spoken_form(text) == spoken


@pytest.mark.parametrize(
    "text",
    [
        "Meet me at 3:30 today.",
        "The year 1990 was good.",
        "Call 555-1234 now.",
        "It is well-known.",
        "I am in 5th place.",
        "We met at 5 in the morning.",
        "Room 101 is on the left.",
    ],
)
def test_what_is_already_said_well_is_left_alone(text: str) -> None:
    assert spoken_form(text) == text


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Great job! 🎉", "Great job! "),
        ("I love it ❤️ so much", "I love it  so much"),
        ("Family 👨‍👩‍👧 time", "Family  time"),
        ("Go ✈️ → Paris 🇫🇷", "Go   Paris "),
        ("It is 20°C ☀️", "It is 20°C "),
    ],
)
def test_emoji_are_dropped(text: str, spoken: str) -> None:
    assert drop_emoji(text) == spoken


def test_a_piece_of_only_emoji_says_nothing() -> None:
    assert spoken_form("😀👍") == ""
