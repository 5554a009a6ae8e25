"""The dashboard (/) in a real headless Chromium, watching a real daemon hold two turns.

The page is opened first and the turns made after, so the conversation feed is the live
Server-Sent Events path, not a reload; the charts are the vendored uPlot drawing /api/turns.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import re
import shutil
import time
from pathlib import Path

import aiohttp
import pytest

from edgevoice.audio.pcm import Samples, read_audio
from edgevoice.config import Config
from edgevoice.protocol import Transcript, TurnDone
from edgevoice.server.app import Server
from edgevoice.server.routes import DASHBOARD_DIR
from edgevoice.server.state import SKILLS
from tests.conftest import with_silence
from tests.server.test_degraded import degraded_config, serving_degraded
from tests.support.browser_cdp import Page, chromium_path, launch
from tests.support.wire import Received, hello, receive, stream
from tests.test_cli import BUNDLED

VIEWPORT = {"width": 1280, "height": 1500, "deviceScaleFactor": 1, "mobile": False}
CHARTS = ("waterfall", "percentiles")


async def _turn(ws: aiohttp.ClientWebSocketResponse, samples: Samples) -> Received:
    sender = asyncio.create_task(stream(ws, samples))
    got = await receive(ws, Received(), until=TurnDone, timeout_s=60)
    await asyncio.wait_for(sender, 10)
    return got


async def _text(page: Page, selector: str) -> str:
    text: str = await page.evaluate(f"document.querySelector({selector!r}).innerText")
    return text


def _keep(png: bytes, path: Path) -> Path:
    """Write the screenshot, and copy it to $EDGEVOICE_TEST_ARTIFACTS when CI asks for artifacts."""
    path.write_bytes(png)
    artifacts = os.environ.get("EDGEVOICE_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)
    return path


async def _screenshot(page: Page, path: Path) -> Path:
    shot = await page.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    return await asyncio.to_thread(_keep, base64.b64decode(shot["data"]), path)


def test_dashboard_is_csp_friendly_and_offline() -> None:
    """No inline script or style, ES modules only, and nothing fetched from outside the box."""
    page = (DASHBOARD_DIR / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", page) == ['<script type="module" src="/static/index.js">']
    assert not re.search(r"\son[a-z]+=|\sstyle=|<style", page)
    for source in [DASHBOARD_DIR / "index.html", DASHBOARD_DIR / "index.css", *DASHBOARD_DIR.glob("dash*.js")]:
        assert not re.search(r"https?://", source.read_text()), source
    vendored = DASHBOARD_DIR / "vendor" / "uplot"
    assert (vendored / "VERSION").read_text().startswith("uplot@1.6.32\nsha512-")
    assert "export { uPlot as default }" in (vendored / "uPlot.esm.js").read_text()
    assert (vendored / "LICENSE").exists()
    assert (vendored / "uPlot.min.css").exists()


@pytest.mark.slow
async def test_dashboard_shows_live_turns(server: Server, tmp_path: Path) -> None:
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./install.sh --dev installs it")
    started = time.monotonic()
    question = with_silence(read_audio(BUNDLED), 0.5, 1.5)
    async with launch(tmp_path / "profile", log=tmp_path / "chromium.log") as browser:
        page = await browser.new_page()
        await page.call("Emulation.setDeviceMetricsOverride", VIEWPORT)
        await page.navigate(server.http_url + "/")
        await page.wait_for("document.getElementById('feed-state').textContent === 'live'", 15)
        await page.wait_for("document.getElementById('state').textContent === 'running'", 15)
        assert await page.evaluate("document.querySelectorAll('#feed li').length") == 0

        async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
            await hello(ws)
            await page.wait_for("document.getElementById('clients').textContent === '1'", 10)
            turns = [await _turn(ws, question), await _turn(ws, question)]
        transcripts = [got.of(Transcript)[0].text for got in turns]
        assert all("capital" in t.lower() for t in transcripts), transcripts

        # The feed: both turns, arrived live, each with what was heard and the reply.
        await page.wait_for("document.querySelectorAll('#feed li.done[data-source=live]').length === 2", 15)
        feed = await _text(page, "#feed")
        for got, transcript in zip(turns, transcripts, strict=True):
            assert transcript in feed, feed
            assert got.of(TurnDone)[0].reply.split()[0] in feed, feed
        for label in ("test", "turn 1", "turn 2"):
            assert label in feed, feed

        # Status: the client, now gone again, and the three engines with their state.
        await page.wait_for("document.getElementById('clients').textContent === '0'", 10)
        engines = await page.evaluate("[...document.querySelectorAll('#engines li.engine')].map(li => li.innerText)")
        assert len(engines) == 3, engines
        assert all(re.search(r"idle|busy", e) for e in engines), engines
        assert await page.evaluate("document.querySelectorAll('#models tbody tr').length") >= 3
        assert re.search(r"\d", await _text(page, "#memory")), await _text(page, "#memory")

        # Both charts drew a canvas, each with a table of the same two turns beside it.
        for chart in CHARTS:
            await page.wait_for(f"document.querySelectorAll('#{chart}-table tbody tr').length === 2", 20)
            size = await page.evaluate(
                f"(c => c && [c.getBoundingClientRect().width, c.getBoundingClientRect().height])"
                f"(document.querySelector('#{chart} canvas'))"
            )
            assert size, chart
            assert min(size) > 100, (chart, size)
        shot = await _screenshot(page, tmp_path / "dashboard.png")
        waterfall = await _text(page, "#waterfall-table")
        first_audio = [got.of(TurnDone)[0].timings["first_audio"] for got in turns]
        # Math.round on the page: halves go up, unlike Python's round().
        assert all(f"{math.floor(ms + 0.5)} ms" in waterfall for ms in first_audio), (first_audio, waterfall)
        requested = [e["request"]["url"] for e in page.events("Network.requestWillBeSent")]
        assert requested
        assert all(url.startswith(server.http_url) for url in requested), requested
        assert page.events("Runtime.exceptionThrown") == []
        assert page.problems() == []
    print(f"\ndashboard: screenshot {shot}, {time.monotonic() - started:.1f} s")


async def test_dashboard_banner_names_each_failed_model(config: Config, tmp_path: Path) -> None:
    """A degraded box (stand-in loader, no models): the banner lists each model, its file, why, the fix."""
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./install.sh --dev installs it")
    async with (
        serving_degraded(degraded_config(config, tmp_path / "models")) as server,
        launch(tmp_path / "profile", log=tmp_path / "chromium.log") as browser,
    ):
        page = await browser.new_page()
        await page.call("Emulation.setDeviceMetricsOverride", VIEWPORT)
        await page.navigate(server.http_url + "/")
        await page.wait_for("!document.getElementById('models-banner').hidden", 15)
        await page.wait_for("document.getElementById('state').textContent === 'degraded'", 15)
        banner = await _text(page, "#models-banner")
        assert "2 models failed to load" in banner, banner
        items = await page.evaluate(
            "[...document.querySelectorAll('#models-banner li')].map(li => [li.dataset.model, li.innerText])"
        )
        assert [model for model, _ in items] == ["stt", "llm"], items
        expected = [("stt.bin", "stt.model"), ("llm.gguf", "llm.model")]
        for (_, text), (name, setting) in zip(items, expected, strict=True):
            assert str(tmp_path / "models" / name) in text, text
            assert "is no good" in text, text
            assert "Fix: put a " in text, text
            assert setting in text, text
        assert "edgevoice models verify" in banner, banner
        # The banner is the page's first thing, above the status and the feed.
        top = await page.evaluate("document.getElementById('models-banner').getBoundingClientRect().top")
        status_top = await page.evaluate("document.getElementById('status-section').getBoundingClientRect().top")
        assert top < status_top
        await _screenshot(page, tmp_path / "dashboard-degraded.png")
        assert page.events("Runtime.exceptionThrown") == []


@pytest.mark.slow
async def test_dashboard_shows_timers_and_the_shopping_list(server: Server, tmp_path: Path) -> None:
    """What the skills hold, as a person changes it: a timer counting down, the list as it grows."""
    if chromium_path() is None:
        pytest.fail("chromium is not installed: ./install.sh --dev installs it")
    async with launch(tmp_path / "profile", log=tmp_path / "chromium.log") as browser:
        page = await browser.new_page()
        await page.navigate(server.http_url + "/")
        await page.wait_for("document.getElementById('feed-state').textContent === 'live'", 15)
        await page.wait_for("document.getElementById('state').textContent === 'running'", 15)
        await page.wait_for("document.getElementById('shopping-list').innerText === 'empty'", 10)
        assert await _text(page, "#timers") == "no timers"
        # Said in a conversation (typed here: the voice path is tests/server/test_skill_turns.py).
        kitchen = server.app[SKILLS].for_conversation("kitchen")
        assert kitchen.answer("set a pasta timer for 5 minutes") is not None
        assert kitchen.answer("add eggs and milk to my shopping list") is not None
        # The timer shows (the feed's timer event refreshes the status) and counts down in the page.
        label = "document.querySelector('#timers .timer-label')?.textContent"
        await page.wait_for(f"{label} === 'five minute pasta timer'", 5)
        left = "document.querySelector('#timers .timer-left').textContent"
        first = await page.evaluate(left)
        assert first in ("5:00", "4:59"), first
        await page.wait_for(f"{left} !== {first!r}", 5)
        await page.wait_for("document.getElementById('shopping-list').innerText === 'eggs\\nmilk'", 10)
        assert page.events("Runtime.exceptionThrown") == []
        assert page.problems() == []
