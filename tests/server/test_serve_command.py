"""`edgevoice serve` as a process: ready line, serving, clean stop on SIGTERM, clear errors."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from edgevoice import protocol
from edgevoice.bench.daemon import BenchError
from tests.support.daemon import Daemons
from tests.support.wire import hello
from tests.test_cli import BUNDLED as BUNDLED_QUESTION

pytestmark = pytest.mark.slow


async def test_serves_until_sigterm_then_closes_clients_cleanly(daemons: Daemons) -> None:
    daemon = await daemons.start()
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", daemon.output.splitlines()[0])
    assert found, daemon.output
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
    code = await daemon.wait(30)
    assert code == 0
    assert daemon.output.split("\n", 1)[1].strip() == "edgevoice: stopped"


async def test_port_in_use_is_a_clear_error(daemons: Daemons) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = daemons.new(port=port)
        with pytest.raises(BenchError, match="exited with status 2"):
            await daemon.start(120)
    assert daemon.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in daemon.errors
    assert "Traceback" not in daemon.errors


async def test_bad_tls_files_are_a_clear_error(daemons: Daemons, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    env = {**daemons.env, "EDGEVOICE_SERVER_TLS_CERT": str(cert), "EDGEVOICE_SERVER_TLS_KEY": str(cert)}
    daemon = daemons.new(env=env)
    with pytest.raises(BenchError, match="exited with status 2"):
        await daemon.start(60)
    assert daemon.returncode == 2
    assert "cannot use TLS certificate" in daemon.errors
    assert "Traceback" not in daemon.errors


async def test_mic_conversation_runs_beside_the_socket(daemons: Daemons, pulse: dict[str, str]) -> None:
    """--mic: the box's own microphone (a PulseAudio null sink's monitor) gets answered through its speaker."""
    env = {**daemons.env, **{k: v for k, v in pulse.items() if k.startswith(("PULSE", "XDG"))}}
    data = Path(daemons.env["EDGEVOICE_DATA_DIR"])
    heard = data.parent / "speaker.wav"
    recorder = await asyncio.create_subprocess_exec(
        "parecord", "--device=speaker.monitor", "--file-format=wav", "--channels=1", str(heard), env=env
    )
    try:
        daemon = await daemons.start("--mic", env=env, verbose=True)
        async with aiohttp.ClientSession() as http, http.get(daemon.http_url + "/healthz") as response:
            assert (await asyncio.wait_for(response.json(), 10))["mic"] is True
        await asyncio.sleep(1.0)  # the input stream opens just after the ready line
        player = await asyncio.create_subprocess_exec("paplay", "--device=mic", str(BUNDLED_QUESTION), env=env)
        assert await asyncio.wait_for(player.wait(), 30) == 0
        saved = data / "conversations" / "mic.json"
        for _ in range(300):  # 60 s
            if saved.exists():
                break
            await asyncio.sleep(0.2)
        history = json.loads(saved.read_text())["history"]
        assert "capital" in history[0][0].lower()
        assert history[0][1]
        await asyncio.sleep(3)  # the reply plays out through the speaker
        code = await daemon.stop()
    finally:
        recorder.send_signal(signal.SIGINT)
        await asyncio.wait_for(recorder.wait(), 10)
    assert code == 0, daemon.errors
    assert "Traceback" not in daemon.errors
    spoken, _ = soundfile.read(str(heard), dtype="float32")
    assert float(np.abs(spoken).max()) > 0.05  # the reply reached the speaker
