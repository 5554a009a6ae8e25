"""The engines a process uses, loaded once and warmed up, each behind its own worker thread.

Two cores cannot run the language model and the voice at full speed at once. The voice goes
first: while a turn's first words are being voiced, the model waits between tokens, so the first
audio comes as soon as it can; a voice that fails holds nothing back.

Several conversations share the engines: every job carries its turn's Claim, and each engine runs
the best waiting claim first (schedule.py): confirmed turns before speculative work, background
work (partial transcripts, prompts read ahead) last and stopped when a turn needs the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Iterator, Sequence

from edgevoice.audio.pcm import Pcm16, Samples
from edgevoice.config import Config
from edgevoice.engines.kinds import LanguageModel, SpeechToText, TextToSpeech
from edgevoice.engines.llm import GenerationStats, MayGo, Message
from edgevoice.engines.memory import give_back_free_memory
from edgevoice.engines.schedule import Claim, Rank
from edgevoice.engines.worker import CancelToken, EngineBusy, EngineWorker
from edgevoice.errors import EdgevoiceError
from edgevoice.models.registry import Kind, resolve

_log = logging.getLogger(__name__)
ALL_KINDS = frozenset(Kind)


class Engines:
    def __init__(
        self, config: Config, stt: SpeechToText | None, llm: LanguageModel | None, tts: TextToSpeech | None
    ) -> None:
        self.config = config
        self._stt, self._llm, self._tts = stt, llm, tts
        self.stt_worker = EngineWorker("stt", on_idle=self._all_idle)
        self.llm_worker = EngineWorker("llm", on_idle=self._all_idle)
        self.tts_worker = EngineWorker("tts", on_idle=self._all_idle)
        self._llm_may_go = threading.Event()
        """Clear while some turn's first words are being voiced: every reply waits before its next token."""
        self._llm_may_go.set()
        self._first_words = 0
        """First words being voiced now (one per turn at most; turns of several clients may overlap)."""
        self._hearing = _Hold()
        """Held while a turn someone waits for is transcribed: replies already playing wait meanwhile."""
        self._reading_ahead = threading.Lock()
        """Held by each batch the model reads ahead, and by each transcription: the two never compute
        at once. Beside each other, both engines' threads would spin at each other's
        barriers on the same cores, and the transcription would take several times as long."""

    def _all_idle(self) -> None:
        """Called by each engine thread as its queue empties. Once no engine has work left, the memory
        the turn freed goes back to the system: not sooner, since what is handed back must be faulted
        in again by the next allocation, which would cost a turn under way its time."""
        if any(worker.busy or worker.waiting for worker in (self.stt_worker, self.llm_worker, self.tts_worker)):
            return
        give_back_free_memory()

    @classmethod
    def load(cls, config: Config, kinds: Collection[Kind] = ALL_KINDS, warm: bool = True) -> Engines:
        """Load (and warm up) the engines named by kinds; raise ModelError naming a bad file or a server
        that does not answer. An engine whose [kind] url is set runs on that server instead of here."""
        started = time.monotonic()
        stt = _speech_to_text(config) if Kind.STT in kinds else None
        llm = _language_model(config) if Kind.LLM in kinds else None
        tts = _text_to_speech(config) if Kind.TTS in kinds else None
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
    def stt(self) -> SpeechToText:
        if self._stt is None:
            raise EdgevoiceError("the speech-to-text engine was not loaded")
        return self._stt

    @property
    def llm(self) -> LanguageModel:
        if self._llm is None:
            raise EdgevoiceError("the language model engine was not loaded")
        return self._llm

    @property
    def tts(self) -> TextToSpeech:
        if self._tts is None:
            raise EdgevoiceError("the text-to-speech engine was not loaded")
        return self._tts

    @property
    def stt_idle(self) -> bool:
        """Whether speech-to-text has nothing running or waiting: time to spare for work that may wait."""
        return not self.stt_worker.busy and not self.stt_worker.waiting

    @property
    def serving_turns(self) -> bool:
        """Whether any engine runs or queues work for a turn (not background work)."""
        return any(worker.serving_turns for worker in (self.stt_worker, self.llm_worker, self.tts_worker))

    def expected_wait_s(self, claim: Claim) -> float:
        """About how long a turn with this claim would wait to start: for speech-to-text, its first
        engine. (The model's and the voice's jobs are streams paced by their listeners: their length
        says little about the wait, and the scheduler already puts a turn's first words first.)"""
        return self.stt_worker.expected_wait_s(claim)

    async def transcribe(self, samples: Samples, claim: Claim | None = None) -> str:
        """The words in samples. For a turn someone waits for (not a partial transcript), the later
        pieces of other replies, already playing, wait while it is transcribed here (see _LaterWork)."""
        stt = self.stt
        urgent = claim is not None and claim.rank is not Rank.BACKGROUND
        # A transcription on another machine leaves this box's cores to the model and the voice.
        hearing = self._hearing if urgent and stt.computes_here else contextlib.nullcontext()
        reading_ahead = self._reading_ahead if stt.computes_here else contextlib.nullcontext()

        def job(token: CancelToken) -> str:
            # A batch the model reads ahead finishes first, and no other starts meanwhile.
            with hearing, reading_ahead:
                return stt.transcribe(samples, token)

        return await self.stt_worker.run_cancellable(job, claim)

    def reply(
        self,
        messages: Sequence[Message],
        claim: Claim | None = None,
        key: Hashable | None = None,
        stats: Callable[[GenerationStats], None] | None = None,
    ) -> AsyncIterator[str]:
        """The model's reply as it is generated; it holds back between tokens while first words are voiced.

        key: the conversation, whose evaluated prompt the model keeps between its turns.
        stats: given the reply's GenerationStats on the engine thread when it ends.
        """
        llm, worker = self.llm, self.llm_worker
        may_go: MayGo = self._llm_may_go
        give_way = None
        if claim is not None:
            may_go = _LaterWork(self._llm_may_go, self._hearing, claim, worker)
            mine = claim

            def give_way(before: Callable[[], None], after: Callable[[], None]) -> int:
                return worker.give_way(mine, before, after)

        def produce(token: CancelToken) -> Iterator[str]:
            try:
                yield from llm.stream_reply(messages, token, may_go, key, give_way)
            finally:
                if stats is not None:
                    stats(llm.last_stats)

        return self.llm_worker.stream(produce, claim=claim)

    def prepare(self, messages: Sequence[Message], key: Hashable | None = None, heard: str = "") -> None:
        """Let the language model read the start of the next turn's prompt while it has nothing else
        to do: it gives way as soon as a turn needs it, and never computes beside a transcription.
        Best effort: a busy engine skips it. heard: the user's words so far (a partial transcript),
        read ahead too."""
        llm, worker = self._llm, self.llm_worker
        if llm is None:
            return
        claim = Claim(time.monotonic(), Rank.BACKGROUND)

        def read_ahead() -> int:
            return llm.prepare(messages, lambda: worker.waiting > 0, key, heard, self._reading_ahead)

        try:
            pending = worker.submit(read_ahead, claim)
        except EngineBusy:
            return
        pending.add_done_callback(_log_prepare_failure)

    async def speech(self, text: str, *, first_words: bool = False, claim: Claim | None = None) -> AsyncIterator[Pcm16]:
        """text spoken, in pieces as Piper makes them.

        first_words: these are the first words of a turn, so every reply waits between tokens until
        they give their first audio, fail or are given up.
        """
        tts, worker = self.tts, self.tts_worker
        later = None if claim is None else _LaterWork(None, self._hearing, claim, worker)

        def synthesize(token: CancelToken) -> Iterator[Pcm16]:
            if later is not None:
                while not later.wait(_WAIT_STEP_S):
                    token.check()
            yield from tts.synthesize(text, token)

        holding = first_words
        if holding:
            self._hold_llm()
        try:
            async for pcm in worker.stream(synthesize, claim=claim):
                if holding:
                    holding = False
                    self._release_llm()
                yield pcm
        finally:
            if holding:
                self._release_llm()

    def _hold_llm(self) -> None:
        self._first_words += 1
        self._llm_may_go.clear()

    def _release_llm(self) -> None:
        self._first_words -= 1
        if self._first_words == 0:
            self._llm_may_go.set()

    def close(self) -> None:
        for worker in (self.stt_worker, self.llm_worker, self.tts_worker):
            worker.close()


