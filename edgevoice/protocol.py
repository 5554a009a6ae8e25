"""The WebSocket wire protocol, version 1 (docs/protocol.md): every message both ways, and binary audio frames.

Plain functions and frozen dataclasses, no sockets. Each text message is one dataclass with
to_json() and from_json(); parse_client_text and parse_server_text turn a text frame into one of
them, or raise ProtocolError saying what is wrong, so the server, the clients and the tests read
and write the wire in one place, and every malformed case is checked without a network.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

PROTOCOL_VERSION = 1
WS_PATH = "/ws"
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
MAX_FRAME_MS = 250
"""A client audio frame holds at most this much audio at its declared rate."""
MAX_TEXT_BYTES = 4096
"""The largest text message a client may send."""
MAX_SERVER_TEXT_BYTES = 1 << 20
"""The largest text message a client reads: far above a long turn_done, far below harm."""
CLIENT_HEADER = struct.Struct("<I")
"""Client audio frame header: sequence number (uint32, +1 per frame, wraps)."""
SERVER_HEADER = struct.Struct("<IIII")
"""Server audio frame header: turn, sequence within the turn, sample rate, reserved (0)."""
MAX_FRAME_BYTES = CLIENT_HEADER.size + 2 * (MAX_SAMPLE_RATE * MAX_FRAME_MS // 1000)
"""The largest legal client message: the server's WebSocket size cap."""
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 10.0
_CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ProtocolError(Exception):
    """A message that breaks the protocol. fatal: the connection cannot go on (close_code says how it ends)."""

    def __init__(self, code: str, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code

    @property
    def fatal(self) -> bool:
        return self.close_code is not None


# WebSocket close codes (RFC 6455 section 7.4.1) and the ones edgevoice adds in the private range.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013
CLOSE_TAKEN_OVER = 4001
"""Another connection resumed this conversation."""
CLOSE_SLOW_CLIENT = 4002
"""The client stopped reading; the server will not queue its events without bound."""
CLOSE_UNAUTHORIZED = 4003
"""The box asks for its pairing token and the hello had none, or a wrong one."""
CLOSE_RATE_LIMITED = 4029
"""Too many wrong tokens from this address lately; try again in a minute."""


# Fields: one missing or of the wrong type is a ProtocolError that names it.

_T = TypeVar("_T")
_KIND_NAMES: dict[type, str] = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "an object",
}


def _typed(message: dict[str, Any], name: str, value: object, kind: type[_T]) -> _T:
    # bool is an int to Python, but true is not a sample rate.
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]  # JSON has one kind of number: 480 is 480.0
    raise ProtocolError("bad_message", f"{message['type']}: {name!r} must be {_KIND_NAMES[kind]}")


def _required(message: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = message.get(name)
    if value is None:
        raise ProtocolError("bad_message", f"{message['type']} needs a {name!r} field")
    return _typed(message, name, value, kind)


def _optional(message: dict[str, Any], name: str, kind: type[_T]) -> _T | None:
    value = message.get(name)
    return None if value is None else _typed(message, name, value, kind)


def _timings(message: dict[str, Any], name: str) -> dict[str, float | None]:
    """An object of milliseconds: each value a finite number, or null for a stage not reached."""
    timings: dict[str, object] = _required(message, name, dict)
    checked: dict[str, float | None] = {}
    for stage, value in timings.items():
        if value is None:
            checked[stage] = None
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            checked[stage] = float(value)
        else:
            raise ProtocolError("bad_message", f"{message['type']}: {name} {stage[:40]!r} must be a number or null")
    return checked


def _number(message: dict[str, Any], name: str) -> float:
    """A finite number (JSON has one kind: 480 and 480.0 are the same)."""
    value = _required(message, name, float)
    if not math.isfinite(value):
        raise ProtocolError("bad_message", f"{message['type']}: {name!r} must be a number")
    return value


def valid_conversation_id(value: str) -> bool:
    return _CONVERSATION_ID.fullmatch(value) is not None


def _conversation_id(value: str) -> str:
    if not valid_conversation_id(value):
        raise ProtocolError(
            "bad_conversation",
            "a conversation id is 1 to 64 letters, digits, '-' or '_'",
            close_code=CLOSE_PROTOCOL_ERROR,
        )
    return value


def _protocol_version(message: dict[str, Any], speaker: str) -> int:
    version = _required(message, "protocol", int)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_protocol",
            f"protocol version {version} is not supported; this {speaker} speaks {PROTOCOL_VERSION}",
            close_code=CLOSE_PROTOCOL_ERROR,
        )
    return version


class _Message:
    """A JSON text message: its "type", then its fields in the order the dataclass declares them."""

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, **vars(self)}

    def to_text(self) -> str:
        return dumps(self.to_json())


# Client to server


