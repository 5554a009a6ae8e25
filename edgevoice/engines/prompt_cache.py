"""Each conversation's evaluated prompt, kept between its turns: a least-recently-used store bounded in bytes.

One llama.cpp context serves every conversation, so one conversation's turn overwrites the KV
cache another's next turn would start from. After each turn the model saves what its context
holds (the tokens and their KV state) under the conversation's key; the conversation's next turn
loads it back, and reads only its new words. Sans-I/O: what is saved is opaque bytes here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SavedPrompt:
    """A context as it was after a conversation's turn."""

    tokens: tuple[int, ...]
    """The tokens the context held, in order."""
    state: bytes
    """The model's state for them (llama.cpp's sequence state: its KV cache)."""

    @property
    def size(self) -> int:
        """Bytes it holds, about: the state and the tokens."""
        return len(self.state) + 4 * len(self.tokens)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens a and b share from the start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PromptCache:
    """Saved prompts by conversation, least recently used evicted first, at most budget_bytes in all."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._saved: OrderedDict[Hashable, SavedPrompt] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        """Saved prompts dropped to stay within the budget, so far."""

    def __len__(self) -> int:
        return len(self._saved)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def put(self, key: Hashable, saved: SavedPrompt) -> list[Hashable]:
        """Keep saved for key (replacing what key had), evicting the least recently used to fit; the
        keys evicted. One prompt larger than the whole budget is not kept."""
        self.pop(key)
        if saved.size > self.budget_bytes:
            return []
        evicted: list[Hashable] = []
        while self._saved and self._bytes + saved.size > self.budget_bytes:
            old_key, old = self._saved.popitem(last=False)
            self._bytes -= old.size
            evicted.append(old_key)
        self.evictions += len(evicted)
        self._saved[key] = saved
        self._bytes += saved.size
        return evicted

    def get(self, key: Hashable) -> SavedPrompt | None:
        """What key saved, now the most recently used; None if nothing (or it was evicted)."""
        saved = self._saved.get(key)
        if saved is not None:
            self._saved.move_to_end(key)
        return saved

    def pop(self, key: Hashable) -> SavedPrompt | None:
        saved = self._saved.pop(key, None)
        if saved is not None:
            self._bytes -= saved.size
        return saved
