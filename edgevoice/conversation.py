"""A conversation's history, rendered into the chat messages every next turn's prompt starts with."""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field

from edgevoice.engines.llm import Message

_KEYS = itertools.count(1)


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
        if self.max_turns == 0:
            return
        self.history.append((user_text, reply))
        while len(self.history) > self.max_turns:
            self.history.popleft()
