"""The browser voice client (/talk) in a real headless Firefox, talking to a real daemon.

Firefox is driven over WebDriver BiDi. Its microphone is the default source of a private PulseAudio
server (the `pulse` fixture: the 'mic' sink's monitor) and it plays to the 'speaker' sink, so the
test speaks the bundled question into 'mic' and the page's whole path runs as it does in Chromium:
getUserMedia (echo canceller, noise suppressor, gain control on), the capture worklet at Firefox's
AudioContext rate, 16 kHz frames over /ws, the daemon's turn, and the reply scheduled on the page's
AudioContext and heard on 'speaker'.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile

from edgevoice import protocol
from edgevoice.audio.pcm import SAMPLE_RATE, read_audio, to_pcm16, write_wav
from edgevoice.server.app import Server
from tests.support.browser_bidi import Page, firefox_path, launch
from tests.test_cli import BUNDLED

STATE = "window.edgevoiceTalk"

FIREFOX_PREFS: dict[str, bool | int | str] = {
    "media.navigator.permission.disabled": True,  # getUserMedia without the permission prompt
    "media.navigator.streams.fake": False,  # the real default source: PulseAudio's 'mic.monitor'
    "media.autoplay.default": 0,  # allowed
    "media.autoplay.block-webaudio": False,
}

# What the page hands its WebSockets, seen from inside the page (BiDi has no WebSocket frame events):
# text as it is, binary as its size and the uint32 sequence number at its start.
SPY_ON_SENDS = """() => {
  const sent = [];
  window.edgevoiceTestSent = sent;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string") sent.push(data);
    else sent.push({ bytes: data.byteLength, seq: new DataView(data).getUint32(0, true) });
    return send.call(this, data);
  };
}"""


def _question(folder: Path) -> Path:
    """The bundled question at a sixth of its level (peaks near -19 dBFS), as a microphone a little way off hears it.

    At full level Firefox's gain control (AGC2, on by the page's constraints) drives it into clipping after
    the null sink's digital silence, and the transcript suffers; a real room never sends that.
    """
    path = folder / "question.wav"
    write_wav(path, to_pcm16(read_audio(BUNDLED) / np.float32(6)), SAMPLE_RATE)
    return path


def _heard_s(recording: Path) -> float:
    """Seconds of sound on the speaker: 20 ms blocks that peak above -40 dBFS (the null sink is silent otherwise)."""
    audio, rate = soundfile.read(str(recording), dtype="float32")
    block = rate // 50
    peaks = np.abs(audio[: len(audio) // block * block]).reshape(-1, block).max(axis=1)
    return float((peaks > 0.01).sum()) / 50


def _check_sent(sent: list[Any], capture_rate: int) -> None:
    """hello first, then audio: a uint32 sequence from 0, and 1024 capture-rate samples' worth of 16 kHz per frame."""
    assert isinstance(sent[0], str), sent[:1]
    hello = protocol.parse_client_text(sent[0])
    assert isinstance(hello, protocol.Hello), hello
    assert (hello.protocol, hello.sample_rate, hello.client) == (1, 16000, "browser"), hello
    frames = [m for m in sent if isinstance(m, dict)]
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert all(f["bytes"] % 2 == 0 for f in frames)
    # The first frame is shorter by the resampling filter's delay; then 341 or 342 from 48 kHz, 371 or 372 from 44.1.
    exact = 1024 * 16000 / capture_rate
    sizes = {(f["bytes"] - 4) // 2 for f in frames[1:]}
    assert sizes <= {math.floor(exact), math.ceil(exact)}, sizes


async def _browser_client(http: aiohttp.ClientSession, server: Server) -> dict[str, Any]:
    """The daemon's counters for the one connection that said hello as 'browser'."""
    async with http.get(server.http_url + "/healthz") as response:
        health = await response.json()
    browsers = [c for c in health["connections"] if c["name"] == "browser"]
    assert len(browsers) == 1, health
    client: dict[str, Any] = browsers[0]
    return client


async def _state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(STATE)
    return state


@pytest.mark.slow
async def test_firefox_holds_a_turn_with_the_daemon(server: Server, pulse: dict[str, str], tmp_path: Path) -> None:
    if firefox_path() is None:
        pytest.fail("firefox is not installed: ./install.sh --dev installs it")
    started = time.monotonic()
    heard = tmp_path / "speaker.wav"
    recorder = await asyncio.create_subprocess_exec(
        "parecord", "--device=speaker.monitor", "--file-format=wav", "--channels=1", str(heard), env=pulse
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            launch(tmp_path / "profile", FIREFOX_PREFS, env=pulse, log=tmp_path / "firefox.log") as browser,
        ):
            page = await browser.new_page()
            await page.add_preload_script(SPY_ON_SENDS)
            await page.navigate(server.http_url + "/talk")
            await page.wait_for(f"{STATE} && {STATE}.state === 'ready'", 15)

            # A click with user activation, as a person would: the AudioContext may start only then.
            await page.evaluate("document.getElementById('talk').click()", user_activation=True)
            await page.wait_for(f"{STATE}.state === 'listening' && {STATE}.framesSent > 10", 15)
            assert await page.evaluate("document.getElementById('talk').getAttribute('aria-pressed')") == "true"
            streaming = await _browser_client(http, server)
            assert streaming["frames_received"] > 0, streaming

            question = _question(tmp_path)
            player = await asyncio.create_subprocess_exec("paplay", "--device=mic", str(question), env=pulse)
            assert await asyncio.wait_for(player.wait(), 30) == 0
            await page.wait_for(f"{STATE}.transcripts.length > 0", 30)
            state = await _state(page)
            transcript = state["transcripts"][0]
            assert "capital" in transcript.lower(), transcript
            await page.wait_for(f"{STATE}.turnsDone > 0 && {STATE}.audioSecondsScheduled > 0.5", 30)
            # Played out: every scheduled source has ended.
            await page.wait_for(f"{STATE}.audioSourcesPending === 0", 30)
            state = await _state(page)
            assert state["replies"][0].strip(), state
            assert state["audioFramesReceived"] > 0, state
            assert state["errors"] == [], state
            assert "capital" in (await page.evaluate("document.getElementById('log').innerText")).lower()

            # Stop: the microphone goes off, and the daemon got every frame the page sent, none lost or malformed.
            await page.evaluate("document.getElementById('talk').click()", user_activation=True)
            await page.wait_for(f"{STATE}.state === 'ready'", 10)
            state = await _state(page)
            async with asyncio.timeout(10):
                while True:
                    client = await _browser_client(http, server)
                    if client["frames_received"] >= state["framesSent"]:
                        break
                    await asyncio.sleep(0.1)
            assert client["frames_received"] == state["framesSent"], (client, state)
            assert client["frames_lost"] == 0, client
            assert client["bad_frames"] == 0, client
            assert state["framesDropped"] == 0, state
            sent = await page.evaluate("window.edgevoiceTestSent")
            assert len([m for m in sent if isinstance(m, dict)]) == state["framesSent"], state
            _check_sent(sent, capture_rate=state["captureRate"])
            assert page.problems() == []
            version = browser.version
    finally:
        with contextlib.suppress(ProcessLookupError):
            recorder.send_signal(signal.SIGINT)
        await asyncio.wait_for(recorder.wait(), 10)
    # Most of what the page scheduled came out of Firefox (Piper's pauses between words are quiet).
    heard_s = _heard_s(heard)
    assert heard_s > 0.5 * state["audioSecondsScheduled"], f"only {heard_s:.2f} s of the reply reached the speaker"
    print(
        f"\nfirefox {version}: transcript {transcript!r}, reply {state['replies'][0]!r}, "
        f"{state['framesSent']} frames sent at capture rate {state['captureRate']} Hz, "
        f"{state['audioFramesReceived']} audio frames, {state['audioSecondsScheduled']:.2f} s scheduled, "
        f"{heard_s:.2f} s heard on the speaker, {time.monotonic() - started:.1f} s"
    )
