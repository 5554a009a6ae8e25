"""What a voice session tells its listener (a socket, a speaker, a test): one frozen dataclass per event."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TurnTimings:
    """time.monotonic() stamps of one turn's stages; None for a stage the turn did not reach."""

    speech_end: float
    """When the endpointer decided the user's turn was over."""
    stt_done: float | None = None
    first_token: float | None = None
    first_audio: float | None = None
    """When the first chunk of reply audio was handed to the listener."""
    last_audio: float | None = None
    interrupted: float | None = None
    speculated: float | None = None
    """When the turn's work started early, on the pause before the end was decided (negative in as_ms)."""

    def as_ms(self) -> dict[str, float | None]:
        """Each stage in milliseconds after speech_end, as heard, and how long the engines took to get there.

        A turn started early keeps what it produced until the end is decided, so a stage it
        reached before that counts as 0. The `work_*` entries are the engines' own times, in ms
        after the work started (on the pause for an early turn, else at the end of the turn).
        """
        heard = {
            "speech_end": self.speech_end,
            "stt_done": self.stt_done,
            "first_token": self.first_token,
            "first_audio": self.first_audio,
            "last_audio": self.last_audio,
            "interrupted": self.interrupted,
        }
        ms: dict[str, float | None] = {
            name: None if stamp is None else round(max(0.0, stamp - self.speech_end) * 1000.0, 1)
            for name, stamp in heard.items()
        }
        ms["speculated"] = None if self.speculated is None else round((self.speculated - self.speech_end) * 1000.0, 1)
        started = self.speech_end if self.speculated is None else self.speculated
        for name in ("stt_done", "first_token", "first_audio"):
            stamp = heard[name]
            ms[f"work_{name}"] = None if stamp is None else round((stamp - started) * 1000.0, 1)
        return ms


@dataclass(frozen=True)
class SpeechStarted:
    turn: int
    start_ms: int
    """Position in the input stream."""


@dataclass(frozen=True)
class SpeechStopped:
    turn: int
    start_ms: int
    end_ms: int
    truncated: bool = False


@dataclass(frozen=True)
class Transcript:
    turn: int
    text: str


@dataclass(frozen=True)
class ReplyText:
    turn: int
    delta: str


@dataclass(frozen=True)
class ReplyAudioStart:
    turn: int
    sample_rate: int


@dataclass(frozen=True)
class ReplyAudio:
    turn: int
    seq: int
    sample_rate: int
    pcm: bytes = field(repr=False)
    """16-bit little-endian mono; at most about 100 ms."""


@dataclass(frozen=True)
class ReplyAudioEnd:
    turn: int


@dataclass(frozen=True)
class Interrupted:
    turn: int
    at_ms: int
    """Input stream position at which the user's new speech was recognised."""


@dataclass(frozen=True)
class TurnDone:
    turn: int
    transcript: str
    reply: str
    timings: TurnTimings
    start_ms: int
    end_ms: int
    interrupted: bool = False


@dataclass(frozen=True)
class Error:
    message: str
    code: str = "error"


Event = (
    SpeechStarted
    | SpeechStopped
    | Transcript
    | ReplyText
    | ReplyAudioStart
    | ReplyAudio
    | ReplyAudioEnd
    | Interrupted
    | TurnDone
    | Error
)
