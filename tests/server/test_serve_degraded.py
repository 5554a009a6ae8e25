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
from edgevoice.bench.daemon import BenchError
from edgevoice.config import Config
from edgevoice.models.registry import Kind, default_stt_path, resolve
from edgevoice.protocol import Error, TurnDone
from tests.conftest import with_silence
from tests.support.daemon import Daemons
from tests.support.wire import Received, expect, hello, receive, stream
from tests.test_cli import BUNDLED

pytestmark = pytest.mark.slow
RETRY_S = 0.5
# `edgevoice serve` with the retry interval lowered: a test cannot wait 30 s per look.
SERVE = (
    "import sys, edgevoice.engines.loader as loader; loader.RETRY_INTERVAL_S = float(sys.argv.pop(1)); "
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


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with asyncio.timeout(10), http.get(url) as response:
        return response.status, await response.json()


async def test_bad_models_degrade_then_heal(
    config: Config, daemons: Daemons, tmp_path: Path, notify: tuple[socket.socket, str]
) -> None:
    sock, notify_path = notify
    stt, llm = tmp_path / "stt.bin", tmp_path / "missing" / "llm.gguf"
    stt.write_bytes(os.urandom(37))
    llm.parent.mkdir()
    env = {
        **daemons.env,
        "EDGEVOICE_STT_MODEL": str(stt),
        "EDGEVOICE_LLM_MODEL": str(llm),
        "NOTIFY_SOCKET": notify_path,
    }
    started = time.monotonic()
    daemon = daemons.new(env=env, program=(sys.executable, "-c", SERVE, str(RETRY_S)))
    try:
        await daemon.start(120)
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", daemon.output.splitlines()[0])
        assert found, daemon.output
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
                error = await expect(ws, Error)
                closing = await asyncio.wait_for(ws.receive(), 10)
            assert (error.code, error.fatal) == ("models_unavailable", True)
            assert closing.data == protocol.CLOSE_TRY_LATER
            assert daemon.returncode is None, "the daemon exited instead of serving degraded"

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
                got = await receive(ws, Received(), until=TurnDone, timeout_s=60)
                await asyncio.wait_for(sender, 10)
            (done,) = got.of(TurnDone)
            assert "capital" in done.transcript.lower(), done
            assert done.reply, done

        daemon.send_signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0
    finally:
        await daemon.stop()
    errors = daemon.errors
    assert "Traceback" not in errors, errors
    journal = errors.splitlines()
    # One line per bad model when it failed, each with its file, why, and the fix.
    stt_lines = [x for x in journal if x.startswith("edgevoice.engines.loader: stt model failed to load: ")]
    llm_lines = [x for x in journal if x.startswith("edgevoice.engines.loader: llm model failed to load: ")]
    assert stt_lines, errors
    assert llm_lines, errors
    assert str(stt) in stt_lines[0]
    assert "edgevoice models verify" in stt_lines[0]
    assert str(llm) in llm_lines[0]
    assert "does not exist" in llm_lines[0]
    assert any(x.startswith("edgevoice: degraded: models failed to load (stt, llm)") for x in journal), errors
    assert "edgevoice.server.app: all models loaded: serving normally" in journal, errors
    print(f"\ndegraded: /healthz 503 {degraded_s:.1f} s after start; healthy {healed_s:.1f} s after the fix")


async def test_a_config_error_still_exits_2(daemons: Daemons, tmp_path: Path) -> None:
    """Only model files degrade the start: a bad config is still refused at once, for systemd not to retry."""
    config = tmp_path / "edgevoice.toml"
    config.write_text("[llm]\nmodel = \n")
    daemon = daemons.new(config=config)
    with pytest.raises(BenchError, match="exited with status 2"):
        await daemon.start(60)
    assert daemon.returncode == 2, daemon.errors
    assert daemon.errors.startswith("edgevoice: error: "), daemon.errors
    assert "Traceback" not in daemon.errors
