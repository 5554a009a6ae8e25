"""Skills in the voice turn, through the real daemon, socket and models, with questions Piper speaks.

A skill answers without the model (turn_done names its intent), a timer set by voice rings on the
client that set it (the `timer` event, then the chime and its line as reply audio under a turn
number of its own), and again after a restart; "stop" silences a ring and a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
import numpy as np
import pytest

from edgevoice.announcements import ANNOUNCEMENT_TURNS
from edgevoice.audio.pcm import SAMPLE_RATE, Samples
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.llm import Message
from edgevoice.protocol import Interrupt, Interrupted, ReplyAudio, ReplyAudioEnd, ReplyText, Timer, TurnDone
from edgevoice.skills.ringing import chime
from edgevoice.skills.speech import number_words
from tests.conftest import with_silence
from tests.support.daemon import serving_with
from tests.support.wire import Received, hello, receive, stream

pytestmark = pytest.mark.slow
Speech = Callable[[str], Samples]


@pytest.fixture
def ringing_config(server_config: Config) -> Config:
    """Timers ring again every 2 s, for a minute: a ring that goes on is seen within a test's patience."""
    return dataclasses.replace(
        server_config, skills=dataclasses.replace(server_config.skills, ring_every_s=2.0, ring_for_s=60.0)
    )


async def say(ws: aiohttp.ClientWebSocketResponse, speech: Samples, into: Received | None = None) -> Received:
    """Speak one turn and read until its turn_done."""
    sender = asyncio.create_task(stream(ws, with_silence(speech)))
    got = await receive(ws, into or Received(), until=TurnDone, timeout_s=120)
    await sender
    return got


def ring_audio(got: Received) -> list[ReplyAudio]:
    return [frame for frame in got.audio if frame.turn >= ANNOUNCEMENT_TURNS]


