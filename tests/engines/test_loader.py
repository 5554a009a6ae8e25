"""The model loader without native models: which failed and why, the fix it gives, and its retry."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Collection
from pathlib import Path

import pytest

from edgevoice.config import Config
from edgevoice.engines import loader as model_loader
from edgevoice.engines.engines import ALL_KINDS, Engines
from edgevoice.engines.loader import ModelFailure, ModelLoader, diagnose, file_stamps, report
from edgevoice.errors import ModelError
from edgevoice.models.registry import Kind


class FakeLoad:
    """Engines.load's stand-in: a kind fails while its file holds b"bad" or is missing."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.calls: list[frozenset[Kind]] = []

    def __call__(self, config: Config, kinds: Collection[Kind], warm: bool) -> Engines:
        self.calls.append(frozenset(kinds))
        paths = {Kind.STT: config.stt.model, Kind.LLM: config.llm.model, Kind.TTS: config.tts.voice}
        for kind in Kind:
            path = paths[kind]
            if kind in kinds and path is not None and (not path.exists() or path.read_bytes() == b"bad"):
                raise ModelError(f"{kind.value} model {path} is no good")
        return Engines(config, None, None, None)


@pytest.fixture
def files(config: Config, tmp_path: Path) -> Config:
    """A config naming three small files of its own: stt.bin, llm.gguf, voice.onnx (+ .json)."""
    for name in ("stt.bin", "llm.gguf", "voice.onnx", "voice.onnx.json"):
        (tmp_path / name).write_bytes(b"good")
    return dataclasses.replace(
        config,
        stt=dataclasses.replace(config.stt, model=tmp_path / "stt.bin"),
        llm=dataclasses.replace(config.llm, model=tmp_path / "llm.gguf"),
        tts=dataclasses.replace(config.tts, voice=tmp_path / "voice.onnx"),
    )


def test_a_good_load_has_no_failures(files: Config) -> None:
    loader = ModelLoader(files, FakeLoad(files))
    engines = loader.load()
    assert engines is not None
    assert loader.ready
    assert loader.failures == ()
    assert not loader.changed()
    assert report(True, loader.failures)["model_failures"] == []


def test_every_bad_model_is_named_with_its_file_and_reason(
    files: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "stt.bin").write_bytes(b"bad")
    (tmp_path / "llm.gguf").unlink()
    fake = FakeLoad(files)
    loader = ModelLoader(files, fake)
    assert loader.load() is None
    assert [(f.kind, f.path) for f in loader.failures] == [
        (Kind.STT, tmp_path / "stt.bin"),
        (Kind.LLM, tmp_path / "llm.gguf"),
    ]
    assert "is no good" in loader.failures[0].reason
    # One load of all, then each kind alone to name every bad one, not just the first.
    assert fake.calls == [ALL_KINDS, {Kind.STT}, {Kind.LLM}, {Kind.TTS}]
    lines = [r.getMessage() for r in caplog.records if r.name == "edgevoice.engines.loader"]
    assert len(lines) == 2, lines
    assert lines[1].startswith(f"llm model failed to load: llm model {tmp_path / 'llm.gguf'} is no good; fix: ")
    said = report(False, loader.failures)
    assert said["models_ready"] is False
    assert [f["model"] for f in said["model_failures"]] == ["stt", "llm"]
    assert said["model_failures"][1] == {
        "model": "llm",
        "path": str(tmp_path / "llm.gguf"),
        "reason": f"llm model {tmp_path / 'llm.gguf'} is no good",
        "default": False,
        "setting": "llm.model",
        "environment": "EDGEVOICE_LLM_MODEL",
        "fix": f"put a GGUF chat model at {tmp_path / 'llm.gguf'}, or point llm.model at another one; "
        "then check with `edgevoice models verify`",
    }


def test_a_default_model_gets_the_command_that_makes_it(config: Config) -> None:
    failure = ModelFailure(Kind.STT, Path("/data/models/ggml-tiny.en.bin"), "missing", default=True)
    assert failure.fix.startswith("run `edgevoice models convert`")
    assert "stt.model (or EDGEVOICE_STT_MODEL)" in failure.fix
    assert ModelFailure(Kind.TTS, None, "not installed", default=True).to_json()["path"] is None
    assert ModelFailure(Kind.TTS, None, "x", default=True).environment == "EDGEVOICE_TTS_VOICE"


def test_changed_sees_a_file_appear_grow_or_be_replaced(files: Config, tmp_path: Path) -> None:
    llm = tmp_path / "llm.gguf"
    llm.unlink()
    loader = ModelLoader(files, FakeLoad(files))
    assert loader.load() is None
    assert not loader.changed()
    llm.write_bytes(b"bad")  # appeared
    assert loader.changed()
    assert loader.load() is None
    assert not loader.changed()
    os.utime(llm, ns=(1, 1))  # same size, another mtime
    assert loader.changed()
    assert loader.load() is None
    (tmp_path / "stt.bin").write_bytes(b"a good file, longer")  # not a failed model's file: ignored
    assert not loader.changed()


def test_file_stamps_follow_a_voice_and_its_json(files: Config, tmp_path: Path) -> None:
    before = file_stamps(files, Kind.TTS)
    assert [stamp[0] for stamp in before] == [str(tmp_path / "voice.onnx"), str(tmp_path / "voice.onnx.json")]
    (tmp_path / "voice.onnx.json").unlink()
    assert file_stamps(files, Kind.TTS)[1] == (str(tmp_path / "voice.onnx.json"), -1, -1)


def test_diagnose_names_what_the_message_names_when_each_loads_alone(files: Config, tmp_path: Path) -> None:
    def alone_ok(config: Config, kinds: Collection[Kind], warm: bool) -> Engines:
        return Engines(config, None, None, None)

    err = ModelError(f"warming {tmp_path / 'llm.gguf'} ran out of memory")
    assert [f.kind for f in diagnose(files, err, alone_ok)] == [Kind.LLM]
    assert [f.kind for f in diagnose(files, ModelError("no idea"), alone_ok)] == list(Kind)


async def test_retry_loads_once_the_bad_file_is_replaced(files: Config, tmp_path: Path) -> None:
    (tmp_path / "llm.gguf").write_bytes(b"bad")
    fake = FakeLoad(files)
    loader = ModelLoader(files, fake)
    assert loader.load() is None
    retry = asyncio.create_task(loader.retry(interval_s=0.01))
    await asyncio.sleep(0.1)
    assert not retry.done()
    assert len(fake.calls) == 4, "nothing changed, so nothing was loaded again"
    (tmp_path / "llm.gguf").write_bytes(b"a good model")
    engines = await asyncio.wait_for(retry, 10)
    assert isinstance(engines, Engines)
    assert loader.ready


async def test_retry_interval_is_the_module_constant(
    files: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the subprocess tests lower: read when the wait starts, not when the module was imported."""
    monkeypatch.setattr(model_loader, "RETRY_INTERVAL_S", 0.01)
    (tmp_path / "stt.bin").write_bytes(b"bad")
    loader = ModelLoader(files, FakeLoad(files))
    assert loader.load() is None
    assert loader.retry_interval_s == 0.01
    assert report(False, loader.failures)["model_retry_s"] == 0.01
    (tmp_path / "stt.bin").write_bytes(b"fixed")
    assert await asyncio.wait_for(loader.retry(), 10) is not None
