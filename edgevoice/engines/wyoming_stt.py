"""Speech to text on a Wyoming server (another edgevoice, wyoming-faster-whisper, ...): [stt] url = "tcp://HOST:PORT"."""

from __future__ import annotations

import logging

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop

from edgevoice.audio.pcm import SAMPLE_RATE, Samples, to_pcm16
from edgevoice.config import SttConfig
from edgevoice.engines.remote import RemoteError, RemoteHealth, failure
from edgevoice.engines.stt import screen
from edgevoice.engines.worker import CancelToken
from edgevoice.engines.wyoming_link import WyomingLink, describe

_log = logging.getLogger(__name__)
CHUNK_SAMPLES = SAMPLE_RATE // 10
_MAX_EVENTS_BEFORE_TRANSCRIPT = 10_000
"""A streaming server sends transcript chunks first; this many events without the transcript is a broken one."""


class WyomingStt:
    """A Wyoming asr service; one connection per transcription. Safe from any one thread at a time."""

    computes_here = False

    def __init__(self, config: SttConfig) -> None:
        self._config = config
        self.url = config.url
        self.health = RemoteHealth("stt", config.url, self.check)
        try:
            self.check()
        except (OSError, RemoteError) as err:
            raise RemoteError(f"the speech-to-text server at {self.url}: {err}") from None
        self.health.succeeded()

    def check(self) -> None:
        """Raise unless the server answers describe with a speech-to-text service."""
        info = describe(self.url)
        if not any(program.installed for program in info.asr):
            raise RemoteError("it offers no speech-to-text (asr) service")

    def transcribe(self, samples: Samples, token: CancelToken | None = None) -> str:
        """The clip's words, as the server hears them; "" for a clip with nothing to hear, without asking."""
        clip = screen(samples)
        if clip is None:
            return ""
        pcm = to_pcm16(clip).tobytes()
        step = CHUNK_SAMPLES * 2
        try:
            with WyomingLink(self.url, token) as link:
                link.write(Transcribe(language=self._config.language).event())
                link.write(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
                for start in range(0, len(pcm), step):
                    if token is not None:
                        token.check()
                    chunk = AudioChunk(rate=SAMPLE_RATE, width=2, channels=1, audio=pcm[start : start + step])
                    link.write(chunk.event())
                link.write(AudioStop().event())
                for _ in range(_MAX_EVENTS_BEFORE_TRANSCRIPT):
                    event = link.read()
                    if Transcript.is_type(event.type):
                        text = str(Transcript.from_event(event).text or "")
                        break
                else:
                    raise RemoteError(f"no transcript after {_MAX_EVENTS_BEFORE_TRANSCRIPT} events")
        except (OSError, RemoteError, KeyError) as err:
            raise failure(self.health, token, "transcribing failed", err) from None
        self.health.succeeded()
        return " ".join(text.split())

    def warm_up(self) -> None:
        """One transcription of a second of quiet noise: the whole path works, and the server has run once."""
        rng = np.random.default_rng(0)
        self.transcribe((rng.standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32))
