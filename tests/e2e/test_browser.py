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

from edgevoice import protocol
from edgevoice.announcements import ANNOUNCEMENT_TURNS
from edgevoice.audio.pcm import SAMPLE_RATE, read_audio, to_pcm16, write_wav
from edgevoice.protocol import (
    Hello,
    Interrupt,
    Interrupted,
    Ready,
    ReplyAudioStart,
    ReplyText,
    ServerMessage,
    SpeechStarted,
    Timer,
    Transcript,
    TurnDone,
)
from edgevoice.server.app import Server
from edgevoice.server.routes import DASHBOARD_DIR
from tests.conftest import with_silence
from tests.support.browser_cdp import Page, chromium_path, launch
from tests.test_cli import BUNDLED
from tests.test_protocol import SERVER_MESSAGES, WRONG_VALUES, server_message_fields

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
    hello = protocol.parse_client_text(sent[0])
    assert hello == Hello(16000, "browser", conversation), hello
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
        "/static/talk-timers.js": JS_TYPES,
        "/static/protocol.js": JS_TYPES,
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
        said = [protocol.parse_client_text(m) for m in page.websocket_sent() if isinstance(m, str)]
        hellos = [m for m in said if isinstance(m, Hello)]
        assert hellos[-1].conversation == conversation, hellos
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

    received: list[protocol.ClientMessage] = field(default_factory=list)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    socket: web.WebSocketResponse | None = None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.socket = ws
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            self.received.append(protocol.parse_client_text(message.data))
            if isinstance(self.received[-1], Interrupt):
                self.interrupt.set()
            elif isinstance(self.received[-1], Hello):
                ready = Ready.of(conversation="scripted", resumed=False, sample_rate=16000, box="test", version="0")
                await ws.send_str(ready.to_text())
        return ws

    async def send(self, *messages: ServerMessage) -> None:
        assert self.socket is not None
        for message in messages:
            await self.socket.send_str(message.to_text())

    async def send_text(self, text: str) -> None:
        assert self.socket is not None
        await self.socket.send_str(text)

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

        await daemon.send(SpeechStarted(1, 0), Transcript(1, "tell me a story"), ReplyText(1, "Once upon"))
        await daemon.send_text('{"type": "later_event", "turn": 1}')  # a newer box's event: ignored
        await daemon.send_audio(1, 0, 20)
        await page.wait_for(f"{STATE}.audioFramesReceived === 20", 10)
        assert (await _state(page))["audioSourcesPending"] > 0

        await daemon.send(Interrupted(1, 500))
        await daemon.send_audio(1, 20, 5)  # late: already on the wire when the turn was cut
        timings: dict[str, float | None] = dict.fromkeys(
            ("speech_end", "stt_done", "first_token", "first_audio", "last_audio"), 100.0
        )
        await daemon.send(TurnDone(1, "tell me a story", "Once upon", True, 0, 900, timings))
        await page.wait_for(f"{STATE}.turnsDone === 1", 10)
        state = await _state(page)
        assert state["interrupted"] == 1, state
        assert state["audioFramesReceived"] == 25, state
        assert state["audioSecondsScheduled"] == pytest.approx(2.0), state
        assert state["audioSourcesPending"] == 0, state
        assert await page.evaluate("document.querySelector('#log li.interrupted') !== null")

        # Stop while a second reply plays: playback ends and the daemon is told to cancel the turn.
        await daemon.send(SpeechStarted(2, 1000))
        await daemon.send_audio(2, 0, 10)
        await page.wait_for(f"{STATE}.audioFramesReceived === 35", 10)
        await page.evaluate("document.getElementById('talk').click()", user_gesture=True)
        await page.wait_for(f"{STATE}.state === 'ready'", 10)
        assert (await _state(page))["audioSourcesPending"] == 0
        await asyncio.wait_for(daemon.interrupt.wait(), 10)
        assert page.problems() == []


