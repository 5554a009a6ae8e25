"""Sums said aloud, sans-I/O: "what's seven times eight", "ten percent of two hundred", "half of fifty",
"what is 12 + 12", "the square root of eighty one", "add three and five".

answer(words) gives the reply, or None when the words are not a sum from start to end (the model
gets them: "I have three apples and eat one" is for it). The words come without a leading "hey" or
a trailing "thanks" (skills.matcher.normalise takes those off first).
"""

from __future__ import annotations

import math
import re

from edgevoice.skills.spoken_numbers import approximate, read_number, say_number

_LEAD = re.compile(
    r"^(?:(?:please|quick question)\s+)*"
    r"(?:(?:can|could) you (?:please )?(?:tell me|work out|calculate|say)\s+|do you know\s+|tell me\s+|please\s+)?"
    r"(?:what(?: is|'s|s)?|how much is|calculate|compute|work out|what do you get (?:if|when) you)?\s*"
)
_TAIL = re.compile(r"\s*(?:is|equal|equals|make|makes|come to|in total|exactly|please)?$")
_ADD = (("plus",), ("+",), ("and",), ("added", "to"))
_SUBTRACT = (("minus",), ("-",), ("take", "away"), ("less",), ("subtract",))
_MULTIPLY = (("times",), ("x",), ("×",), ("*",), ("multiplied", "by"))
_DIVIDE = (("divided", "by"), ("over",), ("/",), ("÷",), ("divided", "into"))
_SPOKEN = {
    "+": "plus",
    "-": "minus",
    "x": "times",
    "×": "times",
    "*": "times",
    "/": "divided by",
    "÷": "divided by",
    "%": "percent",
}
_PARTS = {"half": 0.5, "third": 1 / 3, "quarter": 0.25, "fifth": 0.2, "tenth": 0.1}
_VERBS = {"add": ("and", "to"), "multiply": ("by", "and"), "divide": ("by",), "subtract": ("from",)}


class _NotASum(Exception):
    pass


class _Reader:
    """Recursive descent over the words: sums of products of (powers of) numbers, with "half of", "percent of"."""

    def __init__(self, words: list[str], verbs_and: bool) -> None:
        self.words = words
        self.at = 0
        self._and_adds = verbs_and
        self.operations = 0
        """Operations read: a sum has one at least ("fifty six" alone is not a sum)."""

    def _take(self, *phrases: tuple[str, ...]) -> tuple[str, ...] | None:
        for phrase in phrases:
            if tuple(self.words[self.at : self.at + len(phrase)]) == phrase:
                if phrase == ("and",) and not self._and_adds:
                    continue
                self.at += len(phrase)
                self.operations += phrase != ("the",)
                return phrase
        return None

    def sum(self) -> float:
        value = self.product()
        while True:
            if self._take(*_ADD):
                value += self.product()
            elif self._take(*_SUBTRACT):
                value -= self.product()
            else:
                return value

    def product(self) -> float:
        value = self.unary()
        while True:
            if self._take(*_MULTIPLY):
                value *= self.unary()
            elif phrase := self._take(*_DIVIDE):
                divisor = self.unary()
                if phrase == ("divided", "into"):  # "2 divided into 10" is 10 over 2
                    value, divisor = divisor, value
                if divisor == 0:
                    raise ZeroDivisionError
                value /= divisor
            else:
                return value

    def unary(self) -> float:
        self._take(("the",))
        if self._take(("square", "root", "of")):
            value = self.unary()
            if value < 0:
                raise _NotASum
            return math.sqrt(value)
        if self._take(("double",), ("twice",)):
            return 2 * self.unary()
        if self._take(("triple",)):
            return 3 * self.unary()
        for article in (("a",), ("one",), ("an",), ()):
            for part, size in _PARTS.items():
                if self._take((*article, part, "of")):
                    return size * self.unary()
        value = self.power()
        if self._take(("percent", "of"), ("%", "of"), ("per", "cent", "of")):
            return value / 100 * self.unary()
        return value

    def power(self) -> float:
        number = read_number(self.words, self.at)
        if number is None:
            raise _NotASum
        self.at = number.end
        value = number.value
        if self._take(("squared",)):
            return value**2
        if self._take(("cubed",)):
            return value**3
        if self._take(("to", "the", "power", "of")):
            exponent = read_number(self.words, self.at)
            if exponent is None or abs(exponent.value) > 100:
                raise _NotASum
            self.at = exponent.end
            return float(value**exponent.value)
        return value


def _verb_form(words: list[str]) -> list[str] | None:
    """ "add 3 and 5", "multiply 6 by 7", "divide 10 by 2", "subtract 3 from 10" as a sum in words."""
    if not words or words[0] not in _VERBS:
        return None
    verb, rest = words[0], words[1:]
    for link in _VERBS[verb]:
        if link in rest:
            split = rest.index(link)
            first, second = rest[:split], rest[split + 1 :]
            if not first or not second:
                return None
            op = {"add": ["plus"], "multiply": ["times"], "divide": ["divided", "by"], "subtract": ["minus"]}[verb]
            return [*second, *op, *first] if verb == "subtract" else [*first, *op, *second]
    return None


def answer(words: list[str]) -> str | None:
    """The reply to a sum (words as spoken_numbers.words_of gives them), or None."""
    text = _TAIL.sub("", _LEAD.sub("", " ".join(words), count=1), count=1)
    said = text.split()
    by_verb = _verb_form(said)
    if by_verb is not None:
        said = by_verb
    reader = _Reader(said, verbs_and=by_verb is not None)
    try:
        value = reader.sum()
    except _NotASum:
        return None
    except ZeroDivisionError:
        return "You can't divide by zero."
    except OverflowError:
        return "That number is too big to say."
    if reader.at != len(said) or reader.operations == 0:
        return None
    if abs(value) >= 1e15:
        return "That number is too big to say."
    spoken = " ".join(_SPOKEN.get(word, word) for word in said)
    result = say_number(value)
    return f"{spoken[0].upper()}{spoken[1:]} is {'about ' if approximate(value, result) else ''}{result}."
