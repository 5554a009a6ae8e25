"""Numbers, times, dates and durations as words, the way a person says them.

Piper reads text through espeak-ng, which says "3:05" as "three zero five" and "2025" as "two
thousand twenty five"; skill replies are written in words so that they sound right, and they
read well on a screen too.
"""

from __future__ import annotations

import datetime

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def number_words(n: int) -> str:
    """0 to 999,999,999 in words: 21 -> "twenty-one", 1005 -> "one thousand five"."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for size, word in ((1_000_000, "million"), (1000, "thousand")):
        if n >= size:
            high, rest = divmod(n, size)
            return f"{number_words(high)} {word}" + (f" {number_words(rest)}" if rest else "")
    raise ValueError(n)  # unreachable: every n >= 1000 is caught above


def ordinal_words(n: int) -> str:
    """3 -> "third", 21 -> "twenty-first", 40 -> "fortieth"."""
    words = number_words(n)
    head, sep, last = words.rpartition("-") if "-" in words.split()[-1] else words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year_words(year: int) -> str:
    """2025 -> "twenty twenty-five", 2005 -> "two thousand five", 1900 -> "nineteen hundred"."""
    century, rest = divmod(year, 100)
    if 2000 <= year < 2010 or not 1100 <= year <= 9999:
        return number_words(year)
    if rest == 0:
        return f"{number_words(century)} hundred"
    return f"{number_words(century)} {'oh ' if rest < 10 else ''}{number_words(rest)}"


def clock_words(hour: int, minute: int) -> str:
    """A time of day: "three oh five in the afternoon", "noon", "midnight", "seven o'clock in the evening"."""
    if minute == 0 and hour in (0, 12):
        return "midnight" if hour == 0 else "noon"
    twelve = hour % 12 or 12
    if minute == 0:
        said = f"{number_words(twelve)} o'clock"
    else:
        said = f"{number_words(twelve)} {'oh ' if minute < 10 else ''}{number_words(minute)}"
    return f"{said} {_part_of_day(hour)}"


def _part_of_day(hour: int) -> str:
    if 5 <= hour < 12:
        return "in the morning"
    if 12 <= hour < 17:
        return "in the afternoon"
    if 17 <= hour < 21:
        return "in the evening"
    return "at night"


def date_words(day: datetime.date, with_year: bool = True) -> str:
    """ "Tuesday, June third, twenty twenty-five"."""
    said = f"{_WEEKDAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {ordinal_words(day.day)}"
    return f"{said}, {year_words(day.year)}" if with_year else said


def weekday_name(day: datetime.date) -> str:
    return _WEEKDAYS[day.weekday()]


def _parts(seconds: float) -> list[tuple[int, str]]:
    """Whole hours, minutes and seconds, rounded to the second; zero parts left out."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return [(value, unit) for value, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")) if value]


def duration_words(seconds: float) -> str:
    """An amount of time: "ten minutes", "one hour and five minutes", "one minute and thirty seconds"."""
    parts = [f"{number_words(value)} {unit}{'' if value == 1 else 's'}" for value, unit in _parts(seconds)]
    if not parts:
        return "zero seconds"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def duration_adjective(seconds: float) -> str:
    """A duration before a noun, singular as English wants it: "ten minute", "one hour thirty minute"."""
    parts = [f"{number_words(value)} {unit}" for value, unit in _parts(seconds)]
    return " ".join(parts) if parts else "zero second"


def remaining_words(seconds: float) -> str:
    """Time left, as precise as is useful: to the second under ten minutes, to the minute beyond."""
    seconds = max(0.0, seconds)
    return duration_words(seconds if seconds < 600 else round(seconds / 60) * 60)


def join_words(items: list[str]) -> str:
    """["milk", "eggs", "bread"] -> "milk, eggs and bread"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
