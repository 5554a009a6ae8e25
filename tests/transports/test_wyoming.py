"""The Wyoming server on the real engines, spoken to with the wyoming library's own AsyncTcpClient."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from edgevoice.audio.pcm import SAMPLE_RATE, read_audio, resample, to_pcm16
from edgevoice.bench.wer import word_error_rate
from edgevoice.config import Config
from edgevoice.conversation import copies_earlier
from edgevoice.engines.engines import Engines
from edgevoice.server.conversations import ConversationStore
from edgevoice.transports.wyoming import WyomingServer
from tests.test_cli import BUNDLED as QUESTION

TIMEOUT_S = 60.0


@pytest.fixture
async def wyoming(server_config: Config, engines: Engines) -> AsyncIterator[WyomingServer]:
    server = await start_wyoming(server_config, engines)
    try:
        yield server
    finally:
        await server.stop()


async def start_wyoming(config: Config, engines: Engines, **settings: object) -> WyomingServer:
    config = dataclasses.replace(config, wyoming=dataclasses.replace(config.wyoming, **settings))  # type: ignore[arg-type]
    llm = config.llm
    store = ConversationStore(config.data_dir / "conversations", llm.system_prompt, llm.history_turns, 8)
    server = WyomingServer(config, lambda: engines, store)
    await server.start("127.0.0.1", 0)
    return server


def client(server: WyomingServer) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", server.port, connect_timeout=10, read_timeout=TIMEOUT_S)


async def read_until(connection: AsyncTcpClient, kind: str) -> list[Event]:
    """Events up to and including the first of kind; fails on an error event or a close."""
    events: list[Event] = []
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            event = await connection.read_event()
            assert event is not None, f"closed before {kind}: {[e.type for e in events]}"
            assert not Error.is_type(event.type), event.data
            events.append(event)
            if event.type == kind:
                return events


async def transcribe(server: WyomingServer, pcm: bytes, rate: int, width: int, channels: int) -> list[Event]:
    async with client(server) as connection:
        await connection.write_event(Transcribe(language="en").event())
        await connection.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = rate // 10 * width * channels
        for start in range(0, len(pcm), step):
            await connection.write_event(AudioChunk(rate, width, channels, pcm[start : start + step]).event())
        await connection.write_event(AudioStop().event())
        return await read_until(connection, TranscriptStop().event().type)


async def test_describe_lists_asr_tts_and_handle(wyoming: WyomingServer) -> None:
    async with client(wyoming) as connection:
        await connection.write_event(Describe().event())
        [event] = await read_until(connection, "info")
    info = Info.from_event(event)
    [asr] = info.asr
    assert asr.installed
    assert asr.supports_transcript_streaming
    assert asr.models[0].name == "ggml-tiny.en"
    assert asr.models[0].languages == ["en"]
    [tts] = info.tts
    assert tts.supports_synthesize_streaming
    assert tts.voices[0].name == "en_US-joe-medium"
    [handle] = info.handle
    assert handle.installed
    assert handle.models[0].name.startswith("SmolLM2")


@pytest.mark.parametrize(("rate", "channels"), [(16_000, 1), (44_100, 2)])
async def test_transcribes_real_speech_streaming_its_text(wyoming: WyomingServer, rate: int, channels: int) -> None:
    speech = resample(read_audio(QUESTION), SAMPLE_RATE, rate)
    pcm = np.repeat(to_pcm16(speech)[:, None], channels, axis=1).reshape(-1).astype("<i2").tobytes()
    events = await transcribe(wyoming, pcm, rate, 2, channels)
    kinds = [event.type for event in events]
    assert kinds == ["transcript-start", "transcript-chunk", "transcript", "transcript-stop"], kinds
    assert TranscriptStart.from_event(events[0]).language == "en"
    chunk = TranscriptChunk.from_event(events[1]).text
    text = Transcript.from_event(events[2]).text
    assert chunk == text
    assert word_error_rate("What is the capital of France?", text) < 0.3, text
    assert TranscriptStop.is_type(events[3].type)


def synthesized(events: list[Event]) -> tuple[int, np.ndarray]:
    starts = [AudioStart.from_event(e) for e in events if AudioStart.is_type(e.type)]
    assert starts
    assert {(s.width, s.channels) for s in starts} == {(2, 1)}
    pcm = b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))
    return starts[0].rate, np.frombuffer(pcm, dtype="<i2")


SPOKEN = "The kitchen lights are on and the front door is locked."
"""Piper's voice varies from run to run and tiny.en mishears a word now and then ("The catch in
lights are on."): in eleven words one slip stays under the bar, in five it did not."""


