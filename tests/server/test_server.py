"""The daemon over real loopback HTTP and WebSocket, with the real models."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from edgevoice import protocol
from edgevoice.audio.pcm import Samples, read_audio, resample
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.worker import EngineBusy
from edgevoice.protocol import Busy, Bye, Gap, Interrupted, ReplyText, Transcript, TurnDone
from edgevoice.server.app import Server
from tests.conftest import with_silence
from tests.support.daemon import serving_with
from tests.support.wire import Received, expect, expect_error, hello, receive, stream
from tests.test_cli import BUNDLED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def question() -> Samples:
    return with_silence(read_audio(BUNDLED), 0.5, 1.5)


async def test_healthz_and_pages(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/healthz") as response:
            assert response.status == 200
            health = await response.json()
        assert health["status"] == "ok"
        assert health["protocol"] == protocol.PROTOCOL_VERSION
        assert health["clients"] == 0
        async with http.ws_connect(server.ws_url) as ws:
            await hello(ws)
            async with http.get(server.http_url + "/healthz") as response:
                (connection,) = (await response.json())["connections"]
            assert connection["name"] == "test"
            assert connection["frames_received"] == 0
        async with http.get(server.http_url + "/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "/healthz" in await (await http.get(server.http_url + "/static/index.js")).text()


async def test_one_turn_over_the_socket(server: Server, question: Samples) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        ready = await hello(ws)
        assert ready.sample_rate == 16_000
        assert ready.resumed is False
        assert protocol.valid_conversation_id(ready.conversation)
        sender = asyncio.create_task(stream(ws, question))
        got = await receive(ws, Received(), until=TurnDone)
        await sender
    kinds = got.kinds
    for earlier, later in [
        ("speech_started", "speech_stopped"),
        ("speech_stopped", "transcript"),
        ("transcript", "reply_text"),
        ("reply_audio_start", "reply_audio_end"),
        ("reply_audio_end", "turn_done"),
    ]:
        assert kinds.index(earlier) < kinds.index(later), kinds
    assert "capital" in got.of(Transcript)[0].text.lower()
    done = got.of(TurnDone)[0]
    assert done.reply == "".join(e.delta for e in got.of(ReplyText)).strip()
    timings = done.timings
    assert 0 <= timings["stt_done"] <= timings["first_token"] <= timings["first_audio"]
    # Reply audio: the header names the turn and the voice's rate, chunks of at most ~100 ms, in order.
    assert [a.seq for a in got.audio] == list(range(len(got.audio)))
    assert {(a.turn, a.sample_rate) for a in got.audio} == {(1, 22_050)}
    assert max(len(a.pcm) // 2 for a in got.audio) <= 22_050 // 10
    seconds = sum(len(a.pcm) // 2 for a in got.audio) / 22_050
    assert seconds > 0.15 * len(done.reply.split())


async def test_other_rates_are_resampled(server: Server, question: Samples) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        ready = await hello(ws, rate=48_000)
        assert ready.max_frame_samples == 12_000
        await stream(ws, resample(question, 16_000, 48_000), rate=48_000)
        got = await receive(ws, Received(), until=Transcript)
    assert "capital" in got.of(Transcript)[0].text.lower()


async def test_bad_messages_get_errors_and_the_connection_goes_on(server: Server) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await ws.send_str("{not json")
        await expect_error(ws, "bad_json")
        await ws.send_str("[1, 2]")
        await expect_error(ws, "bad_message")
        await ws.send_str('{"type": "dance"}')
        await expect_error(ws, "unknown_type")
        await ws.send_str('{"type": "hello", "pad": "' + "x" * 5000 + '"}')
        await expect_error(ws, "too_large")
        await ws.send_str('{"type": "hello", "protocol": 1, "sample_rate": "16000"}')
        await expect_error(ws, "bad_message")
        await hello(ws)
        await ws.send_str(protocol.Hello(16_000).to_text())
        await expect_error(ws, "bad_message")
        await ws.send_bytes(b"\x00\x00")
        await expect_error(ws, "bad_frame")
        await ws.send_bytes(protocol.encode_client_audio(0, b"\x00\x00\x00"))
        await expect_error(ws, "bad_frame")
        await ws.send_bytes(protocol.encode_client_audio(1, bytes(2 * 4001)))
        error = await expect_error(ws, "frame_too_large")
        assert error.fatal is False
        await ws.send_bytes(protocol.encode_client_audio(2, bytes(640)))
        await ws.send_bytes(protocol.encode_client_audio(5, bytes(640)))
        assert await expect(ws, Gap) == Gap(missing=2, lost_total=2, received=2)
        await ws.send_str('{"type": "bye"}')
        assert await expect(ws, Bye) == Bye()
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == protocol.CLOSE_NORMAL


@pytest.mark.parametrize(
    ("first", "code", "close_code"),
    [
        (b"\x00\x00\x00\x00" + bytes(640), "no_hello", protocol.CLOSE_PROTOCOL_ERROR),
        ('{"type": "hello", "protocol": 2, "sample_rate": 16000}', "unsupported_protocol", 1002),
        ('{"type": "hello", "protocol": 1, "sample_rate": 96000}', "bad_sample_rate", 1003),
        ('{"type": "hello", "protocol": 1, "sample_rate": 16000, "conversation": "../etc"}', "bad_conversation", 1002),
        ('{"type": "hello", "protocol": 1, "sample_rate": 16000, "conversation": "mic"}', "bad_conversation", 1002),
    ],
)
async def test_fatal_errors_close_with_a_code(server: Server, first: bytes | str, code: str, close_code: int) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
        error = await expect_error(ws, code)
        assert error.fatal is True
        message = await asyncio.wait_for(ws.receive(), 10)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == close_code


async def test_oversized_frame_closes_with_1009(server: Server) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await hello(ws)
        await ws.send_bytes(bytes(protocol.MAX_FRAME_BYTES + 1))
        message = await asyncio.wait_for(ws.receive(), 10)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == protocol.CLOSE_TOO_BIG
    await _still_serving(server)


async def test_the_largest_legal_frame_at_48_khz_is_taken(server: Server) -> None:
    """ready advertises 12,000 samples at 48 kHz: a frame of exactly that (24,004 bytes, the cap) is audio."""
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        ready = await hello(ws, rate=48_000)
        largest = protocol.encode_client_audio(0, bytes(2 * ready.max_frame_samples))
        assert len(largest) == protocol.MAX_FRAME_BYTES
        await ws.send_bytes(largest)
        await ws.send_bytes(protocol.encode_client_audio(2, bytes(2 * 480)))
        # a gap report proves both frames were read as audio, and the socket is still open
        assert await expect(ws, Gap) == Gap(missing=1, lost_total=1, received=2)
        await ws.send_str(protocol.Bye().to_text())
        assert await expect(ws, Bye) == Bye()


async def _still_serving(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/healthz") as response:
            assert response.status == 200
        async with http.ws_connect(server.ws_url) as ws:
            await hello(ws)


async def test_origin_is_checked(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url, origin="http://evil.example")
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(server.ws_url, origin=f"http://127.0.0.1:{server.port + 1}")
        async with http.ws_connect(server.ws_url, origin=f"http://127.0.0.1:{server.port}") as ws:
            await hello(ws)
        async with http.ws_connect(server.ws_url, origin=f"http://localhost:{server.port}") as ws:
            await hello(ws)


async def test_too_many_clients_get_1013(server_config: Config, engines: Engines) -> None:
    async with (
        serving_with(server_config, engines, max_clients=1) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url) as first,
    ):
        await hello(first)
        async with http.ws_connect(server.ws_url) as second:
            await second.send_str(protocol.Hello(16_000, "test").to_text())
            message = await asyncio.wait_for(second.receive(), 10)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert second.close_code == protocol.CLOSE_TRY_LATER
        await first.send_str('{"type": "bye"}')
        await expect(first, Bye)


async def test_two_clients_keep_their_conversations_apart(
    server: Server, question: Samples, espeak: Callable[[str], Samples]
) -> None:
    other = with_silence(espeak("Turn on the kitchen lights, please."), 0.5, 1.5)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.ws_url) as a, http.ws_connect(server.ws_url) as b:
            ready_a, ready_b = await hello(a), await hello(b)
            assert ready_a.conversation != ready_b.conversation
            got = await asyncio.gather(
                _turn(a, question),
                _turn(b, other),
            )
        assert "capital" in got[0].of(Transcript)[0].text.lower()
        assert "kitchen" in got[1].of(Transcript)[0].text.lower()
        assert all(len(g.of(TurnDone)) == 1 for g in got)
        assert {a.turn for g in got for a in g.audio} == {1}
        # Each conversation remembers only its own exchange, and a new connection resumes it.
        async with http.ws_connect(server.ws_url) as again:
            resumed = await hello(again, conversation=ready_b.conversation)
            assert resumed.resumed is True
    store = server.conversations
    history_a = store.open(ready_a.conversation).conversation.history
    history_b = store.open(ready_b.conversation).conversation.history
    assert [said for said, _ in history_a] == [got[0].of(Transcript)[0].text]
    assert [said for said, _ in history_b] == [got[1].of(Transcript)[0].text]


async def _turn(ws: aiohttp.ClientWebSocketResponse, samples: Samples) -> Received:
    sender = asyncio.create_task(stream(ws, samples))
    got = await receive(ws, Received(), until=TurnDone, timeout_s=120)
    await sender
    return got


async def test_conversation_survives_a_restart(server_config: Config, engines: Engines, question: Samples) -> None:
    async with (
        serving_with(server_config, engines) as first,
        aiohttp.ClientSession() as http,
        http.ws_connect(first.ws_url) as ws,
    ):
        conversation = (await hello(ws)).conversation
        said = (await _turn(ws, question)).of(TurnDone)[0]
    async with serving_with(server_config, engines) as second:
        async with aiohttp.ClientSession() as http, http.ws_connect(second.ws_url) as ws:
            ready = await hello(ws, conversation=conversation)
            assert ready.resumed is True
            assert ready.conversation == conversation
        history = second.conversations.open(conversation).conversation.history
        assert list(history) == [(said.transcript, said.reply)]


async def test_resuming_takes_the_conversation_over(server: Server) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as old:
        conversation = (await hello(old)).conversation
        async with http.ws_connect(server.ws_url) as new:
            await hello(new, conversation=conversation)
            message = await asyncio.wait_for(old.receive(), 10)
            assert message.type == aiohttp.WSMsgType.CLOSE, message
            assert message.data == protocol.CLOSE_TAKEN_OVER, message


async def test_interrupt_stops_the_reply(server: Server, question: Samples) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await hello(ws)
        sender = asyncio.create_task(stream(ws, question))
        got = await receive(ws, Received(), until=ReplyText)
        await ws.send_str('{"type": "interrupt"}')
        await receive(ws, got, until=TurnDone)
        await sender
    interrupted = got.of(Interrupted)
    assert len(interrupted) == 1
    assert interrupted[0].turn == 1
    assert got.of(TurnDone)[0].interrupted is True


async def test_busy_engine_is_reported(server: Server, question: Samples) -> None:
    worker = server.engines.stt_worker
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    running = asyncio.Event()

    def hold() -> None:
        loop.call_soon_threadsafe(running.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=60)

    held = [worker.submit(hold)]
    await asyncio.wait_for(running.wait(), 10)  # the engine thread took the first job: the queue has room again
    while True:  # fill the whole wait queue
        try:
            held.append(worker.submit(hold))
        except EngineBusy:
            break
    assert worker.waiting > 0
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
            await hello(ws)
            await stream(ws, question)
            got = await receive(ws, Received(), until=TurnDone)
        busy = got.of(Busy)
        assert len(busy) == 1
        assert "busy" in busy[0].message
        assert got.of(TurnDone)[0].transcript == ""
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(*held), 30)
    await _still_serving(server)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate made as the README says, for localhost."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    names = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            names,
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_tls_serves_https_and_wss(
    server_config: Config, engines: Engines, self_signed: tuple[Path, Path]
) -> None:
    """The daemon serves HTTPS and WSS with a self-signed certificate."""
    cert, key = self_signed
    async with serving_with(server_config, engines, tls_cert=cert, tls_key=key) as server:
        assert server.http_url.startswith("https://")
        assert server.ws_url.startswith("wss://")
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(server.http_url + "/healthz", ssl=trust) as response:
                assert (await response.json())["status"] == "ok"
            async with http.ws_connect(server.ws_url, ssl=trust, origin=f"https://localhost:{server.port}") as ws:
                await hello(ws)
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(server.http_url + "/healthz")  # not trusted without the certificate
