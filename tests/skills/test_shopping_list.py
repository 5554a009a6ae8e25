"""The shopping list: items as people say them, kept in a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevoice.skills.lists import MAX_ITEMS, ShoppingList, ShoppingListFile, item_key, split_items


@pytest.mark.parametrize(
    ("said", "items"),
    [
        ("milk", ["milk"]),
        ("eggs, milk and bread", ["eggs", "milk", "bread"]),
        ("some apples and the butter", ["apples", "butter"]),
        ("a dozen eggs", ["a dozen eggs"]),
        ("  ", []),
    ],
)
def test_split_items(said: str, items: list[str]) -> None:
    assert split_items(said) == items


def test_same_item_however_said() -> None:
    assert item_key("Eggs") == item_key("egg") == item_key("some eggs")
    assert item_key("glass") == "glass"


def test_add_remove_clear() -> None:
    shopping = ShoppingList()
    change = shopping.add(["milk", "eggs"])
    assert change.done == ("milk", "eggs")
    assert shopping.add(["Milk", "bread"]).skipped == ("Milk",)
    assert shopping.items == ["milk", "eggs", "bread"]
    removed = shopping.remove(["egg", "cheese"])
    assert removed.done == ("eggs",)
    assert removed.skipped == ("cheese",)
    assert shopping.clear() == 2
    assert shopping.items == []


def test_the_list_is_bounded() -> None:
    shopping = ShoppingList()
    shopping.add([f"thing {n}" for n in range(MAX_ITEMS)])
    assert shopping.add(["one more"]).full == ("one more",)
    assert len(shopping.items) == MAX_ITEMS


def test_kept_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "lists" / "shopping_list.json"
    kept = ShoppingListFile(path)
    kept.load()  # no file yet: an empty list
    kept.items.add(["milk", "eggs"])
    assert kept.save()
    assert json.loads(path.read_text()) == {"version": 1, "items": ["milk", "eggs"]}
    again = ShoppingListFile(path)
    again.load()
    assert again.items.items == ["milk", "eggs"]
    path.write_text('{"version": 1, "items": [1, 2]}')
    damaged = ShoppingListFile(path)
    damaged.load()
    assert damaged.items.items == []


def test_a_write_that_fails_keeps_the_list_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    kept = ShoppingListFile(blocker / "shopping_list.json")
    kept.items.add(["milk"])
    assert not kept.save()
    assert kept.items.items == ["milk"]
