"""One typed turn, as `edgevoice ask` runs it: the skills first, else one reply from the language model.

Only the language model is loaded, and only when the skills do not answer: a typed turn needs
no speech engines. The skills keep their timers and shopping list in the same files as the
daemon; a daemon running meanwhile reads them only when it starts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.llm import Message
from edgevoice.models.registry import Kind
from edgevoice.skills.router import Skills
from edgevoice.skills.timers import TimerEvent

CONVERSATION = "cli"
"""The conversation a typed turn belongs to, unless it names one."""


@dataclass(frozen=True)
class AskResult:
    reply: str
    source: str
    """"skill" or "llm"."""
    intent: str | None = None
    stop: bool = False
    events: tuple[TimerEvent, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    """skills_load, match, then for the model llm_load, first_token and reply; total: from the start."""

    def to_json(self) -> dict[str, Any]:
        return {
            "reply": self.reply,
            "source": self.source,
            "intent": self.intent,
            "stop": self.stop,
            "timer_events": [event.to_json() for event in self.events],
            "timings_ms": {name: round(ms, 2) for name, ms in self.timings_ms.items()},
        }


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def ask(config: Config, text: str, conversation_id: str = CONVERSATION) -> AskResult:
    started = time.perf_counter()
    skills = await asyncio.to_thread(Skills.open, config)
    timings = {"skills_load": _ms_since(started)}
    answer = skills.answer(text, conversation_id)
    if answer is not None:
        timings["match"] = answer.match_ms
        timings["total"] = _ms_since(started)
        return AskResult(answer.text, "skill", answer.intent, answer.stop, answer.events, timings)

    step = time.perf_counter()
    engines = await asyncio.to_thread(Engines.load, config, kinds={Kind.LLM}, warm=False)
    timings["llm_load"] = _ms_since(step)
    try:
        step = time.perf_counter()
        messages = [Message("system", config.llm.system_prompt), Message("user", text)]
        reply = ""
        async for delta in engines.reply(messages):
            if "first_token" not in timings:
                timings["first_token"] = _ms_since(step)
            reply += delta
        timings["reply"] = _ms_since(step)
    finally:
        engines.close()
    timings["total"] = _ms_since(started)
    return AskResult(" ".join(reply.split()), "llm", timings_ms=timings)
