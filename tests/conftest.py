"""Shared fixtures: the real default models, loaded once, and speech made by espeak-ng and Piper."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.pcm import SAMPLE_RATE, Samples, read_audio
from edgevoice.bench import pauses
from edgevoice.config import Config, load_config
from edgevoice.engines.engines import Engines
from edgevoice.models.registry import default_stt_path
from edgevoice.server.app import Server
from tests.support.daemon import Daemons, serve_environment, serving_with

MODEL_FIXTURES = frozenset({"daemons", "engines", "piper_speech", "server", "pulse"})
"""Fixtures that load the real models (daemons: in a process of their own) or start a PulseAudio room for the
box's own mic and speaker: a test that uses one, directly or through another fixture, is slow. A test that
runs the models another way (the command line in a subprocess) is marked slow where it stands."""

SENTENCES = [
    "What is the capital of France?",
    "Turn on the kitchen lights, please.",
    "How far away is the moon from the earth?",
    "Tell me a short story about a brave little dog.",
    "What time does the bakery open tomorrow morning?",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The quick tier, `pytest -m "not slow"`, leaves out what loads the models or runs whole systems (e2e/)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & MODEL_FIXTURES or "e2e" in item.path.parts:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(None, environ={})


@pytest.fixture(scope="session")
def engines(config: Config) -> Iterator[Engines]:
    loaded = Engines.load(config)
    yield loaded
    loaded.close()


@pytest.fixture
def server_config(config: Config, tmp_path: Path) -> Config:
    """The test config with its own data directory (conversations) and no mDNS; models stay where they are."""
    return dataclasses.replace(
        config,
        data_dir=tmp_path / "data",
        stt=dataclasses.replace(config.stt, model=config.stt.model or default_stt_path(config)),
        server=dataclasses.replace(config.server, discovery=False),
    )


@pytest.fixture
async def server(server_config: Config, engines: Engines) -> AsyncIterator[Server]:
    """A real daemon on 127.0.0.1, a free port, sharing the session's loaded engines."""
    async with serving_with(server_config, engines) as running:
        yield running


@pytest.fixture
def serve_env(config: Config, tmp_path: Path) -> dict[str, str]:
    """The environment `edgevoice serve` runs in: its own data directory, no settings, no systemd."""
    return serve_environment(config, tmp_path / "data")


@pytest.fixture
async def daemons(serve_env: dict[str, str]) -> AsyncIterator[Daemons]:
    """`edgevoice serve` processes, in serve_env unless told otherwise; whatever still runs is stopped at the end."""
    started = Daemons(serve_env)
    try:
        yield started
    finally:
        await started.stop_all()


def _espeak(text: str, out: Path) -> Samples:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: ./install.sh --dev installs it")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "155", "-w", str(out), text], check=True, timeout=30)
    return read_audio(out)


@pytest.fixture(scope="session")
def espeak(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Samples]:
    """Speech for a text from espeak-ng, as 16 kHz mono float32."""
    folder = tmp_path_factory.mktemp("espeak")
    counter = iter(range(1_000_000))
    return lambda text: _espeak(text, folder / f"{next(counter)}.wav")


@pytest.fixture(scope="session")
def piper_speech(config: Config) -> Callable[[str], Samples]:
    """Speech for a text from the Piper voice, as 16 kHz mono float32: the same take of a text every time
    (no noise between takes), so a test hears the same words in every run."""
    steady = dataclasses.replace(config.tts, noise_scale=0.0, noise_w_scale=0.0)
    return pauses.piper(dataclasses.replace(config, tts=steady))


def with_silence(samples: Samples, before_s: float = 0.4, after_s: float = 1.2) -> Samples:
    pad = [np.zeros(int(s * SAMPLE_RATE), dtype=np.float32) for s in (before_s, after_s)]
    return np.concatenate([pad[0], samples, pad[1]])


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private PulseAudio server: sink 'mic' (its monitor is the default source) and sink 'speaker'."""
    if shutil.which("pulseaudio") is None:
        pytest.fail("pulseaudio is not installed: ./install.sh --dev installs it")
    runtime = tmp_path / "pulse"
    runtime.mkdir()
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(runtime), "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("PULSE_SERVER", None)
    subprocess.run(
        [
            "pulseaudio",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "-n",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=mic",
            "--load=module-null-sink sink_name=speaker",
        ],
        env=env,
        check=True,
        timeout=30,
        capture_output=True,
    )
    try:
        for command in (["pactl", "set-default-source", "mic.monitor"], ["pactl", "set-default-sink", "speaker"]):
            subprocess.run(command, env=env, check=True, timeout=10)
        yield env
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, check=False, timeout=30)
