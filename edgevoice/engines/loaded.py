"""The engines a process uses, loaded once and warmed up, each behind its own worker thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Collection, Sequence

from edgevoice.audio.pcm import Pcm16, Samples
from edgevoice.config import Config
from edgevoice.engines.llm import LlamaLlm, Message
from edgevoice.engines.stt import WhisperStt
from edgevoice.engines.tts import PiperTts
from edgevoice.engines.worker import EngineBusy, EngineWorker
from edgevoice.errors import EdgevoiceError
from edgevoice.models.registry import Kind, resolve

_log = logging.getLogger(__name__)
ALL_KINDS = frozenset(Kind)


class Engines:
    def __init__(self, config: Config, stt: WhisperStt | None, llm: LlamaLlm | None, tts: PiperTts | None) -> None:
        self.config = config
        self._stt, self._llm, self._tts = stt, llm, tts
        self.stt_worker = EngineWorker("stt")
        self.llm_worker = EngineWorker("llm")
        self.tts_worker = EngineWorker("tts")

    @classmethod
    def load(cls, config: Config, kinds: Collection[Kind] = ALL_KINDS, warm: bool = True) -> Engines:
        """Load (and warm up) the engines named by kinds; raise ModelError naming a bad file."""
        started = time.monotonic()
        stt = WhisperStt(config.stt, resolve(config, Kind.STT).path) if Kind.STT in kinds else None
        llm = LlamaLlm(config.llm, resolve(config, Kind.LLM).path) if Kind.LLM in kinds else None
        tts = PiperTts(config.tts, resolve(config, Kind.TTS).path) if Kind.TTS in kinds else None
        engines = cls(config, stt, llm, tts)
        if warm:
            try:
                engines.warm_up()
            except BaseException:
                engines.close()
                raise
        _log.info("engines %s ready in %.1f s", sorted(k.value for k in kinds), time.monotonic() - started)
        return engines

    def warm_up(self) -> None:
        """One small job per engine, on the thread that will serve it (see EngineWorker.call)."""
        stt, llm, tts = self._stt, self._llm, self._tts
        if stt is not None:
            self.stt_worker.call(stt.warm_up)
        if llm is not None:
            self.llm_worker.call(lambda: llm.warm_up(self.config.llm.system_prompt))
        if tts is not None:
            self.tts_worker.call(tts.warm_up)

    @property
    def stt(self) -> WhisperStt:
        if self._stt is None:
            raise EdgevoiceError("the speech-to-text engine was not loaded")
        return self._stt

    @property
    def llm(self) -> LlamaLlm:
        if self._llm is None:
            raise EdgevoiceError("the language model engine was not loaded")
        return self._llm

    @property
    def tts(self) -> PiperTts:
        if self._tts is None:
            raise EdgevoiceError("the text-to-speech engine was not loaded")
        return self._tts

    async def transcribe(self, samples: Samples) -> str:
        stt = self.stt
        return await self.stt_worker.run_cancellable(lambda token: stt.transcribe(samples, token))

    def reply(self, messages: Sequence[Message], may_go: threading.Event | None = None) -> AsyncIterator[str]:
        llm = self.llm
        return self.llm_worker.stream(lambda token: llm.stream_reply(messages, token, may_go))

    def prepare(self, messages: Sequence[Message]) -> None:
        """Let the language model read the start of the next turn's prompt while it has nothing else
        to do; it gives way as soon as a turn needs it. Best effort: a busy engine skips it."""
        llm, worker = self._llm, self.llm_worker
        if llm is None:
            return
        try:
            pending = worker.submit(lambda: llm.prepare(messages, lambda: worker.waiting > 0))
        except EngineBusy:
            return
        pending.add_done_callback(_log_prepare_failure)

    def speech(self, text: str) -> AsyncIterator[Pcm16]:
        tts = self.tts
        return self.tts_worker.stream(lambda token: tts.synthesize(text, token))

    def close(self) -> None:
        for worker in (self.stt_worker, self.llm_worker, self.tts_worker):
            worker.close()


def _log_prepare_failure(done: asyncio.Future[int]) -> None:
    if not done.cancelled() and (err := done.exception()) is not None:
        _log.warning("preparing the next prompt failed: %s", err)
