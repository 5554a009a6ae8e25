"""The per-conversation prompt store as plain logic: bounded in bytes, least recently used out first."""

from __future__ import annotations

from edgevoice.engines.prompt_cache import PromptCache, SavedPrompt, common_prefix


def _saved(tokens: int, state_bytes: int) -> SavedPrompt:
    return SavedPrompt(tuple(range(tokens)), bytes(state_bytes))


def test_keeps_what_fits_and_evicts_least_recently_used() -> None:
    cache = PromptCache(budget_bytes=1000)
    assert cache.put("kitchen", _saved(10, 260)) == []  # 300 bytes
    assert cache.put("bedroom", _saved(10, 260)) == []
    assert cache.put("garage", _saved(10, 260)) == []
    assert cache.bytes_used == 900
    assert cache.get("kitchen") is not None  # used: now the most recent
    assert cache.put("attic", _saved(10, 260)) == ["bedroom"]
    assert cache.get("bedroom") is None
    assert len(cache) == 3
    assert cache.bytes_used == 900
    assert cache.evictions == 1


def test_a_new_save_replaces_the_conversations_old_one() -> None:
    cache = PromptCache(budget_bytes=1000)
    cache.put("kitchen", _saved(10, 260))
    cache.put("kitchen", _saved(20, 420))
    saved = cache.get("kitchen")
    assert saved is not None
    assert len(saved.tokens) == 20
    assert cache.bytes_used == 500
    assert len(cache) == 1


def test_larger_than_the_budget_is_not_kept_and_drops_the_stale_one() -> None:
    cache = PromptCache(budget_bytes=1000)
    cache.put("kitchen", _saved(10, 260))
    cache.put("hall", _saved(10, 260))
    assert cache.put("kitchen", _saved(10, 2000)) == []
    assert cache.get("kitchen") is None
    assert cache.get("hall") is not None
    assert cache.bytes_used == 300


def test_a_big_save_evicts_several() -> None:
    cache = PromptCache(budget_bytes=1000)
    for room in ("a", "b", "c"):
        cache.put(room, _saved(10, 260))
    assert cache.put("d", _saved(10, 560)) == ["a", "b"]
    assert cache.bytes_used == 900


def test_zero_budget_keeps_nothing() -> None:
    cache = PromptCache(budget_bytes=0)
    cache.put("kitchen", _saved(1, 1))
    assert len(cache) == 0
    assert cache.get("kitchen") is None


def test_pop_and_common_prefix() -> None:
    cache = PromptCache(budget_bytes=1000)
    cache.put("kitchen", _saved(10, 260))
    assert cache.pop("kitchen") is not None
    assert cache.pop("kitchen") is None
    assert cache.bytes_used == 0
    assert common_prefix([1, 2, 3, 4], [1, 2, 9]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5, 6], [5, 6]) == 2
