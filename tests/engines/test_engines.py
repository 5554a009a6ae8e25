"""The loaded engines together: the voice goes first, holding the model while a turn's first words are voiced."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import types
from collections.abc import AsyncIterator
from typing import cast

import numpy as np

from edgevoice.audio.pcm import Pcm16, Samples
from edgevoice.config import Config
from edgevoice.engines.engines import Engines, _Hold, _LaterWork
from edgevoice.engines.llm import Message
from edgevoice.engines.schedule import Claim
from edgevoice.engines.worker import CancelToken, EngineWorker

HELD_S = 1.5
GOES_ON_S = 30.0
"""Long enough for a few tokens on a busy machine: a model that is not held produces them well before."""


@contextlib.asynccontextmanager
async def voice_busy(engines: Engines) -> AsyncIterator[threading.Event]:
    """The voice's thread busy with another job until the event is set: first words wait for it, unheard."""
    free = threading.Event()
    job = engines.tts_worker.submit(lambda: free.wait(60))
    try:
        yield free
    finally:
        free.set()
        await job


async def _collect(engines: Engines, into: list[str], going: asyncio.Event | None = None) -> None:
    """The reply's pieces into `into`; `going` is set once there are two: the model is not held."""
    messages = [Message("system", "You are verbose."), Message("user", "Count slowly from one to thirty.")]
    async for delta in engines.reply(messages):
        into.append(delta)
        if going is not None and len(into) >= 2:
            going.set()


async def goes_on(engines: Engines) -> bool:
    """Whether a reply gets past its first piece while the voice is busy with something else."""
    deltas: list[str] = []
    going = asyncio.Event()
    reply = asyncio.create_task(_collect(engines, deltas, going))
    try:
        async with asyncio.timeout(GOES_ON_S):
            await going.wait()
    except TimeoutError:
        return False
    finally:
        reply.cancel()
        await asyncio.gather(reply, return_exceptions=True)
    return True


async def _first_audio(engines: Engines, first_words: bool) -> Pcm16:
    speech = engines.speech("Hello there.", first_words=first_words)
    try:
        return await anext(speech)
    finally:
        await speech.aclose()


async def test_first_words_hold_the_model_until_they_give_audio(engines: Engines) -> None:
    deltas: list[str] = []
    async with asyncio.timeout(120), voice_busy(engines) as free:
        first = asyncio.create_task(_first_audio(engines, first_words=True))
        await asyncio.sleep(0.05)  # the voice has the words and holds the model
        reply = asyncio.create_task(_collect(engines, deltas))
        await asyncio.sleep(HELD_S)
        held = len(deltas)
        free.set()
        assert len(await first) > 0
        await reply
    assert held <= 1, f"the model went on while the first words waited for the voice: {deltas[:held]}"
    assert len(deltas) > held + 1, "the model did not go on once the voice gave audio"


async def test_first_words_given_up_release_the_model(engines: Engines) -> None:
    async with asyncio.timeout(120), voice_busy(engines):
        first = asyncio.create_task(_first_audio(engines, first_words=True))
        await asyncio.sleep(0.05)
        first.cancel()  # the turn was interrupted before its voice could start: nothing is held
        await asyncio.gather(first, return_exceptions=True)
        assert await goes_on(engines), "a voice that was given up still holds the model"


async def test_first_words_spoken_to_the_end_release_the_model_once(engines: Engines) -> None:
    """The hold ends with their first audio: the rest of what they say (here a second sentence)
    releases nothing more, so a later turn's first words still hold the model."""
    async with asyncio.timeout(120):
        pieces = [pcm async for pcm in engines.speech("Hello there. How are you today?", first_words=True)]
    assert len(pieces) >= 2
    deltas: list[str] = []
    async with asyncio.timeout(120), voice_busy(engines) as free:
        first = asyncio.create_task(_first_audio(engines, first_words=True))
        await asyncio.sleep(0.05)
        reply = asyncio.create_task(_collect(engines, deltas))
        await asyncio.sleep(HELD_S)
        held = len(deltas)
        free.set()
        await first
        await reply
    assert held <= 1, f"the model went on while the first words waited for the voice: {deltas[:held]}"
    assert len(deltas) > held + 1, "the model did not go on once the voice gave audio"


async def test_later_words_do_not_hold_the_model(engines: Engines) -> None:
    async with asyncio.timeout(120), voice_busy(engines):
        later = asyncio.create_task(_first_audio(engines, first_words=False))
        await asyncio.sleep(0.05)
        try:
            assert await goes_on(engines), "words after the first held the model"
        finally:
            later.cancel()
            await asyncio.gather(later, return_exceptions=True)


def test_a_hold_is_free_only_when_every_holder_has_let_go() -> None:
    hold = _Hold()
    assert hold.free.is_set()
    with hold:
        assert not hold.free.is_set()
        with hold:
            pass
        assert not hold.free.is_set()
    assert hold.free.is_set()


def test_a_reply_already_playing_waits_while_another_turn_is_heard() -> None:
    """_LaterWork: a reply whose first words are out waits while a turn is transcribed, unless its own
    engine has work queued (which may be that turn's: it comes first by the engine's order)."""
    hearing, first_words = _Hold(), threading.Event()
    first_words.set()
    worker = types.SimpleNamespace(waiting=0)
    playing = Claim(since=1.0, first_words_out=True)
    new = Claim(since=2.0)
    later = _LaterWork(first_words, hearing, playing, cast(EngineWorker, worker))
    not_yet = _LaterWork(first_words, hearing, new, cast(EngineWorker, worker))
    assert later.wait(0.01)
    with hearing:
        assert not later.wait(0.01), "a reply already playing went on while a turn was heard"
        assert not_yet.wait(0.01), "a reply whose first words are still to come waited"
        worker.waiting = 1
        assert later.wait(0.01), "it waited while its engine had work queued"
        worker.waiting = 0
    assert later.wait(0.01)
    first_words.clear()  # some turn's first words are voiced: every reply waits, as before
    assert not later.wait(0.01)
    assert not not_yet.wait(0.01)
    assert _LaterWork(None, hearing, new, cast(EngineWorker, worker)).wait(0.01), "the voice has no first-words hold"


class _Transcriber:
    """Speech to text that answers at once, on this box or (computes_here False) on another."""

    def __init__(self, computes_here: bool) -> None:
        self.computes_here = computes_here

    def transcribe(self, samples: Samples, token: CancelToken | None = None) -> str:
        return "heard"

    def warm_up(self) -> None:
        pass


async def _transcribed_while_the_model_reads_ahead(computes_here: bool) -> bool:
    """Whether a turn is transcribed while a batch read ahead holds the cores (and a reply plays)."""
    engines = Engines(Config(), _Transcriber(computes_here), None, None)
    try:
        with engines._reading_ahead:
            job = asyncio.ensure_future(engines.transcribe(np.zeros(1600, np.float32), Claim(since=1.0)))
            done, _ = await asyncio.wait({job}, timeout=HELD_S)
        assert await job == "heard"
        return bool(done)
    finally:
        engines.close()


async def test_a_transcription_here_waits_for_the_batch_read_ahead_one_elsewhere_does_not() -> None:
    assert not await _transcribed_while_the_model_reads_ahead(computes_here=True)
    assert await _transcribed_while_the_model_reads_ahead(computes_here=False)
