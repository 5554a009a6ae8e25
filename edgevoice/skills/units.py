"""Units said aloud, sans-I/O: "how many grams are in a pound", "convert 3 miles to kilometers",
"which is longer, a mile or a kilometer", "what is 350 degrees Fahrenheit in Celsius".

answer(words) gives the reply, or None when the words are not such a question (the model gets them).
The words come without a leading "hey" or a trailing "thanks" (skills.matcher.normalise takes those off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgevoice.skills.spoken_numbers import Number, approximate, read_number, say_number


@dataclass(frozen=True)
class Unit:
    singular: str
    plural: str
    dimension: str
    """"length" (in meters), "mass" (grams), "volume" (milliliters) or "time" (seconds)."""
    size: float
    """How many of the dimension's base unit one of it is."""


def _unit(singular: str, plural: str, dimension: str, size: float, *also: str) -> tuple[Unit, tuple[str, ...]]:
    return Unit(singular, plural, dimension, size), (singular, plural, *also)


_YEAR_S = 365 * 86_400
_TABLE = [
    _unit("millimeter", "millimeters", "length", 0.001, "millimetre", "millimetres", "mm"),
    _unit("centimeter", "centimeters", "length", 0.01, "centimetre", "centimetres", "cm"),
    _unit("meter", "meters", "length", 1.0, "metre", "metres"),
    _unit("kilometer", "kilometers", "length", 1000.0, "kilometre", "kilometres", "km", "kilometers"),
    _unit("inch", "inches", "length", 0.0254),
    _unit("foot", "feet", "length", 0.3048, "ft", "foots"),
    _unit("yard", "yards", "length", 0.9144),
    _unit("mile", "miles", "length", 1609.344),
    _unit("milligram", "milligrams", "mass", 0.001, "milligramme", "milligrammes", "mg"),
    _unit("gram", "grams", "mass", 1.0, "gramme", "grammes"),
    _unit("kilogram", "kilograms", "mass", 1000.0, "kilogramme", "kilogrammes", "kg", "kilo", "kilos"),
    _unit("ounce", "ounces", "mass", 28.349523125, "oz"),
    _unit("pound", "pounds", "mass", 453.59237, "lb", "lbs"),
    _unit("stone", "stone", "mass", 6350.29318, "stones"),
    _unit("tonne", "tonnes", "mass", 1_000_000.0, "metric ton", "metric tons"),
    _unit("milliliter", "milliliters", "volume", 1.0, "millilitre", "millilitres", "ml"),
    _unit("centiliter", "centiliters", "volume", 10.0, "centilitre", "centilitres", "cl"),
    _unit("deciliter", "deciliters", "volume", 100.0, "decilitre", "decilitres", "dl"),
    _unit("liter", "liters", "volume", 1000.0, "litre", "litres"),
    _unit("teaspoon", "teaspoons", "volume", 4.92892159375, "tsp"),
    _unit("tablespoon", "tablespoons", "volume", 14.78676478125, "tbsp"),
    _unit("fluid ounce", "fluid ounces", "volume", 29.5735295625, "fl oz"),
    _unit("cup", "cups", "volume", 236.5882365),
    _unit("pint", "pints", "volume", 473.176473),
    _unit("quart", "quarts", "volume", 946.352946),
    _unit("gallon", "gallons", "volume", 3785.411784),
    _unit("millisecond", "milliseconds", "time", 0.001),
    _unit("second", "seconds", "time", 1.0),
    _unit("minute", "minutes", "time", 60.0),
    _unit("hour", "hours", "time", 3600.0),
    _unit("day", "days", "time", 86_400.0),
    _unit("week", "weeks", "time", 604_800.0),
    _unit("fortnight", "fortnights", "time", 1_209_600.0),
    _unit("month", "months", "time", _YEAR_S / 12),
    _unit("year", "years", "time", _YEAR_S),
    _unit("leap year", "leap years", "time", _YEAR_S + 86_400),
    _unit("decade", "decades", "time", 10 * _YEAR_S),
    _unit("century", "centuries", "time", 100 * _YEAR_S),
]
_NAMES: dict[tuple[str, ...], Unit] = {tuple(name.split()): unit for unit, names in _TABLE for name in names}
_LONGEST_NAME = max(len(name) for name in _NAMES)
_FLUID_OUNCE = next(unit for unit, _ in _TABLE if unit.singular == "fluid ounce")
_ARTICLES = {"a": 1.0, "an": 1.0, "one": 1.0, "per": 1.0, "the": 1.0}
"""Words that mean one of a unit: whisper writes "in the pound" for "in a pound" often enough."""
_TEMPERATURES = {"celsius": "C", "centigrade": "C", "c": "C", "fahrenheit": "F", "f": "F", "kelvin": "K", "k": "K"}
_COMPARE = {
    "longer": ("length", True),
    "shorter": ("length", False),
    "heavier": ("mass", True),
    "lighter": ("mass", False),
    "bigger": ("", True),
    "larger": ("", True),
    "more": ("", True),
    "smaller": ("", False),
    "less": ("", False),
}
_LEAD = re.compile(
    r"^(?:(?:please|quick question)\s+)*"
    r"(?:(?:can|could) you (?:please )?(?:tell me|say)\s+|do you know\s+|tell me\s+)?"
)
_ASK = re.compile(r"^(?:(?:what(?: is|'s|s)|how much is|how (?:long|far|heavy|big) is|convert|change)\s+)?")


