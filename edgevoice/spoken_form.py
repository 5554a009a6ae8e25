"""The spoken form of a reply's text: what Piper should read, not what the model wrote.

Piper's phonemizer reads "5 km" as "five K M", "$5" as "dollar five", "20°C" as "twenty degrees
C" and "5-10" as "five dash ten", and it says the name of some emoji; this rewrites such text the
way a person would say it. Digits stay digits (the phonemizer reads numbers and times like "3:30"
well). Markup is removed before this (speech_text.clean_for_speech), so the text is one line.
"""

from __future__ import annotations

import re
import unicodedata

_NUMBER = r"\d+(?:[.,]\d+)*"

# Singular and plural, by symbol; symbols are case-sensitive ("mL" and "ml", but "M" is not meters).
_UNITS: dict[str, tuple[str, str]] = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "tsp": ("teaspoon", "teaspoons"),
    "tbsp": ("tablespoon", "tablespoons"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "kW": ("kilowatt", "kilowatts"),
    "W": ("watt", "watts"),
    "V": ("volt", "volts"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"),
    "sec": ("second", "seconds"),
    "secs": ("second", "seconds"),
}
_UNIT = re.compile(
    rf"(?<![\w.])({_NUMBER})\s?({'|'.join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))})(?![\w/])"
)
_TEMPERATURE = re.compile(rf"({_NUMBER})\s?[°º]\s?([CF])\b")
_DEGREES = re.compile(rf"({_NUMBER})\s?[°º]")
_PERCENT = re.compile(rf"({_NUMBER})\s?%")
_CURRENCY = re.compile(rf"([$€£])\s?({_NUMBER})(\s?(?:million|billion|thousand)\b)?")
_CURRENCY_NAMES = {"$": ("dollar", "dollars"), "€": ("euro", "euros"), "£": ("pound", "pounds")}
# "5-10 minutes", "1990-1995 was": up to three digits each, or two years; not "555-1234" (a phone number).
_RANGE = re.compile(
    r"(?<![\w.:/-])(\d{1,3}(?:\.\d+)?|\d{4})\s?[-–]\s?(\d{1,3}(?:\.\d+)?|\d{4})(?![\w.-]\d)(?=\s+[A-Za-z])"
)
_FRACTIONS = {"1/2": "one half", "1/3": "one third", "2/3": "two thirds", "1/4": "a quarter", "3/4": "three quarters"}
_FRACTION = re.compile(r"(?<![\w/])(1/2|1/3|2/3|1/4|3/4)(?![\w/])")
# Those the phonemizer spells out ("V S"); it says "e.g." and "etc." well itself.
_ABBREVIATIONS = {"vs.": "versus", "approx.": "approximately"}
_ABBREVIATION = re.compile(r"(?<!\w)(" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + ")", re.IGNORECASE)
_ARITHMETIC = re.compile(r"(?<=\d)\s?([+×=])\s?(?=\d)|(?<=\d) ([x*]) (?=\d)")
_ARITHMETIC_WORDS = {"+": "plus", "×": "times", "x": "times", "*": "times", "=": "equals"}
_LONE_DASH = re.compile(r"\s[-–•]+(?=\s|$)")
_LEADING_DASH = re.compile(r"^\s*[-–•]+\s")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")
_EMOJI_CATEGORIES = frozenset({"So", "Sk", "Cs", "Co"})
_EMOJI_JOINERS = frozenset({"\u200d", "\ufe0e", "\ufe0f", "\u20e3"})


def _plural(number: str, forms: tuple[str, str]) -> str:
    return forms[0] if number in ("1", "1.0") else forms[1]


def _unit(match: re.Match[str]) -> str:
    number, symbol = match.group(1), match.group(2)
    return f"{number} {_plural(number, _UNITS[symbol])}"


def _range(match: re.Match[str]) -> str:
    low, high = match.group(1), match.group(2)
    if (len(low) == 4) != (len(high) == 4):
        return match.group()
    return f"{low} to {high}"


def _temperature(match: re.Match[str]) -> str:
    scale = "Celsius" if match.group(2) == "C" else "Fahrenheit"
    return f"{match.group(1)} {_plural(match.group(1), ('degree', 'degrees'))} {scale}"


def _currency(match: re.Match[str]) -> str:
    symbol, number, scale = match.group(1), match.group(2), match.group(3) or ""
    forms = _CURRENCY_NAMES[symbol]
    return f"{number}{scale} {forms[1] if scale else _plural(number, forms)}"


def drop_emoji(text: str) -> str:
    """Pictographs, dingbats, flags and their joiners go: Piper would read out their names or nothing."""
    return "".join(
        ch
        for ch in text
        if ch not in _EMOJI_JOINERS
        and not "\u2190" <= ch <= "\u21ff"  # arrows
        and (unicodedata.category(ch) not in _EMOJI_CATEGORIES or ch in "°º")
    )


def spoken_form(text: str) -> str:
    """Numbers with units, temperatures, percentages, money, ranges and symbols as they are said."""
    text = drop_emoji(text)
    text = _TEMPERATURE.sub(_temperature, text)
    text = _DEGREES.sub(lambda m: f"{m.group(1)} {_plural(m.group(1), ('degree', 'degrees'))}", text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _CURRENCY.sub(_currency, text)
    text = _RANGE.sub(_range, text)
    text = _FRACTION.sub(lambda m: _FRACTIONS[m.group(1)], text)
    text = _UNIT.sub(_unit, text)
    # The abbreviation's dot may also have ended the sentence.
    text = _ABBREVIATION.sub(
        lambda m: _ABBREVIATIONS[m.group(1).lower()] + ("." if not text[m.end() :].strip() else ""), text
    )
    text = _ARITHMETIC.sub(lambda m: f" {_ARITHMETIC_WORDS[m.group(1) or m.group(2)]} ", text)
    text = text.replace("&", " and ")
    text = _LONE_DASH.sub(",", _LEADING_DASH.sub("", text))
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", text)).strip()
