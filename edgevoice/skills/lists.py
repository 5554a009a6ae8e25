"""The shopping list: items added, removed and read back by voice, kept in a file across restarts."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevoice.skills.files import read_json, write_json

_log = logging.getLogger(__name__)
MAX_ITEMS = 100
MAX_ITEM_CHARS = 80
FORMAT_VERSION = 1
_SEPARATORS = re.compile(r"\s*(?:,|;|&|\band\b|\bplus\b)\s*")
_FILLERS = ("some", "more", "the", "a", "an")


def split_items(said: str) -> list[str]:
    """What one sentence names: "eggs, milk and bread" -> ["eggs", "milk", "bread"].

    "and" always splits, so "mac and cheese" becomes two items: rarer than "milk and eggs".
    """
    items = []
    for part in _SEPARATORS.split(said):
        words = part.strip(" .!?\"'").split()
        while len(words) > 1 and words[0].casefold() in _FILLERS[:3]:
            words = words[1:]  # "some milk" is kept as "milk"; "a dozen eggs" keeps its "a"
        if words:
            items.append(" ".join(words)[:MAX_ITEM_CHARS])
    return items


def item_key(item: str) -> str:
    """When two items are the same one: case, a leading "some" or "the", and a plural s do not count."""
    words = item.casefold().split()
    while len(words) > 1 and words[0] in _FILLERS:
        words = words[1:]
    key = " ".join(words)
    return key[:-1] if key.endswith("s") and not key.endswith("ss") else key


@dataclass(frozen=True)
class ListChange:
    done: tuple[str, ...] = ()
    """Items added or removed, as the list holds them."""
    skipped: tuple[str, ...] = ()
    """Items already there (adding) or not there (removing)."""
    full: tuple[str, ...] = ()
    """Items not added because the list holds MAX_ITEMS."""


class ShoppingList:
    def __init__(self, items: Iterable[str] = ()) -> None:
        self._items = list(items)[:MAX_ITEMS]

    @property
    def items(self) -> list[str]:
        return list(self._items)

    def _index(self, item: str) -> int | None:
        key = item_key(item)
        return next((i for i, held in enumerate(self._items) if item_key(held) == key), None)

    def add(self, items: Iterable[str]) -> ListChange:
        done: list[str] = []
        skipped: list[str] = []
        full: list[str] = []
        for item in items:
            if self._index(item) is not None:
                skipped.append(item)
            elif len(self._items) >= MAX_ITEMS:
                full.append(item)
            else:
                self._items.append(item)
                done.append(item)
        return ListChange(tuple(done), tuple(skipped), tuple(full))

    def remove(self, items: Iterable[str]) -> ListChange:
        done: list[str] = []
        skipped: list[str] = []
        for item in items:
            index = self._index(item)
            if index is None:
                skipped.append(item)
            else:
                done.append(self._items.pop(index))
        return ListChange(tuple(done), tuple(skipped))

    def clear(self) -> int:
        count = len(self._items)
        self._items.clear()
        return count

    def to_json(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "items": list(self._items)}

    @classmethod
    def from_json(cls, data: Any) -> ShoppingList:
        """The list to_json saved; ValueError when data is not one."""
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError("not a shopping list file of this version")
        items = data.get("items")
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError("items must be a list of strings")
        return cls(item[:MAX_ITEM_CHARS] for item in items)


class ShoppingListFile:
    """The shopping list and the file it lives in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items = ShoppingList()

    def load(self) -> None:
        data = read_json(self.path)
        if data is None:
            return
        try:
            self.items = ShoppingList.from_json(data)
        except ValueError as err:
            _log.warning("ignoring shopping list file %s: %s", self.path, err)

    def save(self) -> bool:
        return write_json(self.path, self.items.to_json())
