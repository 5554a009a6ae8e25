"""Engines on other machines, against real servers on loopback: llama.cpp's OpenAI-compatible server, another
edgevoice serving Wyoming, and wyoming-piper on the packaged voice, offline."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from edgevoice.audio.pcm import SAMPLE_RATE, from_pcm16, read_audio, resample
from edgevoice.bench.daemon import Daemon
from edgevoice.bench.wer import word_error_rate
from edgevoice.config import Config
from edgevoice.engines import loader, remote
from edgevoice.engines.engines import Engines
from edgevoice.engines.llm import Message
from edgevoice.engines.loader import ModelLoader
from edgevoice.engines.openai_llm import OpenAiLlm
from edgevoice.engines.remote import RemoteError
from edgevoice.engines.wyoming_stt import WyomingStt
from edgevoice.engines.wyoming_tts import WyomingTts
from edgevoice.models.registry import Kind, default_stt_path, resolve
from edgevoice.server.conversations import ConversationStore
from edgevoice.transports.wyoming import WyomingServer
from tests.support.daemon import serving_with
from tests.test_cli import BUNDLED as QUESTION

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 180.0


class Process:
    """A server process whose output is read on a thread, so a line can be waited for."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def wait_for(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        with self._new:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no {pattern!r} from {self.process.args}:\n{''.join(self.lines[-30:])}")
                self._new.wait(min(left, 0.5))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def free_port() -> int:
    """A port nothing listens on now (for servers that cannot say which port 0 gave them)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(port: int, timeout_s: float = 30.0) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s") from None
            time.sleep(0.05)


def start_llama_server(config: Config, port: int = 0) -> tuple[Process, str]:
    """llama-cpp-python's own OpenAI-compatible server on the default GGUF; its /v1 URL."""
    server = Process(
        [
            sys.executable,
            str(Path(__file__).parents[1] / "support" / "llama_server.py"),
            "--model",
            str(resolve(config, Kind.LLM).path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(config.llm.context_tokens),
        ]
    )
    found = server.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
    return server, f"http://127.0.0.1:{found.group(1)}/v1"


@pytest.fixture(scope="module")
def llama_url(config: Config) -> Iterator[str]:
    server, url = start_llama_server(config)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def edgevoice_wyoming(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another edgevoice, `edgevoice serve` on loopback, started the way the benchmark starts one; its Wyoming URL."""
    folder = tmp_path_factory.mktemp("other-edgevoice")
    settings = folder / "edgevoice.toml"
    model = config.stt.model or default_stt_path(config)
    settings.write_text(f'data_dir = "{folder / "data"}"\n[stt]\nmodel = "{model}"\n', encoding="utf-8")
    daemon = Daemon(settings, verbose=False)

    async def start() -> str:
        await daemon.start()
        base = daemon.url.replace("ws", "http", 1).removesuffix("/ws")
        async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as response:
            health = await response.json()
        return f"tcp://127.0.0.1:{health['wyoming']['port']}"

    runner = asyncio.Runner()
    try:
        yield runner.run(asyncio.wait_for(start(), START_TIMEOUT_S))
    finally:
        runner.run(daemon.stop())
        runner.close()


@pytest.fixture(scope="module")
def wyoming_piper(config: Config) -> Iterator[str]:
    """wyoming-piper on the packaged joe voice, told never to download; its URL."""
    voice = resolve(config, Kind.TTS).path
    port = free_port()
    server = Process(
        [
            sys.executable,
            "-m",
            "wyoming_piper",
            "--voice",
            voice.stem,
            "--data-dir",
            str(voice.parent),
            "--download-dir",
            str(voice.parent),
            "--uri",
            f"tcp://127.0.0.1:{port}",
            "--local-files-only",
            "--debug",
        ]
    )
    try:
        server.wait_for(r"Ready")
        wait_until_listening(port)  # it says Ready a moment before it listens
        yield f"tcp://127.0.0.1:{port}"
    finally:
        server.stop()


def with_urls(config: Config, **urls: str) -> Config:
    stt, llm, tts = config.stt, config.llm, config.tts
    return dataclasses.replace(
        config,
        stt=dataclasses.replace(stt, url=urls.get("stt", "")),
        llm=dataclasses.replace(llm, url=urls.get("llm", "")),
        tts=dataclasses.replace(tts, url=urls.get("tts", "")),
    )


# The language model on llama.cpp's OpenAI-compatible server


async def test_llm_server_streams_the_reply_with_the_same_prompt(config: Config, llama_url: str) -> None:
    engines = await asyncio.to_thread(Engines.load, with_urls(config, llm=llama_url), {Kind.LLM})
    try:
        assert isinstance(engines.llm, OpenAiLlm)
        assert engines.llm.model.endswith(".gguf")
        messages = [Message("system", config.llm.system_prompt), Message("user", "What is the capital of France?")]
        pieces = []
        async with asyncio.timeout(120):
            async for piece in engines.reply(messages):
                pieces.append(piece)
        assert len(pieces) > 1, pieces  # streamed, not one block
        assert "paris" in "".join(pieces).lower()
        assert remote.describe_engine("llm", engines.llm)["ok"]
    finally:
        engines.close()


async def test_barge_in_closes_the_llm_stream_at_once(config: Config, llama_url: str) -> None:
    settings = with_urls(config, llm=llama_url)
    settings = dataclasses.replace(settings, llm=dataclasses.replace(settings.llm, max_reply_tokens=400))
    engines = await asyncio.to_thread(Engines.load, settings, {Kind.LLM}, False)
    try:
        messages = [Message("system", "You tell very long stories."), Message("user", "Tell me a long story.")]
        async with asyncio.timeout(120):
            async for _ in engines.reply(messages):
                break  # the listener spoke over it
        stopped = time.monotonic()
        # The engine thread is free again at once: its read was cut, it did not wait out 400 tokens.
        async with asyncio.timeout(10):
            await engines.llm_worker.run(lambda: None)
        assert time.monotonic() - stopped < 1.0
    finally:
        engines.close()


async def test_llm_server_down_at_start_is_degraded_with_a_reason_then_recovers(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    settings = with_urls(config, llm=f"http://127.0.0.1:{port}/v1")
    # The language model alone: the local ones are not what this test is about, and cost a load each.
    models = ModelLoader(settings, lambda c, kinds, warm: Engines.load(c, set(kinds) & {Kind.LLM}, warm))
    assert await asyncio.to_thread(models.load) is None
    [failure] = models.failures
    assert failure.kind is Kind.LLM
    assert failure.url == f"http://127.0.0.1:{port}/v1"
    assert failure.setting == "llm.url"
    assert failure.environment == "EDGEVOICE_LLM_URL"
    assert "connection refused" in failure.reason.lower()
    assert f"127.0.0.1:{port}" in failure.line()
    assert not await asyncio.to_thread(models.changed)
    server, _ = start_llama_server(config, port)
    try:
        monkeypatch.setattr(loader, "RETRY_INTERVAL_S", 0.2)
        engines = await asyncio.wait_for(models.retry(), 120)
        assert models.ready
        engines.close()
    finally:
        server.stop()


# Speech to text on another edgevoice, over Wyoming


async def test_stt_on_another_edgevoice_over_wyoming(config: Config, edgevoice_wyoming: str) -> None:
    engines = await asyncio.to_thread(Engines.load, with_urls(config, stt=edgevoice_wyoming), {Kind.STT})
    try:
        assert isinstance(engines.stt, WyomingStt)
        started = time.monotonic()
        text = await asyncio.wait_for(engines.transcribe(read_audio(QUESTION)), 60)
        round_trip_s = time.monotonic() - started
        print(f"Wyoming transcription round trip: {round_trip_s * 1000:.0f} ms")
        assert word_error_rate("What is the capital of France?", text) < 0.3, text
        # Silence is not worth a round trip: "" as whisper here would say.
        assert await engines.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32)) == ""
    finally:
        engines.close()


async def test_tts_on_another_edgevoice_over_wyoming(config: Config, engines: Engines, edgevoice_wyoming: str) -> None:
    await check_remote_voice(config, engines, edgevoice_wyoming)


async def test_tts_on_wyoming_piper_offline(config: Config, engines: Engines, wyoming_piper: str) -> None:
    await check_remote_voice(config, engines, wyoming_piper)


async def check_remote_voice(config: Config, engines: Engines, url: str) -> None:
    """The remote voice's speech says the text: transcribed back by this box's own whisper."""
    voice = await asyncio.to_thread(Engines.load, with_urls(config, tts=url), {Kind.TTS})
    try:
        assert isinstance(voice.tts, WyomingTts)
        assert voice.tts.sample_rate == 22_050
        chunks = []
        async with asyncio.timeout(60):
            async for pcm in voice.speech("The kitchen lights are on. Good night."):
                chunks.append(pcm)
        assert len(chunks) > 1  # streamed as it came, not one block at the end
        audio = resample(from_pcm16(b"".join(c.astype("<i2").tobytes() for c in chunks)), 22_050, SAMPLE_RATE)
        assert 1.0 < len(audio) / SAMPLE_RATE < 6.0
        heard = await engines.transcribe(audio)
        assert word_error_rate("The kitchen lights are on. Good night.", heard) < 0.3, heard
    finally:
        voice.close()


# A Wyoming server that goes away while the daemon runs, and comes back


@contextlib.asynccontextmanager
async def wyoming_on(config: Config, engines: Engines, port: int) -> AsyncIterator[WyomingServer]:
    llm = config.llm
    store = ConversationStore(config.data_dir / "remote-conversations", llm.system_prompt, llm.history_turns, 8)
    server = WyomingServer(config, lambda: engines, store)
    await server.start("127.0.0.1", port)
    try:
        yield server
    finally:
        await server.stop()


async def test_a_remote_engine_whose_server_goes_away_is_degraded_then_recovers(
    server_config: Config, engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "PROBE_INTERVAL_S", 0.2)
    port = free_port()
    async with wyoming_on(server_config, engines, port):
        remote_stt = await asyncio.to_thread(
            Engines.load, with_urls(server_config, stt=f"tcp://127.0.0.1:{port}"), {Kind.STT}
        )
    box = Engines(server_config, remote_stt.stt, engines.llm, engines.tts)
    try:
        async with serving_with(server_config, box) as daemon, aiohttp.ClientSession() as http:

            async def health() -> tuple[int, dict[str, object]]:
                async with http.get(daemon.http_url + "/healthz") as response:
                    return response.status, await response.json()

            # The server went away when the block above ended, but nothing has asked it since.
            status, body = await health()
            assert status == 200, body
            with pytest.raises(RemoteError, match="refused"):
                await box.transcribe(read_audio(QUESTION))
            status, body = await health()
            assert status == 503
            assert body["status"] == "degraded"
            [stt] = [e for e in body["engines"] if isinstance(e, dict) and e["kind"] == "stt"]
            assert stt["location"] == "remote"
            assert stt["ok"] is False
            assert "refused" in stt["reason"]
            async with wyoming_on(server_config, engines, port):
                async with asyncio.timeout(30):
                    while (await health())[0] != 200:  # noqa: ASYNC110  the prober signals nothing here
                        await asyncio.sleep(0.1)
                text = await box.transcribe(read_audio(QUESTION))
                assert word_error_rate("What is the capital of France?", text) < 0.3
    finally:
        box.close()
        remote_stt.close()
