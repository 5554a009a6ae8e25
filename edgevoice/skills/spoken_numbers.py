"""Numbers as a transcript has them, sans-I/O: "56", "1,250", "3.5", "fifty-six", "a hundred and five",
"three point two", "a dozen", "two and a half".

read_number(words, at) reads the longest number starting at words[at] and says where it ended.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

_ONES = {
    "zero": 0,
    "oh": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_FRACTIONS = {"half": 0.5, "quarter": 0.25, "third": 1 / 3}
_DIGITS = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$|^[+-]?\.\d+$")


@dataclass(frozen=True)
class Number:
    value: float
    end: int
    """The index just after the number's last word."""


def words_of(text: str) -> list[str]:
    """A transcript as words for reading numbers and sums: lower case, hyphens and final punctuation gone,
    "7+8" and "50%" apart ("7 + 8", "50 %")."""
    text = text.casefold().replace("’", "'")
    text = re.sub(r"(?<=\d)(?=[+*/×÷x%=])|(?<=[+*/×÷x=])(?=\d)", " ", text)
    text = re.sub(r"(?<=\d)-(?=\d)", " - ", text)
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)
    words = []
    for raw in text.split():
        word = raw.strip('?!,;:"()')
        if word.endswith(".") and not _DIGITS.match(word):
            word = word.rstrip(".")
        if word:
            words.append(word)
    return words


def _whole(words: list[str], at: int) -> tuple[int, int] | None:
    """A whole number in words from words[at]: (value, end). "five six" is two numbers, "fifty six" one."""
    total = current = 0
    i = at
    while i < len(words):
        word = words[i]
        fresh = current % 100 == 0
        after_tens = current % 100 >= 20 and current % 10 == 0  # "fifty" takes "six"
        following = words[i + 1] if i + 1 < len(words) else ""
        if word in _ONES and word != "oh" and (fresh or (after_tens and _ONES[word] < 10)):
            current += _ONES[word]
        elif word in _TENS and fresh:
            current += _TENS[word]
        elif word == "hundred" and 0 < current < 100:
            current *= 100
        elif word in _SCALES and 0 < current < 1000:
            total += current * _SCALES[word]
            current = 0
        elif word == "and" and i > at and fresh and (following in _ONES or following in _TENS):
            pass  # "a hundred and five"; "five and six" stops at "and" (current is 5)
        elif word in ("a", "an") and i == at and following in ("hundred", "thousand", "million"):
            current = 1
        else:
            break
        i += 1
    if i == at or (total == 0 and current == 0 and words[at] not in ("zero",)):
        return None
    return total + current, i


def read_number(words: list[str], at: int) -> Number | None:
    """The number that starts at words[at], read as far as it goes; None when none does."""
    if at >= len(words):
        return None
    word = words[at]
    if _DIGITS.match(word):
        value = float(word.replace(",", ""))
        end = at + 1
    elif word in ("a", "an") and at + 1 < len(words) and words[at + 1] == "dozen":
        return Number(12, at + 2)
    elif word in ("negative", "minus") and at + 1 < len(words):
        rest = read_number(words, at + 1)
        return None if rest is None else Number(-rest.value, rest.end)
    else:
        whole = _whole(words, at)
        if whole is None:
            return None
        value, end = float(whole[0]), whole[1]
        if end + 1 < len(words) and words[end] == "point":
            digits = []
            i = end + 1
            while i < len(words) and words[i] in _ONES and _ONES[words[i]] < 10:
                digits.append(str(_ONES[words[i]]))
                i += 1
            if digits:
                value += float("0." + "".join(digits))
                end = i
    if end < len(words) and words[end] == "dozen":
        return Number(value * 12, end + 1)
    # "two and a half"
    if end + 2 < len(words) and words[end] == "and" and words[end + 1] in ("a", "an") and words[end + 2] in _FRACTIONS:
        return Number(value + _FRACTIONS[words[end + 2]], end + 3)
    return Number(value, end)


def say_number(value: float) -> str:
    """A result as a reply writes it: whole numbers whole, others to at most four significant digits."""
    if abs(value) >= 1e15 or math.isnan(value):
        return f"{value:.3g}"
    rounded = round(value, 9)
    if rounded == int(rounded):
        return f"{int(rounded):,}" if abs(rounded) >= 10_000 else str(int(rounded))
    # Four significant digits, never in e-notation: 1e-07 is "0.0000001", 12345.6 is "12350".
    return format(Decimal(f"{value:.4g}"), "f")


def approximate(value: float, said: str) -> bool:
    """Whether said (a number as say_number writes it) is not value itself: the reply says "about"."""
    return abs(float(said.replace(",", "")) - value) > 1e-9 * max(1.0, abs(value))
