"""The wire protocol without sockets: every message both ways, every malformed one, audio frames, events as JSON."""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgevoice import protocol
from edgevoice.events import TurnDone, TurnTimings, to_message
from edgevoice.protocol import (
    Busy,
    Bye,
    Error,
    Gap,
    Hello,
    Interrupt,
    Interrupted,
    PartialTranscript,
    ProtocolError,
    Ready,
    ReplyAudio,
    ReplyAudioEnd,
    ReplyAudioStart,
    ReplyText,
    SequenceCounter,
    ServerMessage,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    encode_client_audio,
    encode_server_audio,
    max_frame_samples,
    parse_client_audio,
    parse_client_text,
    parse_server_audio,
    parse_server_text,
)
from tests.support.wire import documented_server_kinds

T = TypeVar("T")


def hello(**fields: Any) -> str:
    message: dict[str, Any] = {"type": "hello", "protocol": 1, "sample_rate": 16000, "client": "kitchen"}
    message.update(fields)
    return json.dumps({name: value for name, value in message.items() if value is not ...})


def attempt(call: Callable[[], T]) -> T | ProtocolError:
    """What call returns, or the ProtocolError it raises (anything else propagates)."""
    try:
        return call()
    except ProtocolError as err:
        return err


def refused(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_text(text)
    return caught.value


# Client text messages


@pytest.mark.parametrize("text", ["", "{", "hello", "{'type': 'hello'}", '{"type": "bye"', "\x00"])
def test_text_that_is_not_json_is_bad_json(text: str) -> None:
    err = refused(text)
    assert err.code == "bad_json"
    assert not err.fatal
    assert err.close_code is None


@pytest.mark.parametrize(
    "text",
    [
        '["hello"]',
        "[]",
        "42",
        "1.5",
        '"hello"',
        "null",
        "true",
        "{}",
        '{"kind": "hello"}',
        '{"type": null}',
        '{"type": 1}',
        '{"type": ["hello"]}',
        '{"type": {"name": "hello"}}',
        '{"type": true}',
    ],
)
def test_json_that_is_not_an_object_with_a_string_type_is_bad_message(text: str) -> None:
    err = refused(text)
    assert err.code == "bad_message"
    assert not err.fatal


@pytest.mark.parametrize("kind", ["helo", "HELLO", "audio", "", "x" * 1000])
def test_unknown_type_is_refused_but_not_fatal(kind: str) -> None:
    err = refused(json.dumps({"type": kind}))
    assert err.code == "unknown_type"
    assert not err.fatal
    assert len(err.message) < 100, "the echoed type is cut short"


def test_text_over_4096_bytes_is_too_large() -> None:
    padded = hello(client="a" * (protocol.MAX_TEXT_BYTES - len(hello(client=""))))
    assert len(padded.encode()) == protocol.MAX_TEXT_BYTES
    assert isinstance(parse_client_text(padded), Hello)

    err = refused(hello(client="a" * (protocol.MAX_TEXT_BYTES + 1 - len(hello(client="")))))
    assert err.code == "too_large"
    assert not err.fatal


def test_the_size_limit_counts_bytes_not_characters() -> None:
    # 2000 three-byte characters: under 4096 characters, over 4096 bytes.
    err = refused(json.dumps({"type": "bye", "pad": "€" * 2000}, ensure_ascii=False))
    assert err.code == "too_large"


def test_oversized_garbage_is_too_large_before_it_is_parsed() -> None:
    assert refused("[" * 5000).code == "too_large"


@pytest.mark.parametrize("text", ["[" * 1000, "[" * 2000 + "]" * 2000, '{"":' * 1000, "[" * 4096])
def test_deeply_nested_json_is_a_protocol_error(text: str) -> None:
    # Under the 4096-byte cap, but deeper than the interpreter's recursion limit.
    err = refused(text)
    assert err.code in ("bad_json", "bad_message")
    assert not err.fatal


@pytest.mark.parametrize("missing", ["protocol", "sample_rate"])
def test_hello_without_a_required_field_is_bad_message(missing: str) -> None:
    err = refused(hello(**{missing: ...}))
    assert err.code == "bad_message"
    assert missing in err.message
    assert not err.fatal


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("protocol", "1"),
        ("protocol", 1.0),
        ("protocol", True),
        ("protocol", [1]),
        ("sample_rate", "16000"),
        ("sample_rate", 16000.0),
        ("sample_rate", True),
        ("sample_rate", {"hz": 16000}),
        ("client", 7),
        ("client", ["kitchen"]),
        ("client", False),
        ("conversation", 12),
        ("conversation", ["abc"]),
        ("conversation", True),
    ],
)
def test_hello_with_a_field_of_the_wrong_type_is_bad_message(field: str, value: object) -> None:
    err = refused(hello(**{field: value}))
    assert err.code == "bad_message"
    assert field in err.message
    assert not err.fatal