@dataclass(frozen=True)
class Hello(_Message):
    kind: ClassVar[str] = "hello"
    sample_rate: int
    client: str = ""
    conversation: str | None = None
    protocol: int = PROTOCOL_VERSION
    token: str | None = field(default=None, repr=False)
    """The box's pairing token, where it asks for one (server.auth); never logged."""

    def to_json(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": self.kind,
            "protocol": self.protocol,
            "sample_rate": self.sample_rate,
            "client": self.client,
        }
        if self.conversation is not None:
            message["conversation"] = self.conversation
        if self.token is not None:
            message["token"] = self.token
        return message

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        version = _protocol_version(message, "server")
        rate = _required(message, "sample_rate", int)
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise ProtocolError(
                "bad_sample_rate",
                f"sample rate {rate} Hz cannot be served: send {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz "
                "(16000 is best: it is not resampled)",
                close_code=CLOSE_UNSUPPORTED,
            )
        client = _optional(message, "client", str) or ""
        conversation = _optional(message, "conversation", str)
        if conversation is not None:
            _conversation_id(conversation)
        return cls(rate, client[:64], conversation, version, _optional(message, "token", str))


@dataclass(frozen=True)
class Interrupt(_Message):
    kind: ClassVar[str] = "interrupt"

    @classmethod
    def from_json(cls, _message: dict[str, Any]) -> Self:
        return cls()


@dataclass(frozen=True)
class Bye(_Message):
    """Both ways: the client's goodbye, and the server's answer to it just before it closes."""

    kind: ClassVar[str] = "bye"

    @classmethod
    def from_json(cls, _message: dict[str, Any]) -> Self:
        return cls()


ClientMessage = Hello | Interrupt | Bye


# Server to client


@dataclass(frozen=True)
class Ready(_Message):
    """The answer to hello: the client may stream audio."""

    kind: ClassVar[str] = "ready"
    protocol: int
    conversation: str
    resumed: bool
    sample_rate: int
    max_frame_samples: int
    box: str
    server: str

    @classmethod
    def of(cls, *, conversation: str, resumed: bool, sample_rate: int, box: str, version: str) -> Self:
        """This server's answer to a hello at sample_rate."""
        return cls(
            PROTOCOL_VERSION,
            conversation,
            resumed,
            sample_rate,
            max_frame_samples(sample_rate),
            box,
            f"edgevoice {version}",
        )

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(
            _protocol_version(message, "client"),
            _conversation_id(_required(message, "conversation", str)),
            _required(message, "resumed", bool),
            _required(message, "sample_rate", int),
            _required(message, "max_frame_samples", int),
            _required(message, "box", str),
            _required(message, "server", str),
        )


@dataclass(frozen=True)
class SpeechStarted(_Message):
    kind: ClassVar[str] = "speech_started"
    turn: int
    start_ms: int
    """Position in the input stream."""

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(_required(message, "turn", int), _required(message, "start_ms", int))


@dataclass(frozen=True)
class SpeechStopped(_Message):
    kind: ClassVar[str] = "speech_stopped"
    turn: int
    start_ms: int
    end_ms: int
    truncated: bool = False

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(
            _required(message, "turn", int),
            _required(message, "start_ms", int),
            _required(message, "end_ms", int),
            _required(message, "truncated", bool),
        )


@dataclass(frozen=True)
class Transcript(_Message):
    kind: ClassVar[str] = "transcript"
    turn: int
    text: str
    """Empty: nothing intelligible was said, and no reply follows."""

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(_required(message, "turn", int), _required(message, "text", str))


@dataclass(frozen=True)
class PartialTranscript(_Message):
    """What has been heard of the turn so far, while the person still speaks: for showing only (the
    turn's transcript follows). Sent only when the box has a core to spare, so it never delays a turn."""

    kind: ClassVar[str] = "partial_transcript"
    turn: int
    text: str

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(_required(message, "turn", int), _required(message, "text", str))


@dataclass(frozen=True)
class ReplyText(_Message):
    kind: ClassVar[str] = "reply_text"
    turn: int
    delta: str

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(_required(message, "turn", int), _required(message, "delta", str))


@dataclass(frozen=True)
class ReplyAudioStart(_Message):
    kind: ClassVar[str] = "reply_audio_start"
    turn: int
    sample_rate: int

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(_required(message, "turn", int), _required(message, "sample_rate", int))


@dataclass(frozen=True)
class ReplyAudioEnd(_Message):
    kind: ClassVar[str] = "reply_audio_end"
    turn: int

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(_required(message, "turn", int))


@dataclass(frozen=True)
class Interrupted(_Message):
    kind: ClassVar[str] = "interrupted"
    turn: int
    at_ms: int
    """Input stream position at which the user's new speech was recognised."""

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(_required(message, "turn", int), _required(message, "at_ms", int))


