"""What the turn asks of each kind of engine, here or on another machine; each runs on its own engine thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Protocol

from edgevoice.audio.pcm import Pcm16, Samples
from edgevoice.engines.llm import GenerationStats, GiveWay, MayGo, Message
from edgevoice.engines.worker import CancelToken


class SpeechToText(Protocol):
    """whisper.cpp here (engines.stt), or a Wyoming asr service (engines.wyoming_stt)."""

    computes_here: bool
    """Whether a transcription takes this box's cores (the model reading ahead then waits for it)."""

    def transcribe(self, samples: Samples, token: CancelToken | None = None) -> str: ...

    def warm_up(self) -> None: ...


class LanguageModel(Protocol):
    """llama.cpp here (engines.llm), or an OpenAI-compatible server (engines.openai_llm)."""

    last_stats: GenerationStats
    """Of the last reply: prompt tokens, those evaluated, tokens generated, time to the first."""

    @property
    def source(self) -> str:
        """What answers: the model file here, or the server's model and URL."""
        ...

    def stream_reply(
        self,
        messages: Sequence[Message],
        token: CancelToken,
        may_go: MayGo | None = None,
        key: Hashable | None = None,
        give_way: GiveWay | None = None,
    ) -> Iterator[str]:
        """key names the conversation, for a model that keeps each conversation's context between turns;
        give_way lets more urgent work use the model between tokens (a model on this box only)."""
        ...

    def prepare(
        self,
        messages: Sequence[Message],
        should_stop: Callable[[], bool],
        key: Hashable | None = None,
        heard: str = "",
        exclusive: threading.Lock | None = None,
    ) -> int:
        """Read the start of the next turn's prompt ahead (heard: the user's words so far), holding
        exclusive while it computes; the tokens read."""
        ...

    def warm_up(self, system_prompt: str) -> None: ...


class TextToSpeech(Protocol):
    """Piper here (engines.tts), or a Wyoming tts service (engines.wyoming_tts)."""

    @property
    def sample_rate(self) -> int: ...

    def synthesize(self, text: str, token: CancelToken | None = None) -> Iterator[Pcm16]: ...

    def speak(self, text: str) -> Pcm16: ...

    def warm_up(self) -> None: ...