async def test_the_timer_card_counts_down_rings_and_goes(scripted: tuple[ScriptedDaemon, str], tmp_path: Path) -> None:
    """A timer event shows on /talk and counts down; its ring plays as audio of a turn of its own, which
    `interrupted` cuts; a cancelled timer leaves the card."""
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./install.sh --dev installs it")
    daemon, url = scripted
    card = "document.getElementById('timers-card')"
    left = "document.querySelector('#timers .timer-left').textContent"
    async with launch(tmp_path / "profile", ["--autoplay-policy=no-user-gesture-required"]) as browser:
        page = await browser.new_page()
        await page.navigate(url)
        await page.wait_for(f"{STATE} && {STATE}.state === 'ready'", 15)
        assert await page.evaluate(f"{card}.hidden")
        ends = time.time() + 90
        await daemon.send(Timer("started", "t1", "scripted", "pasta", 90.0, 90.0, "running", ends, 0, "", ""))
        await page.wait_for(f"!{card}.hidden", 10)
        assert await page.evaluate("document.querySelector('#timers .timer-name').textContent") == "pasta"
        first = await page.evaluate(left)
        assert first in ("1:30", "1:29"), first
        await page.wait_for(f"{left} !== {json.dumps(first)}", 5)  # it counts down on its own
        ring = ANNOUNCEMENT_TURNS
        line = "Your one and a half minute pasta timer is done."
        await daemon.send(Timer("finished", "t1", "scripted", "pasta", 90.0, 0.0, "ringing", 0.0, 1, "", line))
        await page.wait_for(f"{left} === {json.dumps(line)}", 5)
        await page.evaluate("document.getElementById('talk').click()", user_gesture=True)  # audio may play
        await daemon.send(ReplyAudioStart(ring, 22050))
        await daemon.send_audio(ring, 0, 20)
        await page.wait_for(f"{STATE}.audioFramesReceived === 20", 10)
        assert (await _state(page))["audioSourcesPending"] > 0, "the ring plays"
        await daemon.send(Interrupted(ring, 100))
        await daemon.send(Timer("cancelled", "t1", "scripted", "pasta", 90.0, 0.0, "ringing", 0.0, 0, "stopped", ""))
        await page.wait_for(f"{card}.hidden", 5)
        assert (await _state(page))["audioSourcesPending"] == 0, "stop cut the ring"
        assert page.problems() == []


def _server_texts() -> list[str]:
    """Every server message, each with a field missing or of a wrong type, and texts that are no message."""
    texts = [message.to_text() for message in SERVER_MESSAGES]
    for message, name in server_message_fields():
        fields = message.to_json()
        texts.append(json.dumps({key: value for key, value in fields.items() if key != name}))
        texts += [json.dumps({**fields, name: wrong}) for wrong in WRONG_VALUES[type(fields[name])]]
    ready = SERVER_MESSAGES[0].to_json()
    texts += [json.dumps({**ready, "protocol": 2}), json.dumps({**ready, "conversation": "../etc"})]
    texts += ["", "{", "[1]", "null", '{"type": 7}', '{"type": "hello"}', '{"type": "later_event", "turn": 1}']
    texts += ['{"type": "busy", "message": NaN}', json.dumps({"type": "busy", "message": "x" * (1 << 20)})]
    return texts


async def test_the_page_reads_server_messages_as_the_daemon_does(
    scripted: tuple[ScriptedDaemon, str], tmp_path: Path
) -> None:
    """dashboard/protocol.js and edgevoice/protocol.py agree on every message: what it holds, or why not."""
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./install.sh --dev installs it")
    _daemon, url = scripted
    texts = _server_texts()
    parse_all = (
        "import('/static/protocol.js').then(p => JSON.parse(TEXTS).map(text => {"
        " try { return p.parseServerText(text); } catch (e) { return { error: e.code, fatal: e.fatal }; } }))"
    ).replace("TEXTS", json.dumps(json.dumps(texts)))
    async with launch(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.navigate(url)
        in_page = await page.evaluate(parse_all, await_promise=True)
    expected: list[dict[str, Any]] = []
    for text in texts:
        try:
            expected.append(protocol.parse_server_text(text).to_json())
        except protocol.ProtocolError as err:
            expected.append({"error": err.code, "fatal": err.fatal})
    assert len(in_page) == len(texts)
    disagree = [(text[:120], js, py) for text, js, py in zip(texts, in_page, expected, strict=True) if js != py]
    assert disagree == []
    assert sum("error" not in py for py in expected) == len(SERVER_MESSAGES)  # the cases are not all refusals