_WAIT_STEP_S = 0.05
"""How often work that waits looks again (and whether it was given up)."""


class _Hold:
    """A count of holders, thread-safe, and an event set while nobody holds: `with hold:` holds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self.free = threading.Event()
        self.free.set()

    def __enter__(self) -> None:
        with self._lock:
            self._holders += 1
            self.free.clear()

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self.free.set()


class _LaterWork:
    """May a reply compute its next piece now? It waits while any turn's first words are voiced
    (first_words: the model's tokens; None for the voice), and, once its own first words are out,
    while another turn someone waits for is transcribed: the cores go to the newest speaker, and
    a reply already playing has its audio ahead of it. It never waits while its own engine has
    other work queued: that work may be the newest turn's, which gets there by the engine's order.
    """

    def __init__(self, first_words: threading.Event | None, hearing: _Hold, claim: Claim, worker: EngineWorker) -> None:
        self._first_words = first_words
        self._hearing = hearing
        self._claim = claim
        self._worker = worker

    def wait(self, timeout: float | None = None) -> bool:
        if self._first_words is not None and not self._first_words.wait(timeout):
            return False
        if not self._claim.first_words_out or self._worker.waiting:
            return True
        return self._hearing.free.wait(timeout)


def _speech_to_text(config: Config) -> SpeechToText:
    if config.stt.url:
        from edgevoice.engines.wyoming_stt import WyomingStt  # noqa: PLC0415

        return WyomingStt(config.stt)
    from edgevoice.engines.stt import WhisperStt  # noqa: PLC0415

    return WhisperStt(config.stt, resolve(config, Kind.STT).path)


def _language_model(config: Config) -> LanguageModel:
    if config.llm.url:
        from edgevoice.engines.openai_llm import OpenAiLlm  # noqa: PLC0415

        return OpenAiLlm(config.llm)
    from edgevoice.engines.llm import LlamaLlm  # noqa: PLC0415

    return LlamaLlm(config.llm, resolve(config, Kind.LLM).path)


def _text_to_speech(config: Config) -> TextToSpeech:
    if config.tts.url:
        from edgevoice.engines.wyoming_tts import WyomingTts  # noqa: PLC0415

        return WyomingTts(config.tts)
    from edgevoice.engines.tts import PiperTts  # noqa: PLC0415

    return PiperTts(config.tts, resolve(config, Kind.TTS).path)


def _log_prepare_failure(done: asyncio.Future[int]) -> None:
    if not done.cancelled() and (err := done.exception()) is not None:
        _log.warning("preparing the next prompt failed: %s", err)
