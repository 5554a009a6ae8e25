"""/api/* and /metrics on a real daemon with the real models, after a real turn over the socket."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest

from edgevoice import __version__
from edgevoice.audio.pcm import Samples, read_audio
from edgevoice.protocol import TurnDone
from edgevoice.server.app import Server
from tests.conftest import with_silence
from tests.support.wire import Received, hello, receive, stream
from tests.test_cli import BUNDLED

pytestmark = pytest.mark.slow
SAMPLE = re.compile(r'^edgevoice_[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]+="[^"]*",?)*\})? (NaN|[-+]?[0-9.e+-]+)$')
TIMED_STAGES = ("stt_done", "first_token", "first_audio", "last_audio")


@pytest.fixture(scope="module")
def question() -> Samples:
    return with_silence(read_audio(BUNDLED), 0.5, 1.5)


async def _get_json(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with asyncio.timeout(30), http.get(url) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def _next_event(response: aiohttp.ClientResponse, kind: str) -> dict[str, Any]:
    """Read Server-Sent Events until one named kind; return its data."""
    async with asyncio.timeout(60):
        name = ""
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name == kind:
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return data


async def test_a_turn_shows_in_every_route(server: Server, question: Samples) -> None:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(10):
            events = await http.get(server.http_url + "/api/events")
        assert events.content_type == "text/event-stream"
        async with asyncio.timeout(10):
            assert await events.content.readline() == b": subscribed\n"
        async with http.ws_connect(server.ws_url) as ws:
            ready = await hello(ws)
            sender = asyncio.create_task(stream(ws, question))
            got = await receive(ws, Received(), until=TurnDone)
            await asyncio.wait_for(sender, 30)
        done = got.of(TurnDone)[0]
        fed = await _next_event(events, "turn_done")
        events.close()
        assert fed["conversation"] == ready.conversation
        assert fed["client"] == "test"
        assert fed["transcript"] == done.transcript

        turns = await _get_json(http, server.http_url + "/api/turns?limit=5")
        (turn,) = turns["turns"]
        assert turn["conversation"] == ready.conversation
        assert turn["client"] == "test"
        assert "capital" in turn["transcript"].lower()
        assert turn["reply"] == done.reply
        for stage in TIMED_STAGES:
            assert turn["timings_ms"][stage] == pytest.approx(done.timings[stage], abs=0.2)
        assert turn["timings_ms"]["interrupted"] is None

        latency = await _get_json(http, server.http_url + "/api/latency?window=600")
        assert latency["turns"] == 1
        for stage in TIMED_STAGES:
            assert latency["stages"][stage]["n"] == 1
            assert latency["stages"][stage]["p99"] == pytest.approx(done.timings[stage], abs=0.2)
        assert latency["stages"]["interrupted"]["n"] == 0

        async with asyncio.timeout(30), http.get(server.http_url + "/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert [line for line in samples if not SAMPLE.match(line)] == []
        assert "edgevoice_turns_total 1" in samples
        assert f'edgevoice_build_info{{version="{__version__}"}} 1' in samples
        assert 'edgevoice_turn_stage_seconds_count{stage="first_audio"} 1' in samples
        # After a turn the model may still be reading the next turn's prompt ahead: 0 or 1, both fine.
        assert {'edgevoice_engine_busy{engine="llm"} 0', 'edgevoice_engine_busy{engine="llm"} 1'} & set(samples)
        assert 'edgevoice_engine_busy{engine="stt"} 0' in samples

        # The model's reading ahead ends on its own (0.05 s a step, 30 s at most); then every engine is idle.
        for _ in range(600):
            status = await _get_json(http, server.http_url + "/api/status")
            if status["engines"]["llm"]["state"] == "idle":
                break
            await asyncio.sleep(0.05)
        assert set(status["models"]) == {"stt", "llm", "tts"}
        for model in status["models"].values():
            assert all(f["bytes"] > 0 for f in model["files"]), model
        assert status["engines"] == {name: {"state": "idle", "waiting": 0} for name in ("stt", "llm", "tts")}
        assert status["version"] == __version__
        assert status["clients"] == 0
        assert status["memory"]["rss"] > 0
        assert status["cpu"]["seconds"] > 0


async def test_bad_parameters_get_400(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        assert "error" in await _get_json(http, server.http_url + "/api/turns?limit=ten", status=400)
        assert "error" in await _get_json(http, server.http_url + "/api/latency?window=-5", status=400)
        assert "error" in await _get_json(http, server.http_url + "/api/latency?window=nan", status=400)
        assert (await _get_json(http, server.http_url + "/api/turns?limit=99999"))["limit"] == 1000
        assert (await _get_json(http, server.http_url + "/api/turns?limit=0")) == {"limit": 1, "turns": []}


async def test_the_event_feed_ends_when_the_server_stops(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(10):
            events = await http.get(server.http_url + "/api/events")
            assert await events.content.readline() == b": subscribed\n"
            assert await events.content.readline() == b"\n"
        async with asyncio.timeout(10):
            await server.stop()
            assert await events.content.read() == b""  # the stream ended; no wait for a heartbeat
