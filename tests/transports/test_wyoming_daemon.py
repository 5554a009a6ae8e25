"""Wyoming in the daemon: its port beside /ws, the same engines and conversations, /healthz, mDNS on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid

import aiohttp
import pytest
from wyoming.asr import Transcript
from wyoming.client import AsyncTcpClient
from wyoming.handle import Handled
from wyoming.info import Describe, Info
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edgevoice.audio.pcm import SAMPLE_RATE, read_audio, to_pcm16
from edgevoice.bench.wer import word_error_rate
from edgevoice.config import Config, WyomingConfig
from edgevoice.discovery import WYOMING_SERVICE_TYPE
from edgevoice.engines.engines import Engines
from edgevoice.server.app import Server
from edgevoice.skills.speech import number_words
from tests.server.test_skill_turns import model_calls
from tests.support.daemon import serving_with
from tests.test_cli import BUNDLED as QUESTION
from tests.test_discovery import LOOPBACK, Changes
from tests.transports.test_wyoming import read_until, transcribe


async def test_the_daemon_serves_wyoming_on_its_engines_and_conversations(server: Server) -> None:
    assert server.wyoming is not None
    assert server.wyoming.port not in (0, 10700, server.port)  # a daemon on a free port takes a free one here too
    async with AsyncTcpClient("127.0.0.1", server.wyoming.port, read_timeout=60) as connection:
        await connection.write_event(Describe().event())
        [event] = await read_until(connection, "info")
    assert Info.from_event(event).handle[0].name == "edgevoice"
    events = await transcribe(server.wyoming, to_pcm16(read_audio(QUESTION)).astype("<i2").tobytes(), SAMPLE_RATE, 2, 1)
    assert word_error_rate("What is the capital of France?", Transcript.from_event(events[2]).text) < 0.3
    async with AsyncTcpClient("127.0.0.1", server.wyoming.port, read_timeout=60) as connection:
        await connection.write_event(Transcript(text="Hello.", context={"conversation_id": "from-ha"}).event())
        [event] = await read_until(connection, "handled")
    assert Handled.from_event(event).text
    # The daemon's conversation store: the one /ws resumes conversations from.
    conversation = server.conversations.open("from-ha").conversation
    assert [said for said, _ in conversation.history] == ["Hello."]
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/healthz") as response:
            health = await response.json()
        assert response.status == 200
        async with http.get(server.http_url + "/api/status") as response:
            status = await response.json()
    # What the dashboard shows beside each engine: where it runs.
    assert {kind: (e["location"], e["ok"]) for kind, e in status["engine_locations"].items()} == {
        "stt": ("local", True),
        "llm": ("local", True),
        "tts": ("local", True),
    }
    assert health["wyoming"] == {"port": server.wyoming.port, "clients": 0}
    assert {(e["kind"], e["location"], e["ok"]) for e in health["engines"]} == {
        ("stt", "local", True),
        ("llm", "local", True),
        ("tts", "local", True),
    }


async def test_wyoming_off_opens_no_port(server_config: Config, engines: Engines) -> None:
    config = dataclasses.replace(server_config, wyoming=WyomingConfig(port=0))
    async with serving_with(config, engines) as running:
        assert running.wyoming is None


async def test_the_daemon_advertises_wyoming_for_home_assistant(server_config: Config, engines: Engines) -> None:
    changes = Changes()
    name = f"test-{uuid.uuid4().hex[:10]}"
    zeroconf = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    try:
        browser = AsyncServiceBrowser(zeroconf.zeroconf, WYOMING_SERVICE_TYPE, handlers=[changes])
        async with serving_with(server_config, engines, discovery=True, name=name) as running:
            assert running.wyoming is not None
            instance = f"{name}.{WYOMING_SERVICE_TYPE}"
            async with asyncio.timeout(10):
                await changes.wait_for(instance, ServiceStateChange.Added)
                info = AsyncServiceInfo(WYOMING_SERVICE_TYPE, instance)
                assert await info.async_request(zeroconf.zeroconf, 2000)
            assert info.port == running.wyoming.port
            assert info.parsed_addresses() == [LOOPBACK]
        async with asyncio.timeout(5):
            await changes.wait_for(instance, ServiceStateChange.Removed)
            await browser.async_cancel()
    finally:
        async with asyncio.timeout(5):
            await zeroconf.async_close()


async def handle(server: Server, text: str, conversation_id: str) -> Handled:
    assert server.wyoming is not None
    async with AsyncTcpClient("127.0.0.1", server.wyoming.port, read_timeout=60) as connection:
        await connection.write_event(Transcript(text=text, context={"conversation_id": conversation_id}).event())
        [event] = await read_until(connection, "handled")
    return Handled.from_event(event)


async def test_wyoming_handle_is_answered_by_the_skills(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = model_calls(server.engines, monkeypatch)
    before = datetime.datetime.now().astimezone()
    time_now = await handle(server, "What time is it?", "from-ha")
    after = datetime.datetime.now().astimezone()
    assert time_now.text.startswith("It's "), time_now.text
    assert any(number_words(t.hour % 12 or 12) in time_now.text for t in (before, after)), time_now.text
    set_timer = await handle(server, "Set a pasta timer for ten minutes.", "from-ha")
    assert set_timer.text == "Pasta timer set for ten minutes."
    assert calls == [], "the skills answered without the model"
    # One Skills for the daemon: the timer is the one /api/status shows, in the Wyoming conversation.
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "/api/status") as response:
        [timer] = (await response.json())["timers"]
    assert (timer["name"], timer["conversation"], timer["state"]) == ("pasta", "from-ha", "running")
    stop = await handle(server, "Stop.", "from-ha")
    assert stop.text == ""
    history = server.conversations.open("from-ha").conversation.history
    assert [said for said, _ in history] == ["What time is it?", "Set a pasta timer for ten minutes."]
    assert history[1][1] == set_timer.text
