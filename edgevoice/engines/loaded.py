"""The engines a process uses, loaded once and warmed up, each behind its own worker thread."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence

from edgevoice.audio.pcm import Pcm16, Samples
from edgevoice.config import Config
from edgevoice.engines.llm import LlamaLlm, Message
from edgevoice.engines.stt import WhisperStt
from edgevoice.engines.tts import PiperTts
from edgevoice.engines.worker import EngineWorker
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
        if warm:
            if stt is not None:
                stt.warm_up()
            if llm is not None:
                llm.warm_up(config.llm.system_prompt)
            if tts is not None:
                tts.warm_up()
        _log.info("engines %s ready in %.1f s", sorted(k.value for k in kinds), time.monotonic() - started)
        return cls(config, stt, llm, tts)

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
        return await self.stt_worker.run(lambda: stt.transcribe(samples))

    def reply(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        llm = self.llm
        return self.llm_worker.stream(lambda token: llm.stream_reply(messages, token))

    def speech(self, text: str) -> AsyncIterator[Pcm16]:
        tts = self.tts
        return self.tts_worker.stream(lambda token: tts.synthesize(text, token))

    def close(self) -> None:
        for worker in (self.stt_worker, self.llm_worker, self.tts_worker):
            worker.close()
