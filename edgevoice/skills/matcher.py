"""Which skill a transcript asks for: Home Assistant's English sentences, matched with hassil.

The sentence library (home-assistant-intents) is cut down to the intents edgevoice answers, and to
the sentences of those that need nothing it lacks (rooms, devices, a command to run later);
sentences.yaml, beside this file, adds what people say to a kitchen box that the library does
not have. Loading takes a few hundred milliseconds, so it happens once, off the event loop; a
match then takes a millisecond or two.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hassil import Intents, SlotList, TextSlotList, recognize_best
from hassil.intents import Intent
from home_assistant_intents import get_intents

from edgevoice.errors import EdgevoiceError
from edgevoice.skills.clock import Places

_log = logging.getLogger(__name__)
SENTENCES = Path(__file__).with_name("sentences.yaml")
INTENTS = frozenset(
    {
        "HassGetCurrentTime",
        "HassGetCurrentDate",
        "HassStartTimer",
        "HassCancelTimer",
        "HassCancelAllTimers",
        "HassPauseTimer",
        "HassUnpauseTimer",
        "HassIncreaseTimer",
        "HassDecreaseTimer",
        "HassTimerStatus",
        "HassNevermind",
        "HassShoppingListAddItem",
        "HassShoppingListCompleteItem",
        "HassListAddItem",
        "HassListRemoveItem",
        "HassListCompleteItem",
        "EdgevoiceShoppingListRead",
        "EdgevoiceShoppingListClear",
        "EdgevoiceStop",
    }
)
"""The intents the skills answer; the library's others (lights, media, weather) go to the model."""
SLOTS = frozenset(
    {
        "timer_hours",
        "timer_minutes",
        "timer_seconds",
        "timer_half",
        "timer_one",
        "timer_quarter",
        "timer_name",
        "shopping_list_item",
        "todo_list_item",
        "name",
        "place",
    }
)
"""The lists a sentence may use: the library's others ({area}, {timer_command}: "turn off the lights in
five minutes") ask for what edgevoice does not have, and those sentences go to the model."""
LIST_NAMES = ("shopping", "grocery", "groceries", "grocery shopping")
"""What people call the one list the box keeps ("add milk to the grocery list")."""
_LEADING_FILLER = re.compile(r"^(?:(?:hey|hi|ok|okay|oh|so|um+|uh+|er+|well|alright|all right)\b[\s,.!]*)+")
_TRAILING_THANKS = re.compile(r"[\s,]*\b(?:thanks|thank you)[\s.!]*$")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})


@dataclass(frozen=True)
class Match:
    intent: str
    slots: dict[str, Any] = field(default_factory=dict)
    """Slot values: numbers for durations, text for names and items, a place name as matched."""
    text: str = ""
    """The transcript as it was matched (normalised)."""


def normalise(transcript: str) -> str:
    """A transcript as matched: lower case, plain apostrophes, no "hey ..." before or "thanks" after.

    hassil itself drops the remaining punctuation ("Set a timer for 10 minutes." is fine).
    """
    text = " ".join(transcript.translate(_APOSTROPHES).casefold().split())
    text = _LEADING_FILLER.sub("", text)
    return _TRAILING_THANKS.sub("", text).strip(" ,")


class Matcher:
    def __init__(self, intents: Intents, slot_lists: dict[str, SlotList]) -> None:
        self._intents = intents
        self._slot_lists = slot_lists

    @classmethod
    def load(cls, places: Places) -> Matcher:
        """Build the matcher (slow: call it off the event loop)."""
        started = time.perf_counter()
        library = get_intents("en")
        if library is None:
            raise EdgevoiceError("home-assistant-intents has no English sentences")
        library["intents"] = {name: data for name, data in library["intents"].items() if name in INTENTS}
        intents = Intents.from_dict(library)
        with SENTENCES.open(encoding="utf-8") as file:
            _merge(intents, Intents.from_yaml(file))
        slot_lists: dict[str, SlotList] = {
            "place": TextSlotList.from_strings(places.names(), allow_template=False, name="place"),
            "name": TextSlotList.from_tuples(
                [(said, "shopping", {"domain": "todo"}) for said in LIST_NAMES], allow_template=False, name="name"
            ),
        }
        _drop_unfillable(intents, SLOTS)
        matcher = cls(intents, slot_lists)
        matcher.match("set a timer for ten minutes")  # loads hassil's number words once, now
        _log.info("skills matcher ready in %.0f ms", (time.perf_counter() - started) * 1000)
        return matcher

    def match(self, transcript: str) -> Match | None:
        text = normalise(transcript)
        if not text:
            return None
        result = recognize_best(text, self._intents, slot_lists=self._slot_lists, language="en")
        if result is None:
            return None
        slots = {name: entity.value for name, entity in result.entities.items()}
        return Match(result.intent.name, slots, text)


def _merge(base: Intents, extra: Intents) -> None:
    """Add extra's sentences, lists and rules to base (hassil resolves both by name when matching)."""
    for name, intent in extra.intents.items():
        base.intents.setdefault(name, Intent(name)).data.extend(intent.data)
    base.slot_lists.update(extra.slot_lists)
    base.expansion_rules.update(extra.expansion_rules)


def _drop_unfillable(intents: Intents, lists: frozenset[str]) -> None:
    """Leave out the sentence blocks that use a list not in lists."""
    for intent in intents.intents.values():
        intent.data[:] = [
            data
            for data in intent.data
            if all(set(sentence.list_names(intents.expansion_rules)) <= lists for sentence in data.sentences)
        ]
