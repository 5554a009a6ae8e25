"""A conversation's history, rendered into the chat messages every next turn's prompt starts with."""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgevoice.engines.llm import Message

_KEYS = itertools.count(1)

COPY_RUN_WORDS = 5
"""A reply that repeats this many words in a row from an earlier reply (to other words) is a copy."""

_WORD = re.compile(r"[\w']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _runs(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + COPY_RUN_WORDS]) for i in range(len(words) - COPY_RUN_WORDS + 1)}


def copies_earlier(history: Iterable[tuple[str, str]], user_text: str, reply: str) -> bool:
    """Whether reply repeats COPY_RUN_WORDS words in a row from a reply in history that answered
    other words than user_text (the same question asked again may get the same answer)."""
    runs = _runs(reply)
    if not runs:
        return False
    asked = _words(user_text)
    return any(_words(said) != asked and runs & _runs(answered) for said, answered in history)


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
        conversation, began 32 of 40 replies to everyday questions with "The answer to this question
        is that", and answered a blocked sink with a French phrase from a reply before. Each copy
        remembered makes the next more likely, so a copy is not remembered (it was still said).
        """
        if self.max_turns == 0 or copies_earlier(self.history, user_text, reply):
            return
        self.history.append((user_text, reply))
        while len(self.history) > self.max_turns:
            self.history.popleft()