@dataclass(frozen=True)
class TurnDone(_Message):
    """A turn is over. The session's own end of turn (events.TurnDone) keeps clock stamps; this is its wire form."""

    kind: ClassVar[str] = "turn_done"
    turn: int
    transcript: str
    reply: str
    interrupted: bool
    """Whether generation itself was cut short."""
    start_ms: int
    end_ms: int
    timings: dict[str, float | None]
    """Milliseconds after the end-of-turn decision per stage (events.TurnTimings.as_ms), null if not reached."""
    intent: str = ""
    """The skill that answered ("HassGetCurrentTime", "EdgevoiceStop", ...), or "" when the model did."""

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "timings": dict(self.timings)}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(
            _required(message, "turn", int),
            _required(message, "transcript", str),
            _required(message, "reply", str),
            _required(message, "interrupted", bool),
            _required(message, "start_ms", int),
            _required(message, "end_ms", int),
            _timings(message, "timings"),
            _required(message, "intent", str),
        )


@dataclass(frozen=True)
class Busy(_Message):
    """The box cannot start the turn soon enough (other rooms' turns are ahead of it) or an engine's
    wait queue is full: the turn gets no reply (its turn_done follows, with no transcript)."""

    kind: ClassVar[str] = "busy"
    message: str
    expected_wait_s: float
    """About how long the turn would have waited for the engines: try again after that."""

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        wait = message.get("expected_wait_s")
        if wait is None:
            raise ProtocolError("bad_message", "busy needs a 'expected_wait_s' field")
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait) or wait < 0:
            raise ProtocolError("bad_message", "busy: 'expected_wait_s' must be a number, 0 or more")
        return cls(_required(message, "message", str), float(wait))


@dataclass(frozen=True)
class Timer(_Message):
    """Something happened to a timer (docs/protocol.md, Timers): set, changed, rang, or gone."""

    kind: ClassVar[str] = "timer"
    event: str
    """"started", "updated" (paused, resumed, time added or taken away), "finished" (it rang), "cancelled"."""
    id: str
    """The timer's id, the same in every event about it."""
    conversation: str
    """The conversation that set it: it hears the timer ring."""
    name: str
    """As said, lower case ("pasta"); "" for a timer set without one."""
    duration_s: float
    """As set; time added later does not change it."""
    remaining_s: float
    """What was left when the event was made."""
    state: str
    """"running", "paused" or "ringing"."""
    ends_at: float
    """While running: when it ends, in Unix seconds (clients count down from it); else 0."""
    ring: int
    """On finished: 1 for its first ring, then 2, 3, ...; else 0."""
    reason: str
    """On cancelled: "cancelled", "stopped" (its ringing was stopped) or "expired"; else ""."""
    text: str
    """On finished: the line said with the chime ("Your ten minute pasta timer is done."); else ""."""

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(
            _required(message, "event", str),
            _required(message, "id", str),
            _required(message, "conversation", str),
            _required(message, "name", str),
            _number(message, "duration_s"),
            _number(message, "remaining_s"),
            _required(message, "state", str),
            _number(message, "ends_at"),
            _required(message, "ring", int),
            _required(message, "reason", str),
            _required(message, "text", str),
        )


@dataclass(frozen=True)
class Gap(_Message):
    """Client audio frames went missing: `missing` just now, `lost_total` on this connection so far."""

    kind: ClassVar[str] = "gap"
    missing: int
    lost_total: int
    received: int

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(
            _required(message, "missing", int),
            _required(message, "lost_total", int),
            _required(message, "received", int),
        )


@dataclass(frozen=True)
class Error(_Message):
    """Something the client sent is wrong, or a turn failed (`turn_failed`); fatal: a close follows."""

    kind: ClassVar[str] = "error"
    message: str
    code: str = "error"
    fatal: bool = False

    @classmethod
    def of(cls, err: ProtocolError) -> Self:
        return cls(err.message, err.code, err.fatal)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "code": self.code, "message": self.message, "fatal": self.fatal}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        return cls(
            _required(message, "message", str),
            _required(message, "code", str),
            _required(message, "fatal", bool),
        )


ServerMessage = (
    Ready
    | SpeechStarted
    | SpeechStopped
    | PartialTranscript
    | Transcript
    | ReplyText
    | ReplyAudioStart
    | ReplyAudioEnd
    | Interrupted
    | TurnDone
    | Busy
    | Timer
    | Gap
    | Error
    | Bye
)

