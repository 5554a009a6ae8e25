"""Speech synthesis on a Wyoming server (wyoming-piper, another edgevoice, ...): [tts] url = "tcp://HOST:PORT".

The turn needs the voice's sample rate before the first words are spoken, so the rate is learned
once, from a word synthesized at load; audio that later comes at another rate, width or channel
count is converted to it (the wyoming library's AudioChunkConverter).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.tts import Synthesize

from edgevoice.audio.pcm import Pcm16
from edgevoice.config import TtsConfig
from edgevoice.engines.remote import RemoteError, RemoteHealth, failure
from edgevoice.engines.worker import CancelToken
from edgevoice.engines.wyoming_link import WyomingLink, describe

_log = logging.getLogger(__name__)
_PROBE_TEXT = "Ready."
_MAX_EVENTS = 100_000
"""Events one synthesis may take (a chunk is ~50 ms of audio): a server that never stops is cut off."""


class WyomingTts:
    """A Wyoming tts service; one connection per piece of text. Safe from any one thread at a time."""

    def __init__(self, config: TtsConfig) -> None:
        self.url = config.url
        self.health = RemoteHealth("tts", config.url, self.check)
        self._rate = 0
        try:
            self.check()
            pieces = list(self._synthesize(_PROBE_TEXT, None, learn_rate=True))
        except (OSError, RemoteError) as err:
            raise RemoteError(f"the text-to-speech server at {self.url}: {err}") from None
        if not pieces or not self._rate:
            raise RemoteError(f"the text-to-speech server at {self.url} sent no audio for {_PROBE_TEXT!r}")
        self.health.succeeded()

    def check(self) -> None:
        """Raise unless a tts service answers describe. Its voice is the server's default: the one its
        owner chose (a server may list every voice it could download as installed)."""
        info = describe(self.url)
        if not any(program.installed for program in info.tts):
            raise RemoteError("it offers no text-to-speech (tts) service")

    @property
    def sample_rate(self) -> int:
        return self._rate

    def synthesize(self, text: str, token: CancelToken | None = None) -> Iterator[Pcm16]:
        """Mono 16-bit PCM at sample_rate, a chunk at a time as the server sends it."""
        try:
            yield from self._synthesize(text, token, learn_rate=False)
        except (OSError, RemoteError, KeyError, ValueError) as err:
            raise failure(self.health, token, "synthesis failed", err) from None
        self.health.succeeded()

    def _synthesize(self, text: str, token: CancelToken | None, *, learn_rate: bool) -> Iterator[Pcm16]:
        with WyomingLink(self.url, token) as link:
            link.write(Synthesize(text=text).event())
            converter: AudioChunkConverter | None = None
            for _ in range(_MAX_EVENTS):
                event = link.read()
                if AudioStart.is_type(event.type):
                    start = AudioStart.from_event(event)
                    if learn_rate:
                        self._rate = int(start.rate)
                    converter = AudioChunkConverter(rate=self._rate, width=2, channels=1)
                elif AudioChunk.is_type(event.type):
                    if converter is None:
                        raise RemoteError("it sent audio before audio-start")
                    chunk = converter.convert(AudioChunk.from_event(event))
                    if token is not None:
                        token.check()
                    if chunk.audio:
                        yield np.frombuffer(chunk.audio, dtype="<i2").astype(np.int16)
                elif AudioStop.is_type(event.type):
                    return
            raise RemoteError(f"its audio did not end within {_MAX_EVENTS} events")

    def speak(self, text: str) -> Pcm16:
        parts = list(self.synthesize(text))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def warm_up(self) -> None:
        """The voice was heard at load; one more word shows the server still answers."""
        self.speak(_PROBE_TEXT)
