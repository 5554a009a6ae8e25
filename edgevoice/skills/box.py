"""The skills of one running box: the Skills, loaded once, their timers rung through a Ringer, shared by
every conversation; and ConversationSkills, the view a conversation's turns use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.protocol import Timer
from edgevoice.skills.ringing import Ringer
from edgevoice.skills.router import SkillAnswer, Skills, Undo

_log = logging.getLogger(__name__)
ONLY_SAY = frozenset(
    {
        "HassGetCurrentTime",
        "HassGetCurrentDate",
        "HassTimerStatus",
        "EdgevoiceShoppingListRead",
        "EdgevoiceCalculate",
        "EdgevoiceConvertUnits",
    }
)
"""Intents whose handlers change nothing: answered as soon as heard, even by a turn that may yet be dropped."""


class ConversationSkills:
    """The skills as one conversation's turns use them: its timers are its own, and what a skill
    does to a timer is told (through the Ringer) to whoever shows that timer."""

    def __init__(self, box: BoxSkills, conversation_id: str) -> None:
        self.box = box
        self.conversation_id = conversation_id

    def matches(self, transcript: str) -> str | None:
        """The intent a skill may answer with, or None: a quick look with no effect."""
        return self.box.skills.intent_of(transcript)

    @staticmethod
    def changes(intent: str) -> bool:
        """Whether answering intent changes something (a timer, the list): then only a turn that counts may."""
        return intent not in ONLY_SAY

    def answer(self, transcript: str) -> SkillAnswer | None:
        """The skill's answer, its effects done (a timer set, an item added) and its timer events told."""
        answer = self.box.skills.answer(transcript, self.conversation_id)
        if answer is not None:
            for event in answer.events:
                self.box.ringer.publish(event, said_in=self.conversation_id)
        return answer

    def undo(self, undo: Undo) -> None:
        """Take back what an answer changed (the speaker went on), and tell whoever shows the timers."""
        for event in self.box.skills.undo(undo):
            self.box.ringer.publish(event, said_in=self.conversation_id)

    def stop_ringing(self) -> None:
        """Silence this conversation's ringing timers (its client pressed Stop), and tell whoever shows them."""
        for event in self.box.skills.stop_ringing(self.conversation_id):
            self.box.ringer.publish(event, said_in=self.conversation_id)


class BoxSkills:
    def __init__(self, skills: Skills, ringer: Ringer) -> None:
        self.skills = skills
        self.ringer = ringer
        self._timers: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, config: Config, engines: Callable[[], Engines | None], observe: Callable[[Timer], None] | None = None
    ) -> BoxSkills:
        """Load the sentences, the timers and the list (off the event loop); start() makes timers ring."""
        skills = await asyncio.to_thread(Skills.open, config)
        ringer = Ringer(lambda: skills.timers.book, engines, observe)
        skills.timers.on_finished = ringer.rang
        return cls(skills, ringer)

    def start(self) -> None:
        """Ring timers as they end; one that ended while the box was off rings now."""
        self._timers = asyncio.get_running_loop().create_task(self.skills.timers.run(), name="timers")

    def for_conversation(self, conversation_id: str) -> ConversationSkills:
        return ConversationSkills(self, conversation_id)

    async def close(self) -> None:
        if self._timers is not None:
            self._timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timers
        await self.ringer.close()