async def test_synthesis_is_speech_that_says_the_text(wyoming: WyomingServer) -> None:
    async with client(wyoming) as connection:
        await connection.write_event(Synthesize(text=SPOKEN).event())
        events = await read_until(connection, "audio-stop")
    rate, pcm = synthesized(events)
    assert rate == 22_050
    seconds = len(pcm) / rate
    assert 1.5 < seconds < 8.0, seconds
    assert np.sqrt(np.mean((pcm / 32768.0) ** 2)) > 0.01  # not silence
    heard = await transcribe(wyoming, pcm.astype("<i2").tobytes(), rate, 2, 1)
    text = Transcript.from_event(heard[2]).text
    assert word_error_rate(SPOKEN, text) < 0.3, text


async def test_streamed_text_is_spoken_before_the_stream_ends(wyoming: WyomingServer) -> None:
    async with client(wyoming) as connection:
        await connection.write_event(SynthesizeStart().event())
        await connection.write_event(SynthesizeChunk(text="Good morning, it is sunny").event())
        await connection.write_event(SynthesizeChunk(text=" outside. ").event())
        # The first words come back while the rest of the reply is still being written.
        first = await read_until(connection, "audio-stop")
        await connection.write_event(SynthesizeChunk(text="Take a hat.").event())
        await connection.write_event(Synthesize(text="Good morning, it is sunny outside. Take a hat.").event())
        await connection.write_event(SynthesizeStop().event())
        rest = await read_until(connection, SynthesizeStopped().event().type)
    _, early = synthesized(first)
    assert len(early) > 0.3 * 22_050
    _, late = synthesized(rest)
    total_s = (len(early) + len(late)) / 22_050
    assert 1.5 < total_s < 8.0, total_s
    # The repeated whole text was not spoken a second time.
    assert sum(AudioStart.is_type(e.type) for e in first + rest) <= 4


async def test_handle_remembers_the_previous_turn_of_its_conversation(
    wyoming: WyomingServer, server_config: Config
) -> None:
    async def ask(text: str, conversation_id: str) -> Handled:
        async with client(wyoming) as connection:
            await connection.write_event(Transcript(text=text, context={"conversation_id": conversation_id}).event())
            [event] = await read_until(connection, "handled")
        return Handled.from_event(event)

    first = await ask("My name is Zoe.", "01HS6SP2XD1E5HEHVDZE8R2WMR")
    assert first.text
    assert first.context == {"conversation_id": "01HS6SP2XD1E5HEHVDZE8R2WMR"}
    second = await ask("What is my name?", "01HS6SP2XD1E5HEHVDZE8R2WMR")
    assert second.text
    other = await ask("Hello.", "another")
    assert other.text
    conversation = wyoming.store.open("01HS6SP2XD1E5HEHVDZE8R2WMR").conversation
    # The second turn's prompt held the first exchange: both are in its history, in order (the
    # second unless its reply copied the first, which tiny models do: such a reply is not kept).
    copied = copies_earlier([("My name is Zoe.", first.text)], "What is my name?", second.text)
    kept = ["My name is Zoe."] + ([] if copied else ["What is my name?"])
    assert [said for said, _ in conversation.history] == kept
    assert conversation.history[0][1] == first.text
    assert conversation.messages("next")[1].content == "My name is Zoe."
    assert [said for said, _ in wyoming.store.open("another").conversation.history] == ["Hello."]
    saved = json.loads((server_config.data_dir / "conversations" / "01HS6SP2XD1E5HEHVDZE8R2WMR.json").read_text())
    assert len(saved["history"]) == len(kept)


