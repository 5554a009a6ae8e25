"""Wyoming events in, requests for the engines out: the server's protocol core, with no sockets and no awaits.

One instance per connection. feed(event) returns what the connection should do now (answer
describe, transcribe what was heard, speak a piece of text, end a text stream, handle a
sentence) or raises Refused, with the error to send back, for what it will not take.

Audio for a transcription may come at any rate, width and channel count Wyoming allows; it is
converted to 16 kHz mono 16-bit (channels averaged as it arrives, the rate with soxr once it
ends), and refused once it is longer than max_audio_s.
Streamed text for speech is cut into pieces with the same chunker the turn uses, so the first
words are spoken while the rest of the reply is still being written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from edgevoice.audio.pcm import SAMPLE_RATE, Samples, from_pcm16, resample, to_pcm16
from edgevoice.config import Config
from edgevoice.errors import AudioError
from edgevoice.speech_text import SpeechChunker

_WIDTHS = (1, 2, 3, 4)
_MAX_RATE = 384_000
_MAX_CHANNELS = 16


class Refused(Exception):
    """An event the server will not take: sent back as a Wyoming error with this text and code."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True)
class DescribeRequest:
    pass


@dataclass(frozen=True)
class PingRequest:
    text: str | None


@dataclass(frozen=True)
class TranscribeRequest:
    pcm: bytes
    """16 kHz mono 16-bit little-endian."""
    language: str | None


@dataclass(frozen=True)
class SpeakRequest:
    text: str
    streamed: bool
    """A piece of a text stream (audio-start..audio-stop for it alone) rather than a whole synthesize."""


@dataclass(frozen=True)
class StreamEnded:
    """synthesize-stop: every piece has been asked for; the answer ends with synthesize-stopped."""


@dataclass(frozen=True)
class HandleRequest:
    text: str
    conversation_id: str | None
    language: str | None


Request = DescribeRequest | PingRequest | TranscribeRequest | SpeakRequest | StreamEnded | HandleRequest


class _Audio:
    """One transcription's audio being received."""

    def __init__(self, start: AudioStart, max_seconds: float) -> None:
        self.rate, self.width, self.channels = _audio_format(start.rate, start.width, start.channels)
        self._max_bytes = int(max_seconds * self.rate) * 2
        self._max_seconds = max_seconds
        self._mono = bytearray()
        """16-bit mono at the client's rate: resampled whole at the end, so no filter tail is lost."""

    def feed(self, chunk: AudioChunk) -> None:
        if (chunk.rate, chunk.width, chunk.channels) != (self.rate, self.width, self.channels):
            raise Refused("audio-chunk's format differs from its audio-start", "bad_audio")
        if len(chunk.audio) % (self.width * self.channels):
            raise Refused("audio-chunk does not hold whole samples", "bad_audio")
        if len(self._mono) + len(chunk.audio) // (self.width * self.channels) * 2 > self._max_bytes:
            raise Refused(f"more than {self._max_seconds:g} s of audio for one transcription", "too_long")
        self._mono += to_pcm16(_mono_samples(chunk.audio, self.width, self.channels)).tobytes()

    def pcm(self) -> bytes:
        """All of it, 16 kHz mono 16-bit."""
        if self.rate == SAMPLE_RATE:
            return bytes(self._mono)
        return to_pcm16(resample(from_pcm16(bytes(self._mono)), self.rate, SAMPLE_RATE)).tobytes()