@pytest.mark.parametrize("version", [0, 2, -1, 99])
def test_hello_with_another_protocol_version_is_fatal_1002(version: int) -> None:
    err = refused(hello(protocol=version))
    assert err.code == "unsupported_protocol"
    assert err.fatal
    assert err.close_code == protocol.CLOSE_PROTOCOL_ERROR == 1002


@pytest.mark.parametrize("rate", [0, -16000, 7999, 48001, 96000, 10**12])
def test_hello_with_a_sample_rate_out_of_range_is_fatal_1003(rate: int) -> None:
    err = refused(hello(sample_rate=rate))
    assert err.code == "bad_sample_rate"
    assert err.fatal
    assert err.close_code == protocol.CLOSE_UNSUPPORTED == 1003


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_hello_accepts_every_rate_in_range(rate: int) -> None:
    parsed = parse_client_text(hello(sample_rate=rate))
    assert isinstance(parsed, Hello)
    assert parsed.sample_rate == rate


@pytest.mark.parametrize("conversation", ["", "a" * 65, "has space", "dot.ted", "slash/es", "../etc", "é", "a\n"])
def test_hello_with_a_bad_conversation_id_is_fatal_1002(conversation: str) -> None:
    err = refused(hello(conversation=conversation))
    assert err.code == "bad_conversation"
    assert err.fatal
    assert err.close_code == protocol.CLOSE_PROTOCOL_ERROR


def test_valid_hello_without_a_conversation() -> None:
    assert parse_client_text(hello()) == Hello(sample_rate=16000, client="kitchen", conversation=None, protocol=1)


@pytest.mark.parametrize("conversation", ["3f2a", "a", "A-Z_a-z-0-9", "x" * 64])
def test_valid_hello_with_a_conversation(conversation: str) -> None:
    parsed = parse_client_text(hello(conversation=conversation))
    assert parsed == Hello(sample_rate=16000, client="kitchen", conversation=conversation)


def test_hello_optional_fields_may_be_absent_or_null() -> None:
    bare = json.dumps({"type": "hello", "protocol": 1, "sample_rate": 16000})
    assert parse_client_text(bare) == Hello(sample_rate=16000, client="", conversation=None)
    nulls = hello(client=None, conversation=None)
    assert parse_client_text(nulls) == Hello(sample_rate=16000, client="", conversation=None)


def test_hello_ignores_fields_it_does_not_know() -> None:
    assert parse_client_text(hello(future="field")) == Hello(sample_rate=16000, client="kitchen")


def test_client_name_is_cut_to_64_characters() -> None:
    parsed = parse_client_text(hello(client="n" * 200))
    assert isinstance(parsed, Hello)
    assert parsed.client == "n" * 64
    exact = parse_client_text(hello(client="é" * 64))
    assert isinstance(exact, Hello)
    assert exact.client == "é" * 64


def test_hello_round_trips_through_its_json() -> None:
    for message in (Hello(44100, "laptop", "abc-123"), Hello(16000)):
        assert parse_client_text(json.dumps(message.to_json())) == message


