"""A conversation's history, rendered into the chat messages every next turn's prompt starts with."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgevoice.engines.llm import Message
from edgevoice.reply_text import reply_words

_KEYS = itertools.count(1)

COPY_RUN_WORDS = 5
"""A reply that repeats this many words in a row from an earlier reply (to other words) is a copy;
so is one that has a shorter reply whole in it, or is whole in another, down to COPY_MIN_WORDS
("The answer is no.")."""
COPY_MIN_WORDS = 3
"""Replies shorter than this ("You're welcome.") are neither copies nor copied."""


def _runs(words: tuple[str, ...], length: int) -> set[tuple[str, ...]]:
    return {words[i : i + length] for i in range(len(words) - length + 1)}


def _shares_a_run(words: tuple[str, ...], other: tuple[str, ...]) -> bool:
    length = min(COPY_RUN_WORDS, len(words), len(other))
    return length >= COPY_MIN_WORDS and bool(_runs(words, length) & _runs(other, length))


def copies_earlier(history: Iterable[tuple[str, str]], user_text: str, reply: str) -> bool:
    """Whether reply shares COPY_RUN_WORDS words in a row (or the whole of the shorter of the two)
    with a reply in history that answered other words than user_text (the same question asked
    again may get the same answer)."""
    words = reply_words(reply)
    asked = reply_words(user_text)
    return any(reply_words(said) != asked and _shares_a_run(words, reply_words(answered)) for said, answered in history)


@dataclass
class Conversation:
    """A bounded history of exchanges, rendered into chat messages for each turn."""

    system_prompt: str
    max_turns: int
    history: collections.deque[tuple[str, str]] = field(default_factory=collections.deque)
    key: int = field(default_factory=lambda: next(_KEYS), compare=False)
    """Names this conversation to the language model, which keeps its evaluated prompt between turns."""

    def history_messages(self) -> list[Message]:
        """The system prompt and the exchanges remembered: every next turn's prompt starts with these."""
        messages = [Message("system", self.system_prompt)]
        for said, answered in self.history:
            messages += [Message("user", said), Message("assistant", answered)]
        return messages

    def messages(self, user_text: str) -> list[Message]:
        return [*self.history_messages(), Message("user", user_text)]

    def remember(self, user_text: str, reply: str) -> None:
        """Keep the exchange for the next turns' prompts, unless the reply copies an earlier one.

        A small model copies its own earlier replies: SmolLM2-135M, given the history of a
        conversation, began 33 of 40 replies to everyday questions with "The answer to this question
        is", answered a blocked sink with a French phrase from a reply before, and in a bench
        conversation answered 13 of the last 14 questions "The answer is no." Each copy
        remembered makes the next more likely, so a copy is not remembered (it was still said).
        """
        if self.max_turns == 0 or copies_earlier(self.history, user_text, reply):
            return
        self.history.append((user_text, reply))
        while len(self.history) > self.max_turns:
            self.history.popleft()