def _read_unit(words: list[str], at: int) -> tuple[Unit, int] | None:
    for length in range(min(_LONGEST_NAME, len(words) - at), 0, -1):
        unit = _NAMES.get(tuple(words[at : at + length]))
        if unit is not None:
            return unit, at + length
    return None


def _quantity(words: list[str], at: int) -> tuple[float, Unit, int] | None:
    """ "a pound", "3 miles", "two and a half cups" from words[at]: (amount, unit, end)."""
    if at < len(words) and words[at] in _ARTICLES and _read_unit(words, at + 1):
        amount: Number | None = Number(_ARTICLES[words[at]], at + 1)
    else:
        amount = read_number(words, at)
    if amount is None:
        return None
    unit = _read_unit(words, amount.end)
    if unit is None:
        return None
    return amount.value, unit[0], unit[1]


def _same_dimension(first: Unit, second: Unit) -> tuple[Unit, Unit] | None:
    """The two units if they measure the same thing; an ounce beside a volume is a fluid ounce."""
    if first.dimension != second.dimension:
        if first.singular == "ounce" and second.dimension == "volume":
            first = _FLUID_OUNCE
        elif second.singular == "ounce" and first.dimension == "volume":
            second = _FLUID_OUNCE
        else:
            return None
    return first, second


def _amount(value: float, unit: Unit) -> str:
    said = say_number(value)
    return f"{said} {unit.singular if said == '1' else unit.plural}"


def _with_article(unit: Unit) -> str:
    return ("an " if unit.singular[0] in "aeiou" or unit.singular == "hour" else "a ") + unit.singular


def _rounded(value: float) -> bool:
    return approximate(value, say_number(value))


_LINKS = (
    ["are", "there", "in"],
    ["are", "in"],
    ["is", "there", "in"],
    ["in"],
    ["make", "up"],
    ["make"],
    ["go", "into"],
    ["does", "it", "take", "to", "make"],
    ["is"],
    ["are"],
)
"""What joins "how many grams" to "a pound"."""


def _how_many(words: list[str]) -> str | None:
    """ "how many grams are in a pound", "how many feet is 3 meters", "how many cups make a liter"."""
    if words[:2] != ["how", "many"]:
        return None
    asked = _read_unit(words, 2)
    if asked is None:
        return None
    target, at = asked
    rest = words[at:]
    for link in _LINKS:
        if rest[: len(link)] == link:
            quantity = _quantity(rest, len(link))
            if quantity is not None and quantity[2] == len(rest):
                value, source, _ = quantity
                units = _same_dimension(target, source)
                if units is None:
                    return None
                target, source = units
                result = value * source.size / target.size
                about = "about " if _rounded(result) else ""
                if words[at : at + 1] == ["is"]:
                    return f"{_amount(value, source)} is {about}{_amount(result, target)}."
                said = _with_article(source) if value == 1 else _amount(value, source)
                verb = "is" if say_number(result) == "1" else "are"
                return f"There {verb} {about}{_amount(result, target)} in {said}."
    return None