def _mono_samples(audio: bytes, width: int, channels: int) -> Samples:
    """Little-endian PCM of any Wyoming width (8-bit unsigned, 16/24/32-bit signed) as float mono, channels averaged."""
    if width == 1:
        samples = (np.frombuffer(audio, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        triples = np.frombuffer(audio, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        samples = (np.where(values >= 1 << 23, values - (1 << 24), values) / float(1 << 23)).astype(np.float32)
    else:
        kind = "<i2" if width == 2 else "<i4"
        samples = (np.frombuffer(audio, dtype=kind) / float(1 << (8 * width - 1))).astype(np.float32)
    # Averaged, not summed: two loud channels must not clip.
    mono: Samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return mono


def _audio_format(rate: object, width: object, channels: object) -> tuple[int, int, int]:
    if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= _MAX_RATE:
        raise Refused(f"unsupported audio rate {rate!r}", "bad_audio")
    if width not in _WIDTHS or not isinstance(width, int):
        raise Refused(f"unsupported audio width {width!r} (1 to 4 bytes)", "bad_audio")
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= _MAX_CHANNELS:
        raise Refused(f"unsupported channel count {channels!r}", "bad_audio")
    return rate, width, channels


class WyomingRequests:
    """The state of one Wyoming connection: what is being heard, what text stream is open."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._max_text = config.wyoming.max_text_chars
        self._language: str | None = None
        self._audio: _Audio | None = None
        self._chunker: SpeechChunker | None = None
        self._streamed_chars = 0

    def feed(self, event: Event) -> list[Request]:
        try:
            return self._feed(event)
        except Refused:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, AudioError) as err:
            # The library's from_event reads fields with [] and trusts their types.
            raise Refused(f"malformed {event.type} event: {type(err).__name__} {err}", "bad_event") from None

    def _feed(self, event: Event) -> list[Request]:
        kind = event.type
        if Describe.is_type(kind):
            return [DescribeRequest()]
        if Ping.is_type(kind):
            text = Ping.from_event(event).text
            return [PingRequest(text if isinstance(text, str) else None)]
        if Transcribe.is_type(kind):
            language = Transcribe.from_event(event).language
            self._language = language if isinstance(language, str) else None
            return []
        if AudioStart.is_type(kind):
            self._audio = _Audio(AudioStart.from_event(event), self._config.wyoming.max_audio_s)
            return []
        if AudioChunk.is_type(kind):
            if self._audio is None:
                raise Refused("audio-chunk before audio-start", "bad_event")
            self._audio.feed(AudioChunk.from_event(event))
            return []
        if AudioStop.is_type(kind):
            if self._audio is None:
                raise Refused("audio-stop before audio-start", "bad_event")
            heard, self._audio = self._audio, None
            language, self._language = self._language, None
            return [TranscribeRequest(heard.pcm(), language)]
        if Synthesize.is_type(kind):
            if self._chunker is not None:
                return []  # a streaming client repeats the whole text for older servers: spoken already
            return [SpeakRequest(self._text(Synthesize.from_event(event).text), streamed=False)]
        if SynthesizeStart.is_type(kind):
            tts = self._config.tts
            self._chunker = SpeechChunker(tts.first_clause_words, tts.first_words)
            self._streamed_chars = 0
            return []
        if SynthesizeChunk.is_type(kind):
            if self._chunker is None:
                raise Refused("synthesize-chunk before synthesize-start", "bad_event")
            text = self._text(SynthesizeChunk.from_event(event).text)
            self._streamed_chars += len(text)
            if self._streamed_chars > self._max_text:
                raise Refused(f"a text stream over {self._max_text} characters", "too_long")
            return [SpeakRequest(piece, streamed=True) for piece in self._chunker.feed(text)]
        if SynthesizeStop.is_type(kind):
            if self._chunker is None:
                raise Refused("synthesize-stop before synthesize-start", "bad_event")
            chunker, self._chunker = self._chunker, None
            return [*(SpeakRequest(piece, streamed=True) for piece in chunker.flush()), StreamEnded()]
        if Transcript.is_type(kind):
            transcript = Transcript.from_event(event)
            context = transcript.context if isinstance(transcript.context, dict) else {}
            conversation = context.get("conversation_id")
            language = transcript.language if isinstance(transcript.language, str) else None
            return [
                HandleRequest(
                    self._text(transcript.text),
                    conversation if isinstance(conversation, str) and conversation else None,
                    language,
                )
            ]
        return []  # events of services this box does not offer (wake, intent, ...) are dropped

    def _text(self, text: object) -> str:
        if not isinstance(text, str):
            raise Refused("text must be a string", "bad_event")
        if len(text) > self._max_text:
            raise Refused(f"text over {self._max_text} characters", "too_long")
        return text
