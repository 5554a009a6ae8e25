"""The language model: replies stream, the cached prompt prefix is reused, cancellation stops it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edgevoice.engines.llm import Message
from edgevoice.engines.loaded import Engines
from edgevoice.engines.worker import Cancelled, CancelToken


def _reply(engines: Engines, messages: list[Message]) -> str:
    return "".join(engines.llm.stream_reply(messages, CancelToken()))


def test_reply_streams_text(engines: Engines) -> None:
    system = Message("system", engines.config.llm.system_prompt)
    reply = _reply(engines, [system, Message("user", "What is the capital of France?")])
    assert reply.strip()
    assert engines.llm.last_stats.reply_tokens >= 1


def test_second_turn_does_not_reread_the_first(engines: Engines) -> None:
    llm = engines.llm
    turn_one = [Message("system", engines.config.llm.system_prompt), Message("user", "Name a colour.")]
    answer = _reply(engines, turn_one)
    first = llm.last_stats
    turn_two = [*turn_one, Message("assistant", answer), Message("user", "Name another one.")]
    _reply(engines, turn_two)
    second = llm.last_stats
    assert second.prompt_tokens > first.prompt_tokens
    # Everything turn one put in the prompt came from the KV cache.
    assert second.evaluated_prompt_tokens <= second.prompt_tokens - first.prompt_tokens


def test_cancel_stops_generation(engines: Engines) -> None:
    token = CancelToken()
    stream = engines.llm.stream_reply(
        [Message("system", "You are verbose."), Message("user", "Write a long essay about rivers.")], token
    )
    next(stream)
    token.cancel()
    with pytest.raises(Cancelled):
        next(stream)
    assert engines.llm.last_stats.reply_tokens < engines.config.llm.max_reply_tokens


async def test_leaving_a_stream_frees_the_engine(engines: Engines) -> None:
    messages = [Message("system", "You are verbose."), Message("user", "Write a long essay about mountains.")]
    async with asyncio.timeout(60):
        async for _ in engines.reply(messages):
            break
        # The abandoned job ends at its next token, so the next request is served promptly.
        pieces = [piece async for piece in engines.reply([Message("user", "Say hi.")])]
    assert "".join(pieces).strip()
    assert engines.llm.last_stats.reply_tokens >= 1


def test_prepare_reads_the_next_prompt_ahead(engines: Engines) -> None:
    """After prepare(), a turn pays only for its own words, even when the history window slid."""
    llm = engines.llm
    system = Message("system", engines.config.llm.system_prompt)
    history = [system]
    for said, answered in [("Hello there.", "Hi! How can I help?"), ("Name a colour.", "Blue.")]:
        history += [Message("user", said), Message("assistant", answered)]
    _reply(engines, [*history, Message("user", "Name another one.")])
    # The oldest exchange is forgotten: the prompt now differs right after the system prompt.
    slid = [system, *history[3:]]
    evaluated = llm.prepare(slid, lambda: False)
    assert evaluated > 10
    _reply(engines, [*slid, Message("user", "And a third?")])
    stats = llm.last_stats
    assert stats.evaluated_prompt_tokens <= 12  # the new user message and the template around it
    assert llm.prepare(slid, lambda: False) <= 1  # already there, nothing more to read


def test_prepare_gives_way_when_asked(engines: Engines) -> None:
    system = Message("system", engines.config.llm.system_prompt)
    long_history = [system]
    for n in range(8):
        long_history += [Message("user", f"Tell me fact number {n}."), Message("assistant", "Water boils at 100 C.")]
    assert engines.llm.prepare(long_history, lambda: True) == 0


def test_a_held_reply_waits_between_tokens(engines: Engines) -> None:
    may_go = threading.Event()
    may_go.set()
    system = Message("system", engines.config.llm.system_prompt)
    stream = engines.llm.stream_reply(
        [system, Message("user", "Count from one to twenty.")], CancelToken(), may_go=may_go
    )
    got: list[str] = [next(stream)]
    may_go.clear()
    worker = threading.Thread(target=lambda: got.append(next(stream)))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive()  # held: no next token while may_go is clear
    assert len(got) == 1
    may_go.set()
    worker.join(10)
    assert len(got) == 2
    stream.close()