def test_interrupt_and_bye() -> None:
    assert parse_client_text('{"type": "interrupt"}') == Interrupt()
    assert parse_client_text('{"type": "bye", "reason": "done"}') == Bye()
    assert parse_client_text(json.dumps(Interrupt().to_json())) == Interrupt()
    assert parse_client_text(json.dumps(Bye().to_json())) == Bye()


def test_error_message_carries_fatal() -> None:
    err = refused(hello(protocol=2))
    assert Error.of(err).to_json() == {
        "type": "error",
        "code": "unsupported_protocol",
        "message": err.message,
        "fatal": True,
    }
    assert Error.of(refused("nope")).to_json()["fatal"] is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
hello_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "interrupt", "bye", "other"])},
    optional={
        "protocol": st.one_of(st.just(1), json_values),
        "sample_rate": st.one_of(st.integers(0, 100_000), json_values),
        "client": st.one_of(st.text(max_size=100), json_values),
        "conversation": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{0,70}", fullmatch=True), json_values),
    },
)


@given(st.text(max_size=600))
def test_any_text_is_parsed_or_refused_with_a_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_text(text)


@given(json_values)
def test_any_json_value_is_parsed_or_refused_with_a_protocol_error(value: object) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_text(json.dumps(value))


@given(hello_like)
def test_any_hello_like_object_is_parsed_or_refused_with_a_protocol_error(message: dict[str, Any]) -> None:
    parsed = attempt(lambda: parse_client_text(json.dumps(message)))
    if isinstance(parsed, ProtocolError):
        assert parsed.close_code in (None, 1002, 1003)
    elif isinstance(parsed, Hello):
        assert protocol.MIN_SAMPLE_RATE <= parsed.sample_rate <= protocol.MAX_SAMPLE_RATE
        assert len(parsed.client) <= 64
        assert parsed.conversation is None or protocol.valid_conversation_id(parsed.conversation)


# Client audio frames


def pcm(samples: int) -> bytes:
    return struct.pack(f"<{samples}h", *range(samples)) if samples < 32768 else b"\x01\x00" * samples


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x02\x03", b"\x05\x00\x00\x00"])
def test_short_or_header_only_frame_is_bad_frame(data: bytes) -> None:
    # docs/protocol.md: "An odd byte count or a header-only frame: error bad_frame".
    with pytest.raises(ProtocolError) as caught:
        parse_client_audio(data, 16000)
    assert caught.value.code == "bad_frame"
    assert not caught.value.fatal


