"""The WebSocket wire protocol, version 1 (docs/protocol.md): typed messages and binary audio frames.

Plain functions and dataclasses, no sockets: the server and the client both parse and build
their messages here, and the tests check every malformed case without a network.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from edgevoice.events import (
    Error,
    Event,
    Interrupted,
    ReplyAudio,
    ReplyAudioEnd,
    ReplyAudioStart,
    ReplyText,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnDone,
)

PROTOCOL_VERSION = 1
WS_PATH = "/ws"
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
MAX_FRAME_MS = 250
"""A client audio frame holds at most this much audio at its declared rate."""
MAX_TEXT_BYTES = 4096
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


@dataclass(frozen=True)
class Hello:
    sample_rate: int
    client: str = ""
    conversation: str | None = None
    protocol: int = PROTOCOL_VERSION
    token: str | None = field(default=None, repr=False)
    """The box's pairing token, where it asks for one (server.auth); never logged."""

    def to_json(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "hello",
            "protocol": self.protocol,
            "sample_rate": self.sample_rate,
            "client": self.client,
        }
        if self.conversation is not None:
            message["conversation"] = self.conversation
        if self.token is not None:
            message["token"] = self.token
        return message


@dataclass(frozen=True)
class Interrupt:
    def to_json(self) -> dict[str, Any]:
        return {"type": "interrupt"}


@dataclass(frozen=True)
class Bye:
    def to_json(self) -> dict[str, Any]:
        return {"type": "bye"}


ClientMessage = Hello | Interrupt | Bye


def valid_conversation_id(value: str) -> bool:
    return _CONVERSATION_ID.fullmatch(value) is not None


def _field(message: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    value = message.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise ProtocolError("bad_message", f"{message.get('type')} needs a {name!r} field")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError("bad_message", f"{message.get('type')}: {name!r} must be a {kind.__name__}")
    return value


def parse_client_text(text: str) -> ClientMessage:
    """One JSON text message from a client; ProtocolError says what is wrong with it."""
    if len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
        raise ProtocolError("too_large", f"text messages are limited to {MAX_TEXT_BYTES} bytes")
    try:
        message = json.loads(text)
    except ValueError as err:
        raise ProtocolError("bad_json", f"not valid JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_message", 'a message must be a JSON object with a string "type"')
    kind = message["type"]
    if kind == "hello":
        version = _field(message, "protocol", int)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                "unsupported_protocol",
                f"protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}",
                close_code=CLOSE_PROTOCOL_ERROR,
            )
        rate = _field(message, "sample_rate", int)
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise ProtocolError(
                "bad_sample_rate",
                f"sample rate {rate} Hz cannot be served: send {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz "
                "(16000 is best: it is not resampled)",
                close_code=CLOSE_UNSUPPORTED,
            )
        client = _field(message, "client", str, required=False) or ""
        conversation = _field(message, "conversation", str, required=False)
        if conversation is not None and not valid_conversation_id(conversation):
            raise ProtocolError(
                "bad_conversation",
                "a conversation id is 1 to 64 letters, digits, '-' or '_'",
                close_code=CLOSE_PROTOCOL_ERROR,
            )
        token = _field(message, "token", str, required=False)
        return Hello(rate, client[:64], conversation, version, token)
    if kind == "interrupt":
        return Interrupt()
    if kind == "bye":
        return Bye()
    raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")


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


def encode_server_audio(event: ReplyAudio) -> bytes:
    return SERVER_HEADER.pack(event.turn, event.seq, event.sample_rate, 0) + event.pcm


def parse_server_audio(data: bytes) -> ReplyAudio:
    if len(data) < SERVER_HEADER.size or (len(data) - SERVER_HEADER.size) % 2:
        raise ProtocolError("bad_frame", "a server audio frame is a 16-byte header and 16-bit samples")
    turn, seq, rate, _reserved = SERVER_HEADER.unpack_from(data)
    return ReplyAudio(turn, seq, rate, data[SERVER_HEADER.size :])


def event_to_json(event: Event) -> dict[str, Any]:
    """A session event as its JSON message (ReplyAudio travels as a binary frame instead)."""
    match event:
        case SpeechStarted(turn, start_ms):
            return {"type": "speech_started", "turn": turn, "start_ms": start_ms}
        case SpeechStopped(turn, start_ms, end_ms, truncated):
            return {
                "type": "speech_stopped",
                "turn": turn,
                "start_ms": start_ms,
                "end_ms": end_ms,
                "truncated": truncated,
            }
        case Transcript(turn, text):
            return {"type": "transcript", "turn": turn, "text": text}
        case ReplyText(turn, delta):
            return {"type": "reply_text", "turn": turn, "delta": delta}
        case ReplyAudioStart(turn, rate):
            return {"type": "reply_audio_start", "turn": turn, "sample_rate": rate}
        case ReplyAudioEnd(turn):
            return {"type": "reply_audio_end", "turn": turn}
        case Interrupted(turn, at_ms):
            return {"type": "interrupted", "turn": turn, "at_ms": at_ms}
        case TurnDone():
            return {
                "type": "turn_done",
                "turn": event.turn,
                "transcript": event.transcript,
                "reply": event.reply,
                "interrupted": event.interrupted,
                "start_ms": event.start_ms,
                "end_ms": event.end_ms,
                "timings": event.timings.as_ms(),
            }
        case Error(message, "busy"):
            return {"type": "busy", "message": message}
        case Error(message, code):
            return {"type": "error", "code": code, "message": message, "fatal": False}
        case ReplyAudio():
            raise ValueError("reply audio is sent as a binary frame")
    raise ValueError(f"no wire form for {event!r}")


def ready_message(*, conversation: str, resumed: bool, sample_rate: int, box: str, version: str) -> dict[str, Any]:
    return {
        "type": "ready",
        "protocol": PROTOCOL_VERSION,
        "conversation": conversation,
        "resumed": resumed,
        "sample_rate": sample_rate,
        "max_frame_samples": max_frame_samples(sample_rate),
        "box": box,
        "server": f"edgevoice {version}",
    }


def error_message(err: ProtocolError) -> dict[str, Any]:
    return {"type": "error", "code": err.code, "message": err.message, "fatal": err.fatal}


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def gap_message(missing: int, counter: SequenceCounter) -> dict[str, Any]:
    return {"type": "gap", "missing": missing, "lost_total": counter.lost, "received": counter.received}