def _convert(words: list[str]) -> str | None:
    """ "3 miles in kilometers", "convert 2 cups to milliliters", "what is 5 pounds in kilograms"."""
    quantity = _quantity(words, 0)
    if quantity is None:
        return None
    value, source, at = quantity
    if at >= len(words) or words[at] not in ("in", "to", "into", "as"):
        return None
    asked = _read_unit(words, at + 1)
    if asked is None or asked[1] != len(words):
        return None
    units = _same_dimension(asked[0], source)
    if units is None:
        return None
    target, source = units
    result = value * source.size / target.size
    return f"{_amount(value, source)} is {'about ' if _rounded(result) else ''}{_amount(result, target)}."


def _temperature(words: list[str]) -> str | None:
    """ "350 degrees fahrenheit in celsius", "20 c to f"."""
    number = read_number(words, 0)
    if number is None:
        return None
    at = number.end + (number.end < len(words) and words[number.end] in ("degrees", "degree"))
    if at + 2 >= len(words) or words[at] not in _TEMPERATURES or words[at + 1] not in ("in", "to", "into"):
        return None
    target_at = at + 2 + (words[at + 2] == "degrees")
    if target_at != len(words) - 1 or words[target_at] not in _TEMPERATURES:
        return None
    source, target = _TEMPERATURES[words[at]], _TEMPERATURES[words[target_at]]
    kelvin = {"C": number.value + 273.15, "F": (number.value - 32) * 5 / 9 + 273.15, "K": number.value}[source]
    result = {"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32, "K": kelvin}[target]
    names = {"C": "degrees Celsius", "F": "degrees Fahrenheit", "K": "kelvin"}
    said = say_number(round(result, 1))
    about = "about " if approximate(result, said) else ""
    return f"{say_number(number.value)} {names[source]} is {about}{said} {names[target]}."


def _compare(words: list[str]) -> str | None:
    """ "which is longer, a mile or a kilometer"."""
    if words[:2] != ["which", "is"] or len(words) < 4 or words[2] not in _COMPARE:
        return None
    dimension, bigger = _COMPARE[words[2]]
    first = _quantity(words, 3)
    if first is None or first[2] >= len(words) or words[first[2]] != "or":
        return None
    second = _quantity(words, first[2] + 1)
    if second is None or second[2] != len(words):
        return None
    units = _same_dimension(first[1], second[1])
    if units is None or (dimension and units[0].dimension != dimension):
        return None
    sizes = (first[0] * units[0].size, second[0] * units[1].size)
    if sizes[0] == sizes[1]:
        return "They are the same."
    pick = 0 if (sizes[0] > sizes[1]) == bigger else 1
    winner = (first, second)[pick]
    winner_unit, other_unit = units[pick], units[1 - pick]
    said = _with_article(winner_unit) if winner[0] == 1 else _amount(winner[0], winner_unit)
    result = winner[0] * winner_unit.size / other_unit.size
    about = "about " if _rounded(result) else ""
    return f"{said[0].upper()}{said[1:]} is {words[2]}: it is {about}{_amount(result, other_unit)}."


def answer(words: list[str]) -> str | None:
    """The reply to a question about units (words as spoken_numbers.words_of gives them), or None."""
    text = _LEAD.sub("", " ".join(words), count=1)
    asked = _ASK.sub("", text, count=1)
    for phrase in (text, asked):
        said = phrase.split()
        for question in (_how_many, _compare, _convert, _temperature):
            reply = question(said)
            if reply is not None:
                return reply
    return None