@pytest.mark.parametrize("pcm_bytes", [1, 3, 641])
def test_odd_pcm_byte_count_is_bad_frame(pcm_bytes: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_audio(b"\x00" * (4 + pcm_bytes), 16000)
    assert caught.value.code == "bad_frame"
    assert not caught.value.fatal


@pytest.mark.parametrize(("rate", "most"), [(8000, 2000), (16000, 4000), (22050, 5512), (44100, 11025), (48000, 12000)])
def test_frame_size_limit_is_250_ms_at_the_declared_rate(rate: int, most: int) -> None:
    assert max_frame_samples(rate) == most
    seq, audio = parse_client_audio(encode_client_audio(1, pcm(most)), rate)
    assert (seq, len(audio)) == (1, 2 * most)
    with pytest.raises(ProtocolError) as caught:
        parse_client_audio(encode_client_audio(1, pcm(most + 1)), rate)
    assert caught.value.code == "frame_too_large"
    assert not caught.value.fatal


def test_the_largest_legal_frame_is_the_size_cap() -> None:
    largest = encode_client_audio(0, pcm(max_frame_samples(protocol.MAX_SAMPLE_RATE)))
    assert len(largest) == protocol.MAX_FRAME_BYTES == 24_004
    assert parse_client_audio(largest, protocol.MAX_SAMPLE_RATE)[1] == largest[4:]


@pytest.mark.parametrize(
    ("seq", "wire"), [(0, 0), (1, 1), (0xFFFFFFFF, 0xFFFFFFFF), (2**32, 0), (2**32 + 7, 7), (-1, 0xFFFFFFFF)]
)
def test_sequence_number_round_trips_and_wraps(seq: int, wire: int) -> None:
    frame = encode_client_audio(seq, pcm(320))
    assert frame[:4] == struct.pack("<I", wire)
    assert parse_client_audio(frame, 16000) == (wire, pcm(320))


@given(st.binary(max_size=30_000), st.integers(protocol.MIN_SAMPLE_RATE, protocol.MAX_SAMPLE_RATE))
def test_any_bytes_are_a_frame_or_a_protocol_error(data: bytes, rate: int) -> None:
    parsed = attempt(lambda: parse_client_audio(data, rate))
    if isinstance(parsed, ProtocolError):
        assert parsed.code in ("bad_frame", "frame_too_large")
        assert not parsed.fatal
        return
    seq, audio = parsed
    assert 0 <= seq <= 0xFFFFFFFF
    assert audio == data[4:]
    assert len(audio) // 2 <= max_frame_samples(rate)


# Sequence counter


def test_sequence_without_gaps_loses_nothing() -> None:
    counter = SequenceCounter()
    assert [counter.see(seq) for seq in range(100, 110)] == [0] * 10
    assert (counter.lost, counter.received) == (0, 10)


def test_first_frame_may_have_any_number() -> None:
    counter = SequenceCounter()
    assert counter.see(123_456) == 0
    assert counter.lost == 0


def test_a_gap_is_counted() -> None:
    counter = SequenceCounter()
    seen = [counter.see(seq) for seq in (0, 1, 2, 5, 6, 10)]
    assert seen == [0, 0, 0, 2, 0, 3]
    assert (counter.lost, counter.received) == (5, 6)
    assert counter.gap(3).to_json() == {"type": "gap", "missing": 3, "lost_total": 5, "received": 6}


def test_wraparound_is_not_a_gap() -> None:
    counter = SequenceCounter()
    seen = [counter.see(seq) for seq in (0xFFFFFFFE, 0xFFFFFFFF, 0, 1)]
    assert seen == [0, 0, 0, 0]
    assert counter.lost == 0


def test_a_gap_across_the_wrap_is_counted() -> None:
    counter = SequenceCounter()
    counter.see(0xFFFFFFFE)
    assert counter.see(2) == 3  # 0xFFFFFFFF, 0, 1 missing
    assert counter.lost == 3


def test_a_repeated_frame_is_not_a_gap() -> None:
    counter = SequenceCounter()
    seen = [counter.see(seq) for seq in (7, 8, 8, 9)]
    assert seen == [0, 0, 0, 0]
    assert counter.lost == 0


def test_a_late_frame_is_not_a_four_billion_gap() -> None:
    counter = SequenceCounter()
    for seq in range(1, 11):
        counter.see(seq)
    assert counter.see(5) == 0
    assert counter.lost == 0


def test_a_late_frame_does_not_make_the_next_frame_a_gap() -> None:
    # Frames 6..10 arrived; the late 5 must not make 11 look as if 6..10 were lost.
    counter = SequenceCounter()
    for seq in range(1, 11):
        counter.see(seq)
    counter.see(5)
    assert counter.see(11) == 0
    assert counter.lost == 0


# Server audio frames


@pytest.mark.parametrize(
    "event",
    [
        ReplyAudio(1, 0, 22050, pcm(2205)),
        ReplyAudio(0xFFFFFFFF, 0xFFFFFFFF, 48000, b""),
        ReplyAudio(3, 17, 16000, b"\xff\x7f\x00\x80"),
    ],
)
def test_server_audio_round_trip(event: ReplyAudio) -> None:
    data = encode_server_audio(event)
    assert len(data) == 16 + len(event.pcm)
    assert data[12:16] == b"\x00\x00\x00\x00", "the reserved field is 0"
    assert struct.unpack_from("<III", data) == (event.turn, event.seq, event.sample_rate)
    assert parse_server_audio(data) == event


@pytest.mark.parametrize("length", [0, 1, 15, 17, 16 + 441])
def test_server_audio_of_a_bad_length_is_bad_frame(length: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_server_audio(b"\x01" * length)
    assert caught.value.code == "bad_frame"


# Events as JSON


def test_every_event_has_its_wire_form() -> None:
    timings = TurnTimings(
        speech_end=100.0,
        stt_done=100.25,
        first_token=100.5,
        first_audio=100.75,
        prompt_tokens=240,
        evaluated_prompt_tokens=12,
    )
    cases: list[tuple[object, dict[str, Any]]] = [
        (SpeechStarted(1, 250), {"type": "speech_started", "turn": 1, "start_ms": 250}),
        (
            SpeechStopped(1, 250, 1900, truncated=True),
            {"type": "speech_stopped", "turn": 1, "start_ms": 250, "end_ms": 1900, "truncated": True},
        ),
        (
            SpeechStopped(2, 0, 10),
            {"type": "speech_stopped", "turn": 2, "start_ms": 0, "end_ms": 10, "truncated": False},
        ),
        (Transcript(1, "what time is it"), {"type": "transcript", "turn": 1, "text": "what time is it"}),
        (Transcript(1, ""), {"type": "transcript", "turn": 1, "text": ""}),
        (ReplyText(1, "It is "), {"type": "reply_text", "turn": 1, "delta": "It is "}),
        (ReplyAudioStart(1, 22050), {"type": "reply_audio_start", "turn": 1, "sample_rate": 22050}),
        (ReplyAudioEnd(1), {"type": "reply_audio_end", "turn": 1}),
        (Interrupted(2, 5120), {"type": "interrupted", "turn": 2, "at_ms": 5120}),
        (
            TurnDone(1, "what time is it", "It is noon.", timings, start_ms=250, end_ms=1900),
            {
                "type": "turn_done",
                "turn": 1,
                "transcript": "what time is it",
                "reply": "It is noon.",
                "interrupted": False,
                "start_ms": 250,
                "end_ms": 1900,
                "timings": {
                    "speech_end": 0.0,
                    "stt_done": 250.0,
                    "first_token": 500.0,
                    "first_audio": 750.0,
                    "last_audio": None,
                    "interrupted": None,
                    "speculated": None,
                    "work_stt_done": 250.0,
                    "work_first_token": 500.0,
                    "work_first_audio": 750.0,
                    "prompt_tokens": 240.0,
                    "evaluated_prompt_tokens": 12.0,
                },
                "intent": "",
            },
        ),
        (
            Busy("the speech engine is busy", 2.5),
            {"type": "busy", "message": "the speech engine is busy", "expected_wait_s": 2.5},
        ),
    ]
    for event, expected in cases:
        message = to_message(event).to_json()  # type: ignore[arg-type]
        assert message == expected, event
        assert json.loads(protocol.dumps(message)) == expected


def test_a_turn_a_skill_answered_names_its_intent() -> None:
    done = TurnDone(2, "what time is it", "It's noon.", TurnTimings(1.0), 0, 900, intent="HassGetCurrentTime")
    message = to_message(done)
    assert message.to_json()["intent"] == "HassGetCurrentTime"
    assert parse_server_text(message.to_text()) == message


def test_interrupted_turn_done_says_so() -> None:
    timings = TurnTimings(speech_end=1.0, interrupted=1.5)
    message = to_message(TurnDone(3, "tell me", "Once", timings, 0, 900, interrupted=True)).to_json()
    assert message["interrupted"] is True
    assert message["timings"]["interrupted"] == 500.0


@pytest.mark.parametrize(
    ("event", "code"), [(Error("turn 2 failed", "turn_failed"), "turn_failed"), (Error("x"), "error")]
)
def test_error_event_is_an_error_message_with_the_documented_fields(event: Error, code: str) -> None:
    # docs/protocol.md: `error` carries `code`, `message`, `fatal`; a session error closes nothing.
    assert to_message(event).to_json() == {"type": "error", "code": code, "message": event.message, "fatal": False}


def test_reply_audio_has_no_json_form() -> None:
    with pytest.raises(ValueError, match="binary"):
        to_message(ReplyAudio(1, 0, 22050, b"\x00\x00"))


def test_something_that_is_not_an_event_has_no_json_form() -> None:
    with pytest.raises(ValueError, match="no wire form"):
        to_message(object())  # type: ignore[arg-type]


def test_ready_message() -> None:
    ready = Ready.of(conversation="abc", resumed=True, sample_rate=48000, box="kitchen", version="0.1.0")
    assert ready.to_json() == {
        "type": "ready",
        "protocol": 1,
        "conversation": "abc",
        "resumed": True,
        "sample_rate": 48000,
        "max_frame_samples": 12000,
        "box": "kitchen",
        "server": "edgevoice 0.1.0",
    }
    assert Ready.of(conversation="x", resumed=False, sample_rate=16000, box="b", version="1").max_frame_samples == 4000


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert protocol.dumps({"type": "transcript", "text": "café"}) == '{"type":"transcript","text":"café"}'


# Every message both ways

SERVER_MESSAGES: list[ServerMessage] = [
    Ready.of(conversation="abc-123", resumed=False, sample_rate=16000, box="kitchen", version="0.1.0"),
    SpeechStarted(1, 250),
    SpeechStopped(1, 250, 1900, truncated=True),
    Transcript(1, "what time is it"),
    Transcript(2, ""),
    PartialTranscript(1, "what time"),
    ReplyText(1, "It is "),
    ReplyAudioStart(1, 22050),
    ReplyAudioEnd(1),
    Interrupted(2, 5120),
    to_message(TurnDone(1, "what time is it", "It is noon.", TurnTimings(1.0, stt_done=1.25), 250, 1900)),
    Busy("the speech engine is busy", 0.0),
    protocol.Timer("started", "3f2a9c1b", "abc-123", "pasta", 480.0, 479.5, "running", 1_750_000_480.25, 0, "", ""),
    Gap(3, 5, 6),
    Error("turn 2 failed", "turn_failed"),
    Error("over the limit", "rate_limited", fatal=True),
    Bye(),
]
CLIENT_MESSAGES = [Hello(16000), Hello(44100, "laptop", "abc-123", token="secret"), Interrupt(), Bye()]


def test_every_server_message_type_is_documented_and_has_an_example() -> None:
    documented = documented_server_kinds()
    assert "turn_done" in documented
    assert set(protocol._SERVER_MESSAGES) == documented
    assert {message.kind for message in SERVER_MESSAGES} == documented


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: m.kind)
def test_server_message_round_trips(message: ServerMessage) -> None:
    text = message.to_text()
    assert json.loads(text)["type"] == message.kind
    assert parse_server_text(text) == message
    assert type(message).from_json(message.to_json()) == message


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=lambda m: m.kind)
def test_client_message_round_trips(message: Hello | Interrupt | Bye) -> None:
    assert parse_client_text(message.to_text()) == message
    assert type(message).from_json(message.to_json()) == message


