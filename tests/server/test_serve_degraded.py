"""`edgevoice serve` with a corrupt STT model and no LLM model: it stays up, says why, and heals.

The daemon runs as a process under a stand-in for systemd's notify socket. It must open its
port degraded (READY=1 with STATUS=degraded), answer /healthz 503 naming both files and why,
refuse a voice socket with models_unavailable and 1013, then, once real models are put at those
paths, load them by itself, answer a turn, and still exit 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgevoice import protocol
from edgevoice.audio.pcm import read_audio
from edgevoice.config import Config
from edgevoice.models.registry import Kind, default_stt_path, resolve
from tests.conftest import with_silence
from tests.server.wire import Received, hello, receive, stream
from tests.test_cli import BUNDLED

pytestmark = pytest.mark.slow
RETRY_S = 0.5
# `edgevoice serve` with the retry interval lowered: a test cannot wait 30 s per look.
SERVE = (
    "import sys, edgevoice.model_loader as loader; loader.RETRY_INTERVAL_S = float(sys.argv.pop(1)); "
    "from edgevoice.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture
def notify() -> Iterator[tuple[socket.socket, str]]:
    with tempfile.TemporaryDirectory(prefix="ev-") as folder:
        path = os.path.join(folder, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(60)
            yield sock, path


def _replace(source: Path, target: Path) -> None:
    """As an installer would: copy beside, then rename over, so the daemon never reads half a file."""
    temp = target.with_name(target.name + ".part")
    shutil.copyfile(source, temp)
    os.replace(temp, target)


def _serve(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, str(RETRY_S), "serve", "--host", "127.0.0.1", "--port", "0", "--no-discovery"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with asyncio.timeout(10), http.get(url) as response:
        return response.status, await response.json()


async def test_bad_models_degrade_then_heal(config: Config, tmp_path: Path, notify: tuple[socket.socket, str]) -> None:
    sock, notify_path = notify
    stt, llm = tmp_path / "stt.bin", tmp_path / "missing" / "llm.gguf"
    stt.write_bytes(os.urandom(37))
    llm.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEVOICE_", "NOTIFY_", "WATCHDOG_"))}
    env |= {
        "EDGEVOICE_DATA_DIR": str(tmp_path / "data"),
        "EDGEVOICE_STT_MODEL": str(stt),
        "EDGEVOICE_LLM_MODEL": str(llm),
        "NOTIFY_SOCKET": notify_path,
    }
    started = time.monotonic()
    process = _serve(env)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 120)
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        assert found, line
        base = found.group(1)
        assert sock.recv(4096) == b"STATUS=loading and warming the models"
        ready = sock.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=degraded: models failed to load (stt, llm)"), ready
        assert f"{base}/healthz" in ready

        async with aiohttp.ClientSession() as http:
            status, health = await _get(http, base + "/healthz")
            degraded_s = time.monotonic() - started
            assert status == 503
            assert health["status"] == "degraded"
            failures = {f["model"]: f for f in health["model_failures"]}
            assert set(failures) == {"stt", "llm"}
            assert failures["stt"]["path"] == str(stt)
            assert "not a whisper.cpp ggml model" in failures["stt"]["reason"]
            assert failures["llm"]["path"] == str(llm)
            assert "does not exist" in failures["llm"]["reason"]
            status, body = await _get(http, base + "/api/status")
            assert status == 200
            assert body["models_ready"] is False
            assert {f["model"]: f["reason"] for f in body["model_failures"]} == {
                kind: failure["reason"] for kind, failure in failures.items()
            }
            async with http.ws_connect(base.replace("http", "ws", 1) + protocol.WS_PATH) as ws:
                error = await asyncio.wait_for(ws.receive_json(), 10)
                closing = await asyncio.wait_for(ws.receive(), 10)
            assert (error["code"], error["fatal"]) == ("models_unavailable", True)
            assert closing.data == protocol.CLOSE_TRY_LATER
            assert process.poll() is None, "the daemon exited instead of serving degraded"

            fixed = time.monotonic()
            _replace(resolve(config, Kind.LLM).path, llm)
            _replace(config.stt.model or default_stt_path(config), stt)
            sock.settimeout(120)
            message = await asyncio.to_thread(sock.recv, 4096)
            assert message == f"STATUS=serving {health['box']} on {base}".encode(), message
            status, health = await _get(http, base + "/healthz")
            healed_s = time.monotonic() - fixed
            assert (status, health["status"], health["model_failures"]) == (200, "ok", [])

            async with http.ws_connect(base.replace("http", "ws", 1) + protocol.WS_PATH) as ws:
                await hello(ws)
                sender = asyncio.create_task(stream(ws, with_silence(read_audio(BUNDLED), 0.5, 1.5)))
                got = await receive(ws, Received(), until="turn_done", timeout_s=60)
                await asyncio.wait_for(sender, 10)
            (done,) = got.of("turn_done")
            assert "capital" in done["transcript"].lower(), done
            assert done["reply"], done

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(process.wait), 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _, errors = process.communicate(timeout=30)
    assert "Traceback" not in errors, errors
    journal = errors.splitlines()
    # One line per bad model when it failed, each with its file, why, and the fix.
    stt_lines = [x for x in journal if x.startswith("edgevoice.model_loader: stt model failed to load: ")]
    llm_lines = [x for x in journal if x.startswith("edgevoice.model_loader: llm model failed to load: ")]
    assert stt_lines, errors
    assert llm_lines, errors
    assert str(stt) in stt_lines[0]
    assert "edgevoice models verify" in stt_lines[0]
    assert str(llm) in llm_lines[0]
    assert "does not exist" in llm_lines[0]
    assert any(x.startswith("edgevoice: degraded: models failed to load (stt, llm)") for x in journal), errors
    assert "edgevoice.server: all models loaded: serving normally" in journal, errors
    print(f"\ndegraded: /healthz 503 {degraded_s:.1f} s after start; healthy {healed_s:.1f} s after the fix")


def test_a_config_error_still_exits_2(tmp_path: Path) -> None:
    """Only model files degrade the start: a bad config is still refused at once, for systemd not to retry."""
    config = tmp_path / "edgevoice.toml"
    config.write_text("[llm]\nmodel = \n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEVOICE_", "NOTIFY_", "WATCHDOG_"))}
    result = subprocess.run(
        [sys.executable, "-m", "edgevoice", "--config", str(config), "serve", "--port", "0", "--no-discovery"],
        env={**env, "EDGEVOICE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("edgevoice: error: "), result.stderr
    assert "Traceback" not in result.stderr