_CLIENT_MESSAGES: dict[str, type[ClientMessage]] = {kind.kind: kind for kind in (Hello, Interrupt, Bye)}
_SERVER_MESSAGES: dict[str, type[ServerMessage]] = {
    kind.kind: kind
    for kind in (
        Ready,
        SpeechStarted,
        SpeechStopped,
        PartialTranscript,
        Transcript,
        ReplyText,
        ReplyAudioStart,
        ReplyAudioEnd,
        Interrupted,
        TurnDone,
        Busy,
        Timer,
        Gap,
        Error,
        Bye,
    )
}


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _load(text: str, max_bytes: int) -> dict[str, Any]:
    """One text message as a JSON object with a string "type"; ProtocolError says what else it is."""
    if len(text.encode("utf-8", "replace")) > max_bytes:
        raise ProtocolError("too_large", f"text messages are limited to {max_bytes} bytes")
    try:
        # NaN and Infinity are Python's extensions, not JSON: a browser would refuse them too.
        message = json.loads(text, parse_constant=_not_json)
    except ValueError as err:
        raise ProtocolError("bad_json", f"not valid JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_message", 'a message must be a JSON object with a string "type"')
    return message


def _unknown(kind: str) -> ProtocolError:
    return ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")


def parse_client_text(text: str) -> ClientMessage:
    """One JSON text message from a client; ProtocolError says what is wrong with it."""
    message = _load(text, MAX_TEXT_BYTES)
    kind = _CLIENT_MESSAGES.get(message["type"])
    if kind is None:
        raise _unknown(message["type"])
    return kind.from_json(message)


def parse_server_text(text: str) -> ServerMessage:
    """One JSON text message from a server; ProtocolError says what is wrong with it.

    A type this version does not know is an `unknown_type` error too: a client may ignore it, since
    a newer server may add event types within a version (docs/protocol.md, Versioning).
    """
    message = _load(text, MAX_SERVER_TEXT_BYTES)
    kind = _SERVER_MESSAGES.get(message["type"])
    if kind is None:
        raise _unknown(message["type"])
    return kind.from_json(message)


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


# Binary audio frames


@dataclass(frozen=True)
class ReplyAudio:
    """A piece of reply audio: a binary frame, not JSON (encode_server_audio, parse_server_audio)."""

    turn: int
    seq: int
    sample_rate: int
    pcm: bytes = field(repr=False)
    """16-bit little-endian mono; at most about 100 ms."""


def max_frame_samples(sample_rate: int) -> int:
    return sample_rate * MAX_FRAME_MS // 1000


def encode_client_audio(seq: int, pcm: bytes) -> bytes:
    return CLIENT_HEADER.pack(seq & 0xFFFFFFFF) + pcm


def parse_client_audio(data: bytes, sample_rate: int) -> tuple[int, bytes]:
    """(sequence number, PCM) of one client audio frame; ProtocolError (not fatal) for a bad one."""
    if len(data) <= CLIENT_HEADER.size:
        raise ProtocolError(
            "bad_frame", f"an audio frame is a {CLIENT_HEADER.size}-byte sequence number followed by samples"
        )
    pcm = data[CLIENT_HEADER.size :]
    if len(pcm) % 2:
        raise ProtocolError("bad_frame", "audio is 16-bit samples: a frame's PCM must have an even byte count")
    if len(pcm) // 2 > max_frame_samples(sample_rate):
        raise ProtocolError(
            "frame_too_large",
            f"an audio frame holds at most {MAX_FRAME_MS} ms ({max_frame_samples(sample_rate)} samples at "
            f"{sample_rate} Hz); this one had {len(pcm) // 2}",
        )
    (seq,) = CLIENT_HEADER.unpack_from(data)
    return seq, pcm


class SequenceCounter:
    """Sees gaps in a stream of uint32 sequence numbers and counts the frames they lost."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.lost = 0
        self.received = 0

    def see(self, seq: int) -> int:
        """Frames missing just before seq (0 when none)."""
        self.received += 1
        missing = 0 if self.expected is None else (seq - self.expected) & 0xFFFFFFFF
        if missing >= 0x80000000:  # a late or repeated frame, not a gap of two billion
            return 0
        self.lost += missing
        self.expected = (seq + 1) & 0xFFFFFFFF
        return missing

    def gap(self, missing: int) -> Gap:
        """The gap message for `missing` frames just seen to be lost."""
        return Gap(missing, self.lost, self.received)


def encode_server_audio(frame: ReplyAudio) -> bytes:
    return SERVER_HEADER.pack(frame.turn, frame.seq, frame.sample_rate, 0) + frame.pcm


def parse_server_audio(data: bytes) -> ReplyAudio:
    if len(data) < SERVER_HEADER.size or (len(data) - SERVER_HEADER.size) % 2:
        raise ProtocolError("bad_frame", "a server audio frame is a 16-byte header and 16-bit samples")
    turn, seq, rate, _reserved = SERVER_HEADER.unpack_from(data)
    return ReplyAudio(turn, seq, rate, data[SERVER_HEADER.size :])