def test_turn_done_timings_are_the_sessions_stamps_in_ms() -> None:
    timings = TurnTimings(speech_end=10.0, stt_done=10.2, first_audio=10.5, speculated=9.9)
    done = TurnDone(4, "hi", "Hello.", timings, 100, 900, interrupted=True)
    message = done.message()
    assert message.timings == timings.as_ms()
    assert (message.turn, message.transcript, message.reply, message.interrupted) == (4, "hi", "Hello.", True)
    assert (message.start_ms, message.end_ms) == (100, 900)
    assert parse_server_text(message.to_text()) == message


def server_refused(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_server_text(text)
    return caught.value


@pytest.mark.parametrize("text", ["", "{", "ready", "{'type': 'ready'}", '{"type": "bye"', "\x00"])
def test_server_text_that_is_not_json_is_bad_json(text: str) -> None:
    err = server_refused(text)
    assert err.code == "bad_json"
    assert not err.fatal


@pytest.mark.parametrize("text", ['["ready"]', "42", "null", "{}", '{"kind": "bye"}', '{"type": 1}', '{"type": null}'])
def test_server_json_that_is_not_an_object_with_a_string_type_is_bad_message(text: str) -> None:
    err = server_refused(text)
    assert err.code == "bad_message"
    assert not err.fatal


@pytest.mark.parametrize("kind", ["hello", "interrupt", "speech", "READY", "", "x" * 1000])
def test_unknown_server_type_is_refused_but_not_fatal(kind: str) -> None:
    err = server_refused(json.dumps({"type": kind}))
    assert err.code == "unknown_type"
    assert not err.fatal
    assert len(err.message) < 100, "the echoed type is cut short"


def test_server_text_over_the_cap_is_too_large() -> None:
    room = protocol.MAX_SERVER_TEXT_BYTES - len(Busy("", 1.0).to_text())
    assert parse_server_text(Busy("a" * room, 1.0).to_text()) == Busy("a" * room, 1.0)
    err = server_refused(Busy("é" * (room // 2 + 1), 1.0).to_text())
    assert err.code == "too_large"
    assert not err.fatal


@pytest.mark.parametrize("text", ["[" * 1000, '{"":' * 1000, "[" * 100_000])
def test_deeply_nested_server_json_is_a_protocol_error(text: str) -> None:
    assert server_refused(text).code in ("bad_json", "bad_message")


def server_message_fields() -> list[tuple[ServerMessage, str]]:
    return [(m, name) for m in SERVER_MESSAGES for name in m.to_json() if name != "type"]


def _field_id(value: ServerMessage | str) -> str:
    return value if isinstance(value, str) else value.kind


@pytest.mark.parametrize(("message", "name"), server_message_fields(), ids=_field_id)
def test_server_message_without_a_field_is_bad_message(message: ServerMessage, name: str) -> None:
    for absent in ("missing", None):
        fields = message.to_json()
        if absent == "missing":
            del fields[name]
        else:
            fields[name] = None
        err = server_refused(json.dumps(fields))
        assert err.code == "bad_message", err
        assert name in err.message
        assert not err.fatal


WRONG_VALUES: dict[type, list[object]] = {
    int: ["1", 1.5, True, [1], {"n": 1}],
    float: ["1", True, [1.5], {"n": 1.5}],
    str: [7, True, ["x"], {"s": "x"}],
    bool: [1, 0, "true", [True]],
    dict: ["fast", [1], 5, True],
}


def test_a_negative_expected_wait_is_bad_message() -> None:
    err = server_refused(json.dumps({**Busy("the speech engine is busy", 2.0).to_json(), "expected_wait_s": -0.5}))
    assert err.code == "bad_message"
    assert "expected_wait_s" in err.message


@pytest.mark.parametrize(("message", "name"), server_message_fields(), ids=_field_id)
def test_server_message_with_a_field_of_the_wrong_type_is_bad_message(message: ServerMessage, name: str) -> None:
    value = message.to_json()[name]
    for wrong in WRONG_VALUES[type(value)]:
        err = server_refused(json.dumps({**message.to_json(), name: wrong}))
        assert err.code == "bad_message", (name, wrong)
        assert name in err.message
        assert not err.fatal


@pytest.mark.parametrize("value", ["5", True, [5], {"ms": 5}])
def test_turn_done_timing_that_is_not_a_number_or_null_is_bad_message(value: object) -> None:
    done = next(m for m in SERVER_MESSAGES if m.kind == "turn_done").to_json()
    err = server_refused(json.dumps({**done, "timings": {**done["timings"], "first_audio": value}}))
    assert err.code == "bad_message"
    assert "first_audio" in err.message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_timing_that_is_not_finite_is_refused(value: float) -> None:
    done = next(m for m in SERVER_MESSAGES if m.kind == "turn_done").to_json()
    message = {**done, "timings": {"first_audio": value}}
    assert server_refused(json.dumps(message)).code == "bad_json", "NaN and Infinity are not JSON"
    with pytest.raises(ProtocolError, match="first_audio") as caught:
        protocol.TurnDone.from_json(message)
    assert caught.value.code == "bad_message"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_python_only_json_constants_are_bad_json(constant: str) -> None:
    assert refused(f'{{"type": "hello", "protocol": 1, "sample_rate": {constant}}}').code == "bad_json"
    assert server_refused(f'{{"type": "busy", "message": {constant}}}').code == "bad_json"


def test_a_timer_number_may_be_written_whole() -> None:
    timer = next(m for m in SERVER_MESSAGES if m.kind == "timer").to_json()
    parsed = parse_server_text(json.dumps({**timer, "duration_s": 480, "ends_at": 0}))
    assert isinstance(parsed, protocol.Timer)
    assert (parsed.duration_s, parsed.ends_at) == (480.0, 0.0)
    assert isinstance(parsed.duration_s, float)


def test_turn_done_timings_may_be_whole_numbers_null_or_new_stages() -> None:
    done = next(m for m in SERVER_MESSAGES if m.kind == "turn_done").to_json()
    parsed = parse_server_text(json.dumps({**done, "timings": {"first_audio": 700, "later_stage": None}}))
    assert isinstance(parsed, protocol.TurnDone)
    assert parsed.timings == {"first_audio": 700.0, "later_stage": None}


@pytest.mark.parametrize("version", [0, 2, 99])
def test_ready_of_another_protocol_version_is_fatal(version: int) -> None:
    ready = SERVER_MESSAGES[0].to_json()
    err = server_refused(json.dumps({**ready, "protocol": version}))
    assert err.code == "unsupported_protocol"
    assert err.fatal
    assert "client speaks 1" in err.message


@pytest.mark.parametrize("conversation", ["", "a" * 65, "has space", "../etc"])
def test_ready_with_a_bad_conversation_id_is_fatal(conversation: str) -> None:
    ready = SERVER_MESSAGES[0].to_json()
    err = server_refused(json.dumps({**ready, "conversation": conversation}))
    assert err.code == "bad_conversation"
    assert err.fatal


def test_server_messages_ignore_fields_they_do_not_know() -> None:
    for message in SERVER_MESSAGES:
        assert parse_server_text(json.dumps({**message.to_json(), "future": [1, 2]})) == message


@given(st.text(max_size=600))
def test_any_text_from_a_server_is_parsed_or_refused_with_a_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_server_text(text)


server_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted({m.kind for m in SERVER_MESSAGES} | {"other"}))},
    optional={
        name: json_values
        for name in ("turn", "start_ms", "end_ms", "text", "delta", "message", "code", "fatal", "timings", "protocol")
    },
)


@given(server_like)
def test_any_server_like_object_is_parsed_or_refused_with_a_protocol_error(message: dict[str, Any]) -> None:
    parsed = attempt(lambda: parse_server_text(json.dumps(message)))
    if not isinstance(parsed, ProtocolError):
        assert parsed.kind == message["type"]
        assert parse_server_text(parsed.to_text()) == parsed


@pytest.mark.parametrize("wait", ["2", True, -1, None])
def test_busy_needs_an_expected_wait_of_zero_or_more_seconds(wait: object) -> None:
    err = server_refused(json.dumps({"type": "busy", "message": "the box is busy", "expected_wait_s": wait}))
    assert err.code == "bad_message"
    assert "expected_wait_s" in err.message
    assert parse_server_text('{"type": "busy", "message": "m", "expected_wait_s": 3}') == Busy("m", 3.0)
