"""`edgevoice serve` as a process: ready line, serving, clean stop on SIGTERM, clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from edgevoice import protocol
from edgevoice.config import Config
from edgevoice.models.registry import default_stt_path
from tests.server.wire import hello
from tests.test_cli import BUNDLED as BUNDLED_QUESTION

pytestmark = pytest.mark.slow


@pytest.fixture
def serve_env(config: Config, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEVOICE_")}
    env["EDGEVOICE_DATA_DIR"] = str(tmp_path / "data")
    env["EDGEVOICE_STT_MODEL"] = str(config.stt.model or default_stt_path(config))
    return env


@pytest.fixture
def daemon(serve_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "edgevoice", "serve", "--host", "127.0.0.1", "--port", "0", "--no-discovery"],
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


async def test_serves_until_sigterm_then_closes_clients_cleanly(daemon: subprocess.Popen[str]) -> None:
    assert daemon.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(daemon.stdout.readline), 120)
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    assert found, line
    base = found.group(1)
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as response:
            assert (await response.json())["status"] == "ok"
        async with http.ws_connect(base.replace("http", "ws", 1) + "/ws") as ws:
            await hello(ws)
            daemon.send_signal(signal.SIGTERM)
            message = await asyncio.wait_for(ws.receive(), 30)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == protocol.CLOSE_GOING_AWAY
    code = await asyncio.wait_for(asyncio.to_thread(daemon.wait), 30)
    assert code == 0
    assert daemon.stdout.read().strip() == "edgevoice: stopped"


def test_port_in_use_is_a_clear_error(serve_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "edgevoice", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-discovery"],
            env=serve_env,
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_tls_files_are_a_clear_error(serve_env: dict[str, str], tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    env = {**serve_env, "EDGEVOICE_SERVER_TLS_CERT": str(cert), "EDGEVOICE_SERVER_TLS_KEY": str(cert)}
    result = subprocess.run(
        [sys.executable, "-m", "edgevoice", "serve", "--host", "127.0.0.1", "--port", "0", "--no-discovery"],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot use TLS certificate" in result.stderr
    assert "Traceback" not in result.stderr


def test_mic_conversation_runs_beside_the_socket(serve_env: dict[str, str], pulse: dict[str, str]) -> None:
    """--mic: the box's own microphone (a PulseAudio null sink's monitor) gets answered through its speaker."""
    env = {**serve_env, **{k: v for k, v in pulse.items() if k.startswith(("PULSE", "XDG"))}}
    data = Path(serve_env["EDGEVOICE_DATA_DIR"])
    heard = data.parent / "speaker.wav"
    recorder = subprocess.Popen(
        ["parecord", "--device=speaker.monitor", "--file-format=wav", "--channels=1", str(heard)], env=env
    )
    command = ["serve", "--host", "127.0.0.1", "--port", "0", "--mic", "--no-discovery"]
    process = subprocess.Popen(
        [sys.executable, "-m", "edgevoice", "-v", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base = re.search(r"on (http://127\.0\.0\.1:\d+)", process.stdout.readline())
        assert base
        with urllib.request.urlopen(base.group(1) + "/healthz", timeout=10) as response:
            assert json.load(response)["mic"] is True
        time.sleep(1.0)  # the input stream opens just after the ready line
        subprocess.run(["paplay", "--device=mic", str(BUNDLED_QUESTION)], env=env, check=True, timeout=30)
        saved = data / "conversations" / "mic.json"
        deadline = time.monotonic() + 60
        while not saved.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        history = json.loads(saved.read_text())["history"]
        assert "capital" in history[0][0].lower()
        assert history[0][1]
        time.sleep(3)  # the reply plays out through the speaker
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=10)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
    spoken, _ = soundfile.read(str(heard), dtype="float32")
    assert float(np.abs(spoken).max()) > 0.05  # the reply reached the speaker