def model_calls(engines: Engines, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each reply asked of the (real) model from now on."""
    calls: list[object] = []
    real = engines.reply

    def reply(messages: Sequence[Message], *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        calls.append(messages)
        return real(messages, *args, **kwargs)

    monkeypatch.setattr(engines, "reply", reply)
    return calls


async def test_the_time_is_answered_without_the_model(
    ringing_config: Config, engines: Engines, piper_speech: Speech, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = model_calls(engines, monkeypatch)
    async with (
        serving_with(ringing_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
    ):
        await hello(ws)
        before = datetime.datetime.now().astimezone()
        got = await say(ws, piper_speech("What time is it?"))
        after = datetime.datetime.now().astimezone()
        async with http.get(server.http_url + "/api/turns") as response:
            [logged] = (await response.json())["turns"]
        assert logged["intent"] == "HassGetCurrentTime", "the turn log tells skill turns from model ones"
    done = got.of(TurnDone)[0]
    assert done.intent == "HassGetCurrentTime", done
    hours = {number_words(t.hour % 12 or 12) for t in (before, after)}
    assert done.reply.startswith("It's "), done.reply
    assert any(hour in done.reply for hour in hours), (done.reply, hours)
    assert "".join(m.delta for m in got.of(ReplyText)).strip() == done.reply
    assert done.timings["first_audio"] is not None
    assert [a.turn for a in got.audio] == [done.turn] * len(got.audio)
    assert sum(len(a.pcm) for a in got.audio) // 2 / 22_050 > 1.0, "the answer is spoken"
    assert calls == []


async def test_a_timer_set_by_voice_rings_on_that_client(
    ringing_config: Config, engines: Engines, piper_speech: Speech
) -> None:
    async with (
        serving_with(ringing_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
        http.ws_connect(server.ws_url) as other,
    ):
        ready = await hello(ws)
        await hello(other)
        set_at = time.time()
        got = await say(ws, piper_speech("Set a timer for three seconds."))
        done = got.of(TurnDone)[0]
        assert (done.intent, done.reply) == ("HassStartTimer", "Timer set for three seconds."), done
        [started] = got.of(Timer)
        assert (started.event, started.state, started.duration_s) == ("started", "running", 3.0)
        assert started.conversation == ready.conversation
        assert set_at + 2.5 < started.ends_at < time.time() + 3.5
        # It rings: the finished event, then the chime and the line as audio of a turn of their own.
        await receive(ws, got, until=Timer, timeout_s=15)
        finished = got.of(Timer)[-1]
        assert (finished.event, finished.id, finished.ring) == ("finished", started.id, 1), finished
        assert finished.text == "Your three second timer is done."
        assert time.time() >= started.ends_at
        ring = await _ring_audio(ws, got)
        rate = ring[0].sample_rate
        pcm = np.concatenate([np.frombuffer(frame.pcm, dtype="<i2") for frame in ring])
        notes = chime(rate)
        assert np.array_equal(pcm[: len(notes)], notes), "it starts with the chime"
        assert len(pcm) - len(notes) > rate, "then the line is spoken"
        # The other client, in another conversation, hears none of it.
        with pytest.raises(TimeoutError):
            await receive(other, Received(), until=Timer, timeout_s=1.0)


async def _ring_audio(ws: aiohttp.ClientWebSocketResponse, got: Received) -> list[ReplyAudio]:
    """Read until a whole announcement (reply_audio_end of an announcement turn) has come."""
    while not any(m.turn >= ANNOUNCEMENT_TURNS for m in got.of(ReplyAudioEnd)):
        await receive(ws, got, until=ReplyAudioEnd, timeout_s=30)
    return ring_audio(got)


async def test_a_timer_rings_after_a_restart(ringing_config: Config, engines: Engines, piper_speech: Speech) -> None:
    async with (
        serving_with(ringing_config, engines) as first,
        aiohttp.ClientSession() as http,
        http.ws_connect(first.ws_url) as ws,
    ):
        conversation = (await hello(ws)).conversation
        got = await say(ws, piper_speech("Set a timer for ten seconds."))
    [started] = got.of(Timer)
    assert started.event == "started"
    assert time.time() < started.ends_at, "the daemon stopped before the timer ended"
    await asyncio.sleep(started.ends_at - time.time() + 0.5)
    # It ended while no daemon ran: the new one rings it to the conversation when it comes back.
    async with (
        serving_with(ringing_config, engines) as second,
        aiohttp.ClientSession() as http,
        http.ws_connect(second.ws_url) as ws,
    ):
        async with http.get(second.http_url + "/api/status") as response:
            [timer] = (await response.json())["timers"]
        assert (timer["id"], timer["state"], timer["remaining_s"]) == (started.id, "ringing", 0)
        ready = await hello(ws, conversation=conversation)
        assert ready.resumed
        rang = await receive(ws, Received(), until=Timer, timeout_s=10)
        finished = rang.of(Timer)[0]
        assert (finished.event, finished.id, finished.conversation) == ("finished", started.id, conversation)
        assert finished.text == "Your ten second timer is done."
        assert len(await _ring_audio(ws, rang)) > 10


async def test_stop_silences_a_ringing_timer(ringing_config: Config, engines: Engines, piper_speech: Speech) -> None:
    async with (
        serving_with(ringing_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
    ):
        await hello(ws)
        got = await say(ws, piper_speech("Set a timer for three seconds."))
        await receive(ws, got, until=Timer, timeout_s=15)
        await _ring_audio(ws, got)
        stop = await say(ws, piper_speech("Stop it."))
        done = stop.of(TurnDone)[0]
        assert (done.intent, done.reply) == ("EdgevoiceStop", ""), done
        [cancelled] = [m for m in stop.of(Timer) if m.event == "cancelled"]
        assert (cancelled.reason, cancelled.id) == ("stopped", got.of(Timer)[0].id)
        # The ring that was playing is cut; the stop itself says nothing.
        assert any(m.turn >= ANNOUNCEMENT_TURNS for m in stop.of(Interrupted)), stop.kinds
        assert not [a for a in stop.audio if a.turn == done.turn]
        # No ring follows (it rang every 2 s).
        after = Received()
        with pytest.raises(TimeoutError):
            await receive(ws, after, until=ReplyAudioEnd, timeout_s=4.0)
        assert not [m for m in after.of(Timer) if m.event == "finished"], after.kinds
        async with http.get(server.http_url + "/api/status") as response:
            assert (await response.json())["timers"] == []


async def test_interrupt_stops_the_ringing_timers_of_its_conversation(
    ringing_config: Config, engines: Engines, piper_speech: Speech
) -> None:
    """The /talk Stop button's `interrupt` stops this conversation's ringing timer, as "stop" does; another
    conversation's timer rings on."""
    async with (
        serving_with(ringing_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
        http.ws_connect(server.ws_url) as other,
    ):
        await hello(ws)
        await hello(other)
        mine = await say(ws, piper_speech("Set a timer for three seconds."))
        theirs = await say(other, piper_speech("Set a timer for three seconds."))
        [my_timer], [their_timer] = mine.of(Timer), theirs.of(Timer)
        for client, got in ((ws, mine), (other, theirs)):
            while not any(m.event == "finished" for m in got.of(Timer)):
                await receive(client, got, until=Timer, timeout_s=15)
        await _ring_audio(ws, mine)
        await ws.send_str(Interrupt().to_text())
        after = Received()
        while not [m for m in after.of(Timer) if m.event == "cancelled"]:
            await receive(ws, after, until=Timer, timeout_s=10)
        [cancelled] = [m for m in after.of(Timer) if m.event == "cancelled"]
        assert (cancelled.id, cancelled.reason) == (my_timer.id, "stopped"), cancelled
        async with http.get(server.http_url + "/api/status") as response:
            timers = (await response.json())["timers"]
        assert [(t["id"], t["state"]) for t in timers] == [(their_timer.id, "ringing")]
        # Nothing more rings here (it rang every 2 s); the other conversation's timer rings again.
        quiet = Received()
        with pytest.raises(TimeoutError):
            await receive(ws, quiet, until=ReplyAudioEnd, timeout_s=4.0)
        assert not [m for m in quiet.of(Timer) if m.event == "finished"], quiet.kinds
        rings = [m.ring for m in theirs.of(Timer) if m.event == "finished"]
        await receive(other, theirs, until=Timer, timeout_s=10)
        again = theirs.of(Timer)[-1]
        assert (again.event, again.id) == ("finished", their_timer.id), again
        assert again.ring > max(rings)


async def test_stop_silences_a_reply(ringing_config: Config, engines: Engines, piper_speech: Speech) -> None:
    async with (
        serving_with(ringing_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
    ):
        await hello(ws)
        sender = asyncio.create_task(stream(ws, with_silence(piper_speech("Tell me a long story about a dog."))))
        got = await receive(ws, Received(), until=ReplyAudioEnd, timeout_s=120)
        await sender
        await say(ws, piper_speech("Stop it."), got)
        while len(got.of(TurnDone)) < 2:
            await receive(ws, got, until=TurnDone, timeout_s=60)
    story, stop = got.of(TurnDone)
    assert story.intent == ""
    assert any(m.turn == story.turn for m in got.of(Interrupted)), got.kinds
    assert (stop.intent, stop.reply) == ("EdgevoiceStop", ""), stop
    assert not [a for a in got.audio if a.turn == stop.turn]


async def test_the_shopping_list_is_kept_and_served(
    ringing_config: Config, engines: Engines, piper_speech: Speech
) -> None:
    async with (
        serving_with(ringing_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
    ):
        conversation = (await hello(ws)).conversation
        async with http.get(server.http_url + "/api/list") as response:
            assert await response.json() == {"items": []}
        done = (await say(ws, piper_speech("Please add milk to my shopping list."))).of(TurnDone)[0]
        assert (done.intent, done.reply) == ("HassShoppingListAddItem", "Added milk to your shopping list."), done
        async with http.get(server.http_url + "/api/list") as response:
            assert response.status == 200
            assert await response.json() == {"items": ["milk"]}
        # The conversation remembers it as it remembers the model's answers.
        history = server.conversations.open(conversation).conversation.history
        assert list(history)[-1] == (done.transcript, done.reply)


async def test_a_timer_said_with_a_pause_in_it_is_set_for_the_whole_sentence(
    ringing_config: Config, engines: Engines, piper_speech: Speech
) -> None:
    """ "Set a timer for two minutes ... and thirty seconds": the first part sounds finished, so the
    turn may be answered before the speaker goes on; whatever the pause did, one timer runs, for 150 s."""
    pause = np.zeros(int(0.6 * SAMPLE_RATE), dtype=np.float32)
    speech = np.concatenate([piper_speech("Set a timer for two minutes"), pause, piper_speech("and thirty seconds.")])
    async with (
        serving_with(ringing_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
    ):
        await hello(ws)
        got = await say(ws, speech)
        # A turn answered at the pause is followed by the whole sentence's turn.
        with contextlib.suppress(TimeoutError):
            while not any("thirty" in done.reply for done in got.of(TurnDone)):
                await receive(ws, got, until=TurnDone, timeout_s=20)
        async with http.get(server.http_url + "/api/status") as response:
            timers = (await response.json())["timers"]
    replies = [(done.intent, done.reply) for done in got.of(TurnDone)]
    assert [(t["duration_s"], t["state"]) for t in timers] == [(150.0, "running")], (timers, replies)
    assert replies[-1] == ("HassStartTimer", "Timer set for two minutes and thirty seconds."), replies


async def test_a_sum_and_a_unit_question_are_worked_out_without_the_model(
    server_config: Config, engines: Engines, piper_speech: Speech, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = model_calls(engines, monkeypatch)
    async with (
        serving_with(server_config, engines) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as ws,
    ):
        await hello(ws)
        sum_turn = (await say(ws, piper_speech("What is seven times eight?"))).of(TurnDone)[0]
        unit_turn = (await say(ws, piper_speech("How many ounces are in a pound?"))).of(TurnDone)[0]
    assert sum_turn.intent == "EdgevoiceCalculate", sum_turn
    assert "56" in sum_turn.reply, sum_turn.reply
    assert unit_turn.intent == "EdgevoiceConvertUnits", unit_turn
    assert "16 ounces" in unit_turn.reply, unit_turn.reply
    assert calls == []
