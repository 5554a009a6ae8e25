"""A daemon whose models failed to load, in process with a stand-in loader: every route says so.

No native model is loaded: the loader is tests.engines.test_loader.FakeLoad, which fails a kind
whose file holds b"bad" or is missing, and otherwise gives engines with nothing loaded.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgevoice import protocol
from edgevoice.config import Config
from edgevoice.engines import loader as model_loader
from edgevoice.engines.loader import ModelLoader
from edgevoice.protocol import Error
from edgevoice.server.app import Server
from tests.engines.test_loader import FakeLoad
from tests.support.daemon import serving_with
from tests.support.wire import expect


def degraded_config(config: Config, tmp_path: Path, auth: str = "auto") -> Config:
    """Good files for the voice, a corrupt STT model, no LLM model at all."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "stt.bin").write_bytes(b"bad")
    for name in ("voice.onnx", "voice.onnx.json"):
        (tmp_path / name).write_bytes(b"good")
    return dataclasses.replace(
        config,
        data_dir=tmp_path / "data",
        stt=dataclasses.replace(config.stt, model=tmp_path / "stt.bin"),
        llm=dataclasses.replace(config.llm, model=tmp_path / "llm.gguf"),
        tts=dataclasses.replace(config.tts, voice=tmp_path / "voice.onnx"),
        server=dataclasses.replace(config.server, discovery=False, auth=auth),
    )


def serving_degraded(config: Config) -> AbstractAsyncContextManager[Server]:
    return serving_with(config, loader=ModelLoader(config, FakeLoad(config)))


@pytest.fixture
async def degraded(config: Config, tmp_path: Path) -> AsyncIterator[Server]:
    async with serving_degraded(degraded_config(config, tmp_path)) as server:
        yield server


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with asyncio.timeout(10), http.get(url) as response:
        body = await (response.json() if response.content_type == "application/json" else response.text())
        return response.status, body


def _named(failures: list[dict[str, Any]]) -> dict[str, str]:
    return {f["model"]: f["reason"] for f in failures}


async def test_healthz_is_503_naming_each_model_its_file_and_why(degraded: Server, tmp_path: Path) -> None:
    assert degraded.degraded
    async with aiohttp.ClientSession() as http:
        status, health = await _get(http, degraded.http_url + "/healthz")
    assert status == 503
    assert health["status"] == "degraded"
    assert health["models_ready"] is False
    failures = {f["model"]: f for f in health["model_failures"]}
    assert set(failures) == {"stt", "llm"}
    assert failures["stt"]["path"] == str(tmp_path / "stt.bin")
    assert failures["llm"]["path"] == str(tmp_path / "llm.gguf")
    assert "is no good" in failures["stt"]["reason"]
    assert "edgevoice models verify" in failures["llm"]["fix"]
    assert failures["llm"]["setting"] == "llm.model"
    assert health["box"] == degraded.name


async def test_status_and_metrics_say_the_same(degraded: Server) -> None:
    async with aiohttp.ClientSession() as http:
        status, body = await _get(http, degraded.http_url + "/api/status")
        assert status == 200
        assert body["models_ready"] is False
        assert set(_named(body["model_failures"])) == {"stt", "llm"}
        assert body["engines"] == {}
        status, metrics = await _get(http, degraded.http_url + "/metrics")
    assert status == 200
    assert "\nedgevoice_models_ready 0\n" in metrics
    for kind, ready in (("stt", 0), ("llm", 0), ("tts", 1)):
        assert f'\nedgevoice_model_ready{{model="{kind}"}} {ready}\n' in metrics


async def test_a_socket_gets_models_unavailable_then_1013(degraded: Server) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(degraded.ws_url) as ws:
        error = await expect(ws, Error)
        closing = await asyncio.wait_for(ws.receive(), 10)
    assert error.code == "models_unavailable"
    assert error.fatal is True
    assert "stt, llm" in error.message
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert closing.data == protocol.CLOSE_TRY_LATER
    assert closing.extra == "models unavailable; try again later"


async def test_healthz_stays_open_where_the_api_asks_for_a_token(config: Config, tmp_path: Path) -> None:
    async with (
        serving_degraded(degraded_config(config, tmp_path, auth="token")) as server,
        aiohttp.ClientSession() as http,
    ):
        status, health = await _get(http, server.http_url + "/healthz")
        assert status == 503
        assert health == {"status": "degraded", "version": health["version"]}  # which files, and why: to the paired
        status, _ = await _get(http, server.http_url + "/api/status")
        assert status == 401
        token = server.tokens.current()
        async with http.get(server.http_url + "/healthz", headers={"Authorization": f"Bearer {token}"}) as got:
            assert got.status == 503
            health = await got.json()
        assert set(_named(health["model_failures"])) == {"stt", "llm"}


async def test_fixing_the_files_makes_it_healthy(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_loader, "RETRY_INTERVAL_S", 0.02)
    async with serving_degraded(degraded_config(config, tmp_path)) as server:
        (tmp_path / "stt.bin").write_bytes(b"fixed")
        (tmp_path / "llm.gguf").write_bytes(b"found")
        await asyncio.wait_for(server.models.loaded.wait(), 10)
        assert not server.degraded
        async with aiohttp.ClientSession() as http:
            status, health = await _get(http, server.http_url + "/healthz")
            assert status == 200
            assert health["status"] == "ok"
            assert health["models_ready"] is True
            assert health["model_failures"] == []
            _, metrics = await _get(http, server.http_url + "/metrics")
        assert "\nedgevoice_models_ready 1\n" in metrics


async def test_stop_while_degraded_ends_the_retry(config: Config, tmp_path: Path) -> None:
    async with serving_degraded(degraded_config(config, tmp_path)) as server:
        retry = server.models.retrying
        assert retry is not None
        assert not retry.done()
        await asyncio.wait_for(server.stop(), 10)
        assert retry.cancelled()
