"""What a voice session tells its listener (a socket, a speaker, a test): one frozen dataclass per event.

Most events are told to a client as they are, so they are the wire protocol's own messages (a
`timer` event comes outside any turn: a skill changed a timer, or one rang). The
end of a turn is not: the session stamps its stages on its own clock, and the wire carries them as
milliseconds (TurnDone.message()).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevoice import protocol
from edgevoice.protocol import (
    Busy,
    Error,
    Interrupted,
    PartialTranscript,
    ReplyAudio,
    ReplyAudioEnd,
    ReplyAudioStart,
    ReplyText,
    ServerMessage,
    SpeechStarted,
    SpeechStopped,
    Timer,
    Transcript,
)

__all__ = [
    "Busy",
    "Error",
    "Event",
    "Interrupted",
    "PartialTranscript",
    "ReplyAudio",
    "ReplyAudioEnd",
    "ReplyAudioStart",
    "ReplyText",
    "SpeechStarted",
    "SpeechStopped",
    "Timer",
    "Transcript",
    "TurnDone",
    "TurnTimings",
    "to_message",
]


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
    voice_end: float | None = None
    """When the box had received the last voiced audio of the turn: what the speaker feels as the end."""
    prompt_tokens: int | None = None
    """The reply's prompt, in tokens; None when no reply was generated."""
    evaluated_prompt_tokens: int | None = None
    """Of those, the tokens the model had to read (the rest it kept from before)."""

    def as_ms(self) -> dict[str, float | None]:
        """Each stage in milliseconds after speech_end, as heard, and how long the engines took to get there.

        With voice_end known, `decided` is the time from the last voiced audio to the end-of-turn
        decision and `felt_first_audio` the time from it to the first reply audio: what people feel.

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
        # From the last voiced audio the box heard: the wait the person feels (up to the VAD's own lag).
        if self.voice_end is not None:
            ms["decided"] = round(max(0.0, self.speech_end - self.voice_end) * 1000.0, 1)
            ms["felt_first_audio"] = (
                None if self.first_audio is None else round(max(0.0, self.first_audio - self.voice_end) * 1000.0, 1)
            )
        started = self.speech_end if self.speculated is None else self.speculated
        for name in ("stt_done", "first_token", "first_audio"):
            stamp = heard[name]
            ms[f"work_{name}"] = None if stamp is None else round((stamp - started) * 1000.0, 1)
        ms["prompt_tokens"] = None if self.prompt_tokens is None else float(self.prompt_tokens)
        ms["evaluated_prompt_tokens"] = (
            None if self.evaluated_prompt_tokens is None else float(self.evaluated_prompt_tokens)
        )
        return ms


@dataclass(frozen=True)
class TurnDone:
    turn: int
    transcript: str
    reply: str
    timings: TurnTimings
    start_ms: int
    end_ms: int
    interrupted: bool = False
    intent: str = ""
    """The skill that answered, or "" when the model did."""

    def message(self) -> protocol.TurnDone:
        """The turn_done message a client is sent: the same turn, its timings in milliseconds."""
        return protocol.TurnDone(
            self.turn,
            self.transcript,
            self.reply,
            self.interrupted,
            self.start_ms,
            self.end_ms,
            self.timings.as_ms(),
            self.intent,
        )


Event = (
    SpeechStarted
    | SpeechStopped
    | PartialTranscript
    | Transcript
    | ReplyText
    | ReplyAudioStart
    | ReplyAudio
    | ReplyAudioEnd
    | Interrupted
    | TurnDone
    | Busy
    | Error
    | Timer
)


def to_message(event: Event) -> ServerMessage:
    """The text message an event is sent as; reply audio has none (it travels as a binary frame)."""
    if isinstance(event, TurnDone):
        return event.message()
    if isinstance(event, ReplyAudio):
        raise ValueError("reply audio is sent as a binary frame")
    if isinstance(event, ServerMessage):
        return event
    raise ValueError(f"no wire form for {event!r}")
