"""The Wyoming server's protocol core without sockets: events in, requests out, refusals for what it will not take."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from edgevoice.config import Config, WyomingConfig, load_config
from edgevoice.transports.wyoming import conversation_key
from edgevoice.transports.wyoming_requests import (
    DescribeRequest,
    HandleRequest,
    PingRequest,
    Refused,
    SpeakRequest,
    StreamEnded,
    TranscribeRequest,
    WyomingRequests,
)


@pytest.fixture
def quick_config() -> Config:
    config = load_config(None, environ={})
    return dataclasses.replace(config, wyoming=WyomingConfig(max_audio_s=2.0, max_text_chars=50))


def tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1).reshape(-1)


def test_describe_and_ping() -> None:
    requests = WyomingRequests(load_config(None, environ={}))
    assert requests.feed(Describe().event()) == [DescribeRequest()]
    assert requests.feed(Ping(text="hi").event()) == [PingRequest("hi")]


@pytest.mark.parametrize(
    ("rate", "width", "channels"), [(16_000, 2, 1), (44_100, 2, 2), (8_000, 1, 1), (48_000, 4, 2), (22_050, 3, 1)]
)
def test_audio_in_any_format_becomes_16k_mono(quick_config: Config, rate: int, width: int, channels: int) -> None:
    requests = WyomingRequests(quick_config)
    pcm16 = tone(rate, 1.0, channels)
    if width == 1:
        raw = ((pcm16 >> 8).astype(np.int16) + 128).astype(np.uint8).tobytes()
    elif width == 3:
        wide = pcm16.astype(np.int32) << 8
        raw = np.stack([wide & 0xFF, (wide >> 8) & 0xFF, (wide >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    elif width == 4:
        raw = (pcm16.astype(np.int32) << 16).astype("<i4").tobytes()
    else:
        raw = pcm16.astype("<i2").tobytes()
    assert requests.feed(Transcribe(language="en").event()) == []
    assert requests.feed(AudioStart(rate=rate, width=width, channels=channels).event()) == []
    step = rate // 10 * width * channels
    for start in range(0, len(raw), step):
        assert requests.feed(AudioChunk(rate, width, channels, raw[start : start + step]).event()) == []
    [request] = requests.feed(AudioStop().event())
    assert isinstance(request, TranscribeRequest)
    assert request.language == "en"
    heard = np.frombuffer(request.pcm, dtype="<i2").astype(np.float32) / 32768
    assert abs(len(heard) - 16_000) < 200  # a second, at 16 kHz
    spectrum = np.abs(np.fft.rfft(heard[1000:15000]))
    peak_hz = np.argmax(spectrum) * 16_000 / 14_000
    assert abs(peak_hz - 440) < 5  # the same tone, not a sped-up or garbled one
    assert 0.15 < np.sqrt(np.mean(heard**2)) < 0.3  # 0.3 amplitude sine: RMS ~0.21


def test_too_much_audio_is_refused(quick_config: Config) -> None:
    requests = WyomingRequests(quick_config)
    requests.feed(AudioStart(rate=16_000, width=2, channels=1).event())
    second = tone(16_000, 1.0).astype("<i2").tobytes()
    requests.feed(AudioChunk(16_000, 2, 1, second).event())
    requests.feed(AudioChunk(16_000, 2, 1, second).event())
    with pytest.raises(Refused) as refused:
        requests.feed(AudioChunk(16_000, 2, 1, second).event())
    assert refused.value.code == "too_long"


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (AudioChunk(16_000, 2, 1, b"\0\0").event(), "bad_event"),  # before audio-start
        (AudioStop().event(), "bad_event"),
        (Event("audio-start", {"rate": "fast", "width": 2, "channels": 1}), "bad_audio"),
        (Event("audio-start", {"rate": 16_000, "width": 5, "channels": 1}), "bad_audio"),
        (Event("audio-start", {"rate": 16_000}), "bad_event"),
        (Event("synthesize", {}), "bad_event"),
        (Event("synthesize", {"text": 42}), "bad_event"),
        (Synthesize(text="x" * 51).event(), "too_long"),
        (SynthesizeChunk(text="early").event(), "bad_event"),
        (Event("transcript", {"text": None}), "bad_event"),
    ],
)
def test_malformed_events_are_refused_with_a_code(quick_config: Config, event: Event, code: str) -> None:
    with pytest.raises(Refused) as refused:
        WyomingRequests(quick_config).feed(event)
    assert refused.value.code == code
    assert refused.value.text


def test_audio_chunk_in_another_format_than_its_start_is_refused(quick_config: Config) -> None:
    requests = WyomingRequests(quick_config)
    requests.feed(AudioStart(rate=16_000, width=2, channels=1).event())
    with pytest.raises(Refused):
        requests.feed(AudioChunk(22_050, 2, 1, b"\0\0").event())


def test_text_stream_speaks_its_first_words_before_it_ends(quick_config: Config) -> None:
    requests = WyomingRequests(quick_config)
    assert requests.feed(SynthesizeStart().event()) == []
    spoken: list[str] = []
    for piece in ["Hello there, my", " friend. How are", " you"]:
        for request in requests.feed(SynthesizeChunk(text=piece).event()):
            assert isinstance(request, SpeakRequest)
            assert request.streamed
            spoken.append(request.text)
    assert spoken, "nothing spoken before the stream ended"
    # The whole text again, for servers that do not stream: already spoken, so ignored.
    assert requests.feed(Synthesize(text="Hello there, my friend. How are you").event()) == []
    *rest, end = requests.feed(SynthesizeStop().event())
    assert end == StreamEnded()
    spoken += [request.text for request in rest if isinstance(request, SpeakRequest)]
    assert " ".join(" ".join(spoken).split()) == "Hello there, my friend. How are you"
    # After the stream, a plain synthesize is spoken whole again.
    assert requests.feed(Synthesize(text="Bye.").event()) == [SpeakRequest("Bye.", streamed=False)]


def test_text_stream_over_the_limit_is_refused(quick_config: Config) -> None:
    requests = WyomingRequests(quick_config)
    requests.feed(SynthesizeStart().event())
    requests.feed(SynthesizeChunk(text="a" * 30).event())
    with pytest.raises(Refused) as refused:
        requests.feed(SynthesizeChunk(text="b" * 30).event())
    assert refused.value.code == "too_long"


def test_a_transcript_is_a_sentence_to_handle_in_its_conversation() -> None:
    requests = WyomingRequests(load_config(None, environ={}))
    event = Transcript(text="What time is it?", context={"conversation_id": "01HS6SP2XD"}, language="en").event()
    assert requests.feed(event) == [HandleRequest("What time is it?", "01HS6SP2XD", "en")]
    assert requests.feed(Transcript(text="Hi").event()) == [HandleRequest("Hi", None, None)]


def test_conversation_keys_keep_usable_ids_and_hash_the_rest() -> None:
    assert conversation_key("01HS6SP2XD1E5HEHVDZE8R2WMR") == "01HS6SP2XD1E5HEHVDZE8R2WMR"
    assert conversation_key(None) is None
    hashed = conversation_key("mic")  # the box's own conversation is not for the network
    assert hashed is not None
    assert hashed != "mic"
    assert hashed.startswith("wyoming-")
    long = conversation_key("x" * 200)
    assert long == conversation_key("x" * 200)
    assert long != conversation_key("y" * 200)


def test_events_of_other_services_are_ignored() -> None:
    requests = WyomingRequests(load_config(None, environ={}))
    assert requests.feed(Event("detect", {"names": ["ok nabu"]})) == []
