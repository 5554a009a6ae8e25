"""The browser voice client (/talk) in a real headless Chromium, talking to a real daemon.

Chromium's fake microphone plays a WAV file through getUserMedia (with its echo canceller, noise
suppressor and gain control on), so the page's whole path runs: capture worklet, 16 kHz frames over
/ws, the daemon's turn, and reply audio scheduled on the page's AudioContext.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from edgevoice.audio.pcm import SAMPLE_RATE, read_audio, to_pcm16, write_wav
from edgevoice.server import DASHBOARD_DIR, Server
from tests.browser_cdp import Page, chromium_path, launch
from tests.conftest import with_silence
from tests.test_cli import BUNDLED

JS_TYPES = {"text/javascript", "application/javascript"}
STATE = "window.edgevoiceTalk"


def _clip(folder: Path) -> Path:
    """The bundled question between 2 s of silence. `%noloop`: Chromium plays it once, then silence."""
    path = folder / "question.wav"
    write_wav(path, to_pcm16(with_silence(read_audio(BUNDLED), 2.0, 2.0)), SAMPLE_RATE)
    return path


def _chromium_args(clip: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]


def _check_sent(sent: list[str | bytes], conversation: str | None, capture_rate: int) -> None:
    """hello first, then audio: a uint32 sequence from 0, and 1024 capture-rate samples' worth of 16 kHz per frame."""
    assert isinstance(sent[0], str), sent[:1]
    hello = json.loads(sent[0])
    expected = {"type": "hello", "protocol": 1, "sample_rate": 16000, "client": "browser"}
    assert {k: hello.get(k) for k in expected} == expected, hello
    assert hello.get("conversation") == conversation, hello
    frames = [m for m in sent if isinstance(m, bytes)]
    assert [struct.unpack_from("<I", f)[0] for f in frames] == list(range(len(frames)))
    assert all(len(f) % 2 == 0 for f in frames)
    # The first frame is shorter by the resampling filter's delay; then 341 or 342 from 48 kHz, 371 or 372 from 44.1.
    exact = 1024 * 16000 / capture_rate
    sizes = {(len(f) - 4) // 2 for f in frames[1:]}
    assert sizes <= {math.floor(exact), math.ceil(exact)}, sizes


async def _state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(STATE)
    return state


@pytest.mark.slow
async def test_talk_page_and_assets_are_served(server: Server) -> None:
    expected = {
        "/talk": {"text/html"},
        "/static/talk.js": JS_TYPES,
        "/static/talk-socket.js": JS_TYPES,
        "/static/talk-capture.js": JS_TYPES,
        "/static/talk-player.js": JS_TYPES,
        "/static/talk-log.js": JS_TYPES,
        "/static/capture-worklet.js": JS_TYPES,
        "/static/talk.css": {"text/css"},
        "/healthz": {"application/json"},
    }
    bodies: dict[str, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for path, types in expected.items():
            async with http.get(server.http_url + path) as response:
                assert response.status == 200, path
                assert response.content_type in types, (path, response.content_type)
                bodies[path] = await response.text()
    assert json.loads(bodies["/healthz"])["status"] == "ok"
    # CSP-friendly: one external module script, no inline script, handlers or styles.
    page = bodies["/talk"]
    assert re.findall(r"<script\b[^>]*>", page) == ['<script type="module" src="/static/talk.js">']
    assert not re.search(r"\son[a-z]+=|\sstyle=|<style", page)
    assert 'href="/static/talk.css"' in page
    assert 'registerProcessor("edgevoice-capture"' in bodies["/static/capture-worklet.js"]


@pytest.mark.slow
async def test_browser_holds_a_turn_with_the_daemon(server: Server, tmp_path: Path) -> None:
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./install.sh --dev installs it")
    started = time.monotonic()
    clip = _clip(tmp_path)
    async with launch(tmp_path / "profile", _chromium_args(clip), log=tmp_path / "chromium.log") as browser:
        page = await browser.new_page()
        await page.navigate(server.http_url + "/talk")
        assert await page.wait_for(f"{STATE} && {STATE}.state === 'ready'", 15)

        # A click with a user gesture, as a person would: the AudioContext may start only then.
        await page.evaluate("document.getElementById('talk').click()", user_gesture=True)
        await page.wait_for(f"{STATE}.state === 'listening' && {STATE}.framesSent > 10", 15)
        assert await page.evaluate("document.getElementById('talk').getAttribute('aria-pressed')") == "true"

        await page.wait_for(f"{STATE}.transcripts.length > 0", 45)
        state = await _state(page)
        transcript = state["transcripts"][0]
        assert "capital" in transcript.lower(), transcript
        await page.wait_for(f"{STATE}.turnsDone > 0 && {STATE}.audioSecondsScheduled > 0.5", 45)
        state = await _state(page)
        log = await page.evaluate("document.getElementById('log').innerText")
        assert "capital" in log.lower(), log
        assert state["replies"][0].strip(), state
        assert state["audioFramesReceived"] > 0, state
        assert state["errors"] == [], state
        _check_sent(page.websocket_sent(), conversation=None, capture_rate=state["captureRate"])

        # A reload resumes the same conversation: its id was kept in localStorage.
        conversation = state["conversation"]
        assert conversation, state
        assert await page.evaluate("localStorage.getItem('edgevoice.conversation')") == conversation
        await page.navigate(server.http_url + "/talk")
        await page.wait_for(f"{STATE}.state === 'ready' && {STATE}.conversation", 15)
        assert (await _state(page))["conversation"] == conversation
        hellos = [json.loads(m) for m in page.websocket_sent() if isinstance(m, str) and '"hello"' in m]
        assert hellos[-1]["conversation"] == conversation, hellos
        assert "Resumed" in await page.evaluate("document.getElementById('notice').textContent")
        assert page.problems() == []
    print(
        f"\nbrowser: transcript {transcript!r}, reply {state['replies'][0]!r}, "
        f"{state['framesSent']} frames sent at capture rate {state['captureRate']} Hz, "
        f"{state['audioFramesReceived']} audio frames, {state['audioSecondsScheduled']:.2f} s scheduled, "
        f"{time.monotonic() - started:.1f} s"
    )


@dataclass
class ScriptedDaemon:
    """/talk, /static and a /ws that answers hello and sends what the test tells it: no models."""

    received: list[dict[str, Any]] = field(default_factory=list)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    socket: web.WebSocketResponse | None = None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.socket = ws
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            self.received.append(json.loads(message.data))
            if self.received[-1]["type"] == "interrupt":
                self.interrupt.set()
            elif self.received[-1]["type"] == "hello":
                ready = {"type": "ready", "protocol": 1, "conversation": "scripted", "resumed": False}
                await ws.send_json({**ready, "sample_rate": 16000, "max_frame_samples": 4000, "box": "test"})
        return ws

    async def send(self, *events: dict[str, Any]) -> None:
        assert self.socket is not None
        for event in events:
            await self.socket.send_json(event)

    async def send_audio(self, turn: int, first: int, count: int) -> None:
        """count 100 ms frames of a 440 Hz tone at 22050 Hz."""
        assert self.socket is not None
        tone = (np.sin(np.arange(2205) * 2 * np.pi * 440 / 22050) * 8000).astype("<i2").tobytes()
        for seq in range(first, first + count):
            await self.socket.send_bytes(struct.pack("<IIII", turn, seq, 22050, 0) + tone)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedDaemon, str]]:
    daemon = ScriptedDaemon()
    app = web.Application()

    async def talk(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(DASHBOARD_DIR / "talk.html")

    app.router.add_get("/talk", talk)
    app.router.add_static("/static", DASHBOARD_DIR)
    app.router.add_get("/ws", daemon.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield daemon, f"http://127.0.0.1:{port}/talk"
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


async def test_interrupted_reply_stops_at_once(scripted: tuple[ScriptedDaemon, str], tmp_path: Path) -> None:
    """Barge-in on the page: an `interrupted` event stops playback and drops late frames; Stop sends interrupt."""
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./install.sh --dev installs it")
    daemon, url = scripted
    fake_mic = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    async with launch(tmp_path / "profile", fake_mic) as browser:
        page = await browser.new_page()
        await page.navigate(url)
        await page.wait_for(f"{STATE} && {STATE}.state === 'ready'", 15)
        await page.evaluate("document.getElementById('talk').click()", user_gesture=True)
        await page.wait_for(f"{STATE}.state === 'listening'", 15)

        turn = {"turn": 1}
        await daemon.send({"type": "speech_started", **turn, "start_ms": 0})
        await daemon.send({"type": "transcript", **turn, "text": "tell me a story"})
        await daemon.send({"type": "reply_text", **turn, "delta": "Once upon"})
        await daemon.send_audio(1, 0, 20)
        await page.wait_for(f"{STATE}.audioFramesReceived === 20", 10)
        assert (await _state(page))["audioSourcesPending"] > 0

        await daemon.send({"type": "interrupted", **turn, "at_ms": 500})
        await daemon.send_audio(1, 20, 5)  # late: already on the wire when the turn was cut
        timings = dict.fromkeys(("speech_end", "stt_done", "first_token", "first_audio", "last_audio"), 100)
        done = {"transcript": "tell me a story", "reply": "Once upon", "interrupted": True, "start_ms": 0}
        await daemon.send({"type": "turn_done", **turn, **done, "end_ms": 900, "timings": timings})
        await page.wait_for(f"{STATE}.turnsDone === 1", 10)
        state = await _state(page)
        assert state["interrupted"] == 1, state
        assert state["audioFramesReceived"] == 25, state
        assert state["audioSecondsScheduled"] == pytest.approx(2.0), state
        assert state["audioSourcesPending"] == 0, state
        assert await page.evaluate("document.querySelector('#log li.interrupted') !== null")

        # Stop while a second reply plays: playback ends and the daemon is told to cancel the turn.
        await daemon.send({"type": "speech_started", "turn": 2, "start_ms": 1000})
        await daemon.send_audio(2, 0, 10)
        await page.wait_for(f"{STATE}.audioFramesReceived === 35", 10)
        await page.evaluate("document.getElementById('talk').click()", user_gesture=True)
        await page.wait_for(f"{STATE}.state === 'ready'", 10)
        assert (await _state(page))["audioSourcesPending"] == 0
        await asyncio.wait_for(daemon.interrupt.wait(), 10)
        assert page.problems() == []