async def raw_exchange(server: WyomingServer, data: bytes) -> tuple[list[Event], bool]:
    """Send raw bytes, read events until the server closes: what it said, and whether it closed."""
    connection = client(server)
    await connection.connect()
    try:
        assert connection._writer is not None
        connection._writer.write(data)
        await connection._writer.drain()
        events: list[Event] = []
        async with asyncio.timeout(TIMEOUT_S):
            while (event := await connection.read_event()) is not None:
                events.append(event)
        return events, True
    finally:
        await connection.disconnect()


async def assert_still_serving(server: WyomingServer) -> None:
    async with client(server) as connection:
        await connection.write_event(Describe().event())
        await read_until(connection, "info")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is not json\n", "bad_event"),
        (b'{"data": {}}\n', "bad_event"),  # no type
        (b'["a", "list"]\n', "bad_event"),
        (b'{"type": "audio-chunk", "payload_length": 999999999}\n', "too_large"),
        (b'{"type": "synthesize", "data_length": "many"}\n', "bad_event"),
        (b"x" * 70_000 + b"\n", "too_large"),
        (b'{"type": "audio-stop"}\n', "bad_event"),
        (b'{"type": "audio-start", "data": {"rate": -5, "width": 2, "channels": 1}}\n', "bad_audio"),
    ],
)
async def test_malformed_input_gets_a_clear_error_and_a_close(wyoming: WyomingServer, data: bytes, code: str) -> None:
    events, closed = await raw_exchange(wyoming, data)
    assert closed
    assert [event.type for event in events] == ["error"]
    error = Error.from_event(events[0])
    assert error.code == code, error
    assert error.text
    await assert_still_serving(wyoming)


async def test_a_client_that_vanishes_mid_stream_leaves_the_server_serving(wyoming: WyomingServer) -> None:
    pcm = to_pcm16(read_audio(QUESTION)).astype("<i2").tobytes()
    # Mid-audio: half a question, then gone.
    connection = client(wyoming)
    await connection.connect()
    await connection.write_event(Transcribe().event())
    await connection.write_event(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
    await connection.write_event(AudioChunk(SAMPLE_RATE, 2, 1, pcm[: len(pcm) // 2]).event())
    await connection.disconnect()
    # Mid-synthesis: a long text asked for, the first audio heard, then gone.
    connection = client(wyoming)
    await connection.connect()
    await connection.write_event(Synthesize(text="Once upon a time there was a dog. " * 20).event())
    await read_until(connection, "audio-chunk")
    await connection.disconnect()
    async with asyncio.timeout(TIMEOUT_S):
        while wyoming.clients:  # noqa: ASYNC110  the count is the server's, it signals no change
            await asyncio.sleep(0.05)
    events = await transcribe(wyoming, pcm, SAMPLE_RATE, 2, 1)
    assert word_error_rate("What is the capital of France?", Transcript.from_event(events[2]).text) < 0.3


async def test_connections_over_the_cap_are_told_and_closed(server_config: Config, engines: Engines) -> None:
    server = await start_wyoming(server_config, engines, max_clients=1)
    try:
        async with client(server) as first:
            await first.write_event(Describe().event())
            await read_until(first, "info")
            events, closed = await raw_exchange(server, b"")
            assert closed
            assert [Error.from_event(e).code for e in events] == ["busy"]
        await assert_still_serving(server)
    finally:
        await server.stop()


async def test_an_idle_connection_is_closed(server_config: Config, engines: Engines) -> None:
    server = await start_wyoming(server_config, engines, idle_timeout_s=0.3)
    try:
        async with client(server) as connection:
            await connection.write_event(Transcribe().event())
            async with asyncio.timeout(10):
                assert await connection.read_event() is None
    finally:
        await server.stop()


async def test_stop_ends_open_connections(server_config: Config, engines: Engines) -> None:
    server = await start_wyoming(server_config, engines)
    connection = client(server)
    await connection.connect()
    await connection.write_event(Describe().event())
    await read_until(connection, "info")
    await asyncio.wait_for(server.stop(), 10)
    async with asyncio.timeout(10):
        assert await connection.read_event() is None
    await connection.disconnect()
