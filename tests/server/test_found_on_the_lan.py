"""The daemon found by name: mDNS on loopback only, `edgevoice discover`, and `edgevoice client` with no URL."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import pytest

from edgevoice.config import Config
from edgevoice.discovery import browse
from edgevoice.engines.engines import Engines
from tests.support.daemon import serving_with
from tests.test_cli import BUNDLED

pytestmark = pytest.mark.slow


async def _run(*args: str, timeout_s: float = 120) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgevoice", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode(), err.decode()


async def test_box_is_found_by_name_and_talked_to(server_config: Config, engines: Engines, tmp_path: Path) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    async with serving_with(server_config, engines, discovery=True, name=name) as server:
        code, out, err = await _run("discover", "--interface", "127.0.0.1", "--timeout", "2")
        assert code == 0, err
        assert name in out
        assert f"ws://127.0.0.1:{server.port}/ws" in out

        reply = tmp_path / "reply.wav"
        code, out, err = await _run(
            "client", "--interface", "127.0.0.1", "--wav", str(BUNDLED), "--out", str(reply), "--json"
        )
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        ready = next(e for e in events if e["type"] == "ready")
        assert ready["box"] == name
        transcripts = [e["text"] for e in events if e["type"] == "transcript"]
        assert any("capital" in text.lower() for text in transcripts), transcripts
        assert reply.stat().st_size > 44
    # Withdrawn on shutdown: a browse right after no longer finds it.
    assert name not in [box.name for box in await browse("127.0.0.1", 2.0)]
