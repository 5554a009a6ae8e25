"""Every input ends in a defined outcome (issue 6): the endpointer, turn-taking, a connection, STT screening.

Property-based, no sockets and no models: the endpointer is fed arbitrary bytes in arbitrary
chunks; turn-taking gets arbitrary voice patterns, transcripts, reply audio and interrupts, and
its decisions are checked against what may follow what; a Connection is driven by a fake socket
with random message sequences, its turns run on stand-in engines; screen() gets arbitrary float
arrays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import types
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgevoice import protocol
from edgevoice.audio.pcm import Pcm16, Samples
from edgevoice.audio.vad import TAIL_MS, Endpointer, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VadEvent
from edgevoice.config import Config, VadConfig, load_config
from edgevoice.engines.llm import Message
from edgevoice.engines.stt import MIN_SECONDS, MIN_SPEECH_SECONDS, screen
from edgevoice.engines.worker import EngineBusy
from edgevoice.errors import EdgevoiceError
from edgevoice.server.conversations import RESERVED_CONVERSATIONS, ConversationStore
from edgevoice.transports.socket import Connection, Limits
from edgevoice.turn_taking import (
    Confirm,
    Continue,
    Decision,
    Discard,
    HearSoFar,
    Interrupt,
    JudgeEnd,
    StartEarly,
    StartTurn,
    TurnTaking,
    UserSpeaking,
    UserStopped,
)
from tests.support.wire import documented_server_kinds

# --- 1. Endpointer ---------------------------------------------------------------------------

BYTES_PER_MS = 32  # 16 kHz, 16-bit mono

vad_configs = st.builds(
    VadConfig,
    frame_ms=st.sampled_from([10, 20, 30]),
    aggressiveness=st.integers(0, 3),
    pre_roll_ms=st.integers(0, 600),
    min_speech_ms=st.integers(0, 400),
    hangover_ms=st.integers(0, 800),
    speculate_ms=st.integers(0, 800),
    max_utterance_ms=st.integers(1, 3000),
)
chunk = st.one_of(
    st.just(b""),
    st.binary(max_size=7),  # odd and sub-frame lengths
    st.binary(max_size=2000),
    st.binary(min_size=20_000, max_size=64_000),  # many frames at once
    st.integers(1, 40_000).map(bytes),  # silence
    st.integers(1, 20_000).map(lambda n: b"\xff\x7f\x01\x80" * n),  # full-scale square wave
)


class _EventChecker:
    """Follows a stream of endpointer events and fails on one that cannot happen."""

    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self.frame_bytes = 16_000 * config.frame_ms // 1000 * 2
        self.started = False
        self.paused = False
        self.last_decided = 0
        self.started_decided = 0
        self.counts: dict[str, int] = {}

    def check(self, events: list[VadEvent], now_ms: int) -> None:
        for event in events:
            self.counts[type(event).__name__] = self.counts.get(type(event).__name__, 0) + 1
            if isinstance(event, SpeechStarted):
                assert not self.started, event
                assert event.start_ms <= event.decided_ms <= now_ms, event
                self._decided(event.decided_ms)
                self.started = True
                self.started_decided = event.decided_ms
            elif isinstance(event, SpeechPaused):
                assert self.started, event
                assert not self.paused, event
                self._utterance(event.start_ms, event.end_ms, event.decided_ms, event.pcm, now_ms)
                self.paused = True
            elif isinstance(event, SpeechResumed):
                assert self.paused, event
                assert event.at_ms <= now_ms, event
                self.paused = False
            elif isinstance(event, SpeechEnded):
                assert self.started, event
                self._utterance(event.start_ms, event.end_ms, event.decided_ms, event.pcm, now_ms)
                if event.truncated:
                    # Cut at the first frame of speech that reaches max_utterance_ms, but never before the
                    # frame after the one that started the turn (a candidate may outlast the limit).
                    frame_ms = self.config.frame_ms
                    limit = -(-self.config.max_utterance_ms // frame_ms) * frame_ms
                    assert event.decided_ms - event.start_ms <= max(
                        limit, self.started_decided - event.start_ms + frame_ms
                    )
                self.started = self.paused = False
            else:
                raise AssertionError(f"unknown event {event!r}")

    def _decided(self, decided_ms: int) -> None:
        assert decided_ms >= self.last_decided
        self.last_decided = decided_ms

    def _utterance(self, start_ms: int, end_ms: int, decided_ms: int, pcm: bytes, now_ms: int) -> None:
        assert 0 <= start_ms <= end_ms <= decided_ms <= now_ms, (start_ms, end_ms, decided_ms, now_ms)
        self._decided(decided_ms)
        assert pcm
        assert len(pcm) % 2 == 0
        assert len(pcm) % self.frame_bytes == 0
        # The utterance holds the voiced span, at most the pre-roll before it, and at most TAIL_MS
        # of digital silence after it, which makes up a pause shorter than that.
        frame_ms = self.config.frame_ms
        assert len(pcm) // BYTES_PER_MS >= end_ms - start_ms
        pre_roll = self.config.pre_roll_ms // frame_ms * frame_ms
        padding = max(1, TAIL_MS // frame_ms) * frame_ms
        assert len(pcm) // BYTES_PER_MS <= decided_ms - start_ms + pre_roll + padding


def _drive(endpointer: Endpointer, config: VadConfig, chunks: list[bytes]) -> _EventChecker:
    checker = _EventChecker(config)
    fed = 0
    for piece in chunks:
        events = endpointer.feed(piece)
        fed += len(piece)
        # Stream time is the bytes fed, in whole frames: bytes / 32 ms, rounded down to a frame.
        assert endpointer.now_ms == fed // checker.frame_bytes * config.frame_ms
        assert endpointer.now_ms <= fed / BYTES_PER_MS < endpointer.now_ms + config.frame_ms
        checker.check(events, endpointer.now_ms)
        assert endpointer.in_speech == checker.started
    checker.check(endpointer.flush(), endpointer.now_ms)
    assert not checker.started
    assert not endpointer.in_speech
    return checker


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config=vad_configs, chunks=st.lists(chunk, max_size=12))
def test_endpointer_with_webrtcvad_takes_any_bytes(config: VadConfig, chunks: list[bytes]) -> None:
    _drive(Endpointer(config), config, chunks)


@settings(max_examples=300, deadline=None)
@given(
    config=vad_configs,
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 120)), min_size=1, max_size=20),
    lengths=st.lists(st.integers(0, 50_000), max_size=25),
)
def test_endpointer_with_any_detector_pattern(
    config: VadConfig, runs: list[tuple[bool, int]], lengths: list[int]
) -> None:
    """An injected detector says voiced/unvoiced in runs; the chunk sizes are arbitrary, odd included."""
    pattern = [voiced for voiced, length in runs for _ in range(length)]
    frames = iter(range(1 << 62))
    frame_bytes = 16_000 * config.frame_ms // 1000 * 2

    def is_speech(frame: bytes) -> bool:
        assert len(frame) == frame_bytes
        return pattern[next(frames) % len(pattern)]

    _drive(Endpointer(config, is_speech), config, [bytes(n) for n in lengths])


def test_endpointer_event_order_is_checked() -> None:
    """The checker itself is not vacuous: a long voiced run then silence gives started, paused, ended."""
    config = VadConfig()
    voiced = iter([True] * 50 + [False] * 1000)
    checker = _drive(Endpointer(config, lambda _frame: next(voiced)), config, [bytes(640 * 60)])
    assert checker.counts == {"SpeechStarted": 1, "SpeechPaused": 1, "SpeechEnded": 1}


# --- 2. Turn-taking ------------------------------------------------------------------------


class _DecisionChecker:
    """Follows turn-taking's decisions as a driver would carry them out, and fails on one that may not
    follow what came before."""

    def __init__(self) -> None:
        self.turn = 0
        self.speaking = False
        self.early: int | None = None
        self.live: int | None = None
        """The work answering, or that last answered: the one a Continue or Interrupt names."""
        self.works: set[int] = set()
        self.running: set[int] = set()
        """Works started and not reported finished, as a driver's tasks."""
        self.cancelled: set[int] = set()
        self.settled: set[int] = set()
        """Early works confirmed or discarded: each exactly once."""
        self.counts: dict[str, int] = {}

    def answering(self) -> bool:
        return self.live is not None and self.live in self.running and self.live not in self.cancelled

    def check(self, decisions: list[Decision]) -> None:
        previous: Decision | None = None
        for decision in decisions:
            self.counts[type(decision).__name__] = self.counts.get(type(decision).__name__, 0) + 1
            self._check(decision, previous)
            previous = decision
        # A stop is answered (Confirm, or StartTurn after a Discard), a Continue starts a turn, at once.
        assert not isinstance(previous, UserStopped | Continue), decisions
        assert not (isinstance(previous, Discard) and not self.speaking), decisions

    def _new_work(self, work: int) -> None:
        assert work not in self.works, work
        self.works.add(work)
        self.running.add(work)

    def _check(self, decision: Decision, previous: Decision | None) -> None:
        if isinstance(previous, UserStopped):
            assert isinstance(decision, Confirm | Discard | StartTurn), (previous, decision)
        if isinstance(previous, Discard) and not self.speaking:
            assert isinstance(decision, StartTurn), (previous, decision)
        if isinstance(previous, Continue):
            assert isinstance(decision, Interrupt | UserSpeaking), (previous, decision)
        if isinstance(decision, UserSpeaking):
            assert not self.speaking, decision
            assert self.early is None, decision
            assert decision.turn == self.turn + 1, decision
            assert not self.answering(), "new speech while a turn runs, and no Interrupt"
            self.turn, self.speaking = decision.turn, True
        elif isinstance(decision, StartEarly):
            assert self.speaking, decision
            assert self.early is None, decision
            assert decision.turn == self.turn, decision
            assert decision.pcm, decision
            assert decision.start_ms <= decision.end_ms, decision
            self._new_work(decision.work)
            self.early = decision.work
        elif isinstance(decision, Discard):
            assert decision.work == self.early, decision
            assert decision.work not in self.settled, decision
            self.settled.add(decision.work)
            self.cancelled.add(decision.work)
            self.early = None
        elif isinstance(decision, UserStopped):
            assert self.speaking, decision
            assert decision.turn == self.turn, decision
            assert decision.start_ms <= decision.end_ms, decision
            self.speaking = False
        elif isinstance(decision, Confirm):
            assert decision.work == self.early, decision
            assert decision.work not in self.settled, decision
            self.settled.add(decision.work)
            self.early, self.live = None, decision.work
        elif isinstance(decision, StartTurn):
            assert self.early is None, decision
            assert decision.turn == self.turn, decision
            assert decision.pcm, decision
            self._new_work(decision.work)
            self.live = decision.work
        elif isinstance(decision, Continue):
            assert not self.speaking, decision
            assert decision.work == self.live, decision
        elif isinstance(decision, HearSoFar):
            assert self.speaking, decision
            assert decision.turn == self.turn, decision
            assert decision.pcm, decision
        elif isinstance(decision, JudgeEnd):
            assert decision.work == self.early, decision
            assert decision.pcm, decision
        else:
            assert not self.speaking, decision
            assert decision.turn == self.turn, decision
            if self.answering():
                assert decision.work == self.live, decision
                self.cancelled.add(decision.work)
            else:
                assert decision.work is None, decision


turn_taking_configs = st.builds(
    VadConfig,
    frame_ms=st.sampled_from([10, 20, 30]),
    pre_roll_ms=st.integers(0, 600),
    min_speech_ms=st.integers(0, 400),
    hangover_ms=st.integers(0, 800),
    speculate_ms=st.integers(0, 800),
    quick_end_ms=st.integers(0, 800),
    max_utterance_ms=st.integers(1, 3000),
)
TRANSCRIPTS = ["What time is it?", "Set a timer for", "Turn on the lights,", "", "Thank you."]
turn_actions = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["voice", "silence"]), st.integers(1, 60)),  # frames
        st.tuples(st.sampled_from(["heard", "heard_settled"]), st.integers(0, len(TRANSCRIPTS) - 1)),
        st.tuples(st.just("finished"), st.integers(0, 3)),
        st.tuples(st.just("audio"), st.integers(1, 40_000)),  # samples at 22.05 kHz
        st.tuples(st.just("interrupt"), st.just(0)),
    ),
    max_size=40,
)


def _drive_turn_taking(config: VadConfig, actions: list[tuple[str, int]], chunk_frames: int) -> _DecisionChecker:
    """Run a script of voice, silence, transcripts, finished work, reply audio and interrupts."""
    turns = TurnTaking(config, is_speech=any)
    checker = _DecisionChecker()
    frame_bytes = 16_000 * config.frame_ms // 1000 * 2
    for action, value in actions:
        if action in ("voice", "silence"):
            pcm = (b"\x01\x00" if action == "voice" else b"\x00\x00") * (frame_bytes // 2 * value)
            step = frame_bytes * chunk_frames
            for start in range(0, len(pcm), step):
                checker.check(turns.feed(pcm[start : start + step]))
        elif action == "heard" and checker.early is not None:
            checker.check(turns.heard(checker.early, TRANSCRIPTS[value]))
        elif action == "heard_settled" and checker.settled:
            assert turns.heard(max(checker.settled), TRANSCRIPTS[value]) == [], "a settled work still counted"
        elif action == "finished" and checker.running:
            work = sorted(checker.running)[value % len(checker.running)]
            checker.running.discard(work)
            checker.check(turns.finished(work))
        elif action == "audio" and checker.answering():
            turns.reply_audio(value, 22_050)
            assert turns.responding
        elif action == "interrupt":
            answering = checker.answering()
            decisions = turns.interrupt()
            checker.check(decisions)
            assert not turns.responding
            if answering:
                assert decisions, "an answer was not interrupted"
        if checker.answering():
            assert turns.responding, "a turn runs, and turn-taking does not know"
    checker.check(turns.flush())
    assert not checker.speaking
    assert checker.early is None
    return checker


@settings(max_examples=400, deadline=None)
@given(config=turn_taking_configs, actions=turn_actions, chunk_frames=st.integers(1, 7))
def test_turn_taking_decisions_follow_each_other_as_they_may(
    config: VadConfig, actions: list[tuple[str, int]], chunk_frames: int
) -> None:
    checker = _drive_turn_taking(config, actions, chunk_frames)
    for kind, count in checker.counts.items():
        hypothesis.event(f"{kind} x{min(count, 3)}")


def test_turn_taking_checker_is_not_vacuous() -> None:
    """A scripted exchange reaches every decision: early start, discard, quick end, continue, interrupt."""
    config = VadConfig()
    actions = [
        ("voice", 25),
        ("silence", 5),  # paused: StartEarly
        ("voice", 10),  # resumed: Discard
        ("silence", 2),
        ("heard", 0),
        ("silence", 13),  # finished-sounding, 300 ms: UserStopped, Confirm
        ("silence", 5),
        ("voice", 15),  # within the hangover: Continue, Interrupt, UserSpeaking
        ("silence", 30),
        ("voice", 15),  # the running turn: Interrupt
        ("finished", 0),
        ("finished", 0),
        ("finished", 0),
        ("interrupt", 0),  # nothing to interrupt: turn 3 is still being spoken
    ]  # and the end of input ends turn 3, which paused on nothing: StartTurn
    checker = _drive_turn_taking(dataclasses.replace(config, speculate_ms=40), actions, 1)
    assert set(checker.counts) == {
        "UserSpeaking",
        "StartEarly",
        "Discard",
        "UserStopped",
        "Confirm",
        "Continue",
        "Interrupt",
        "StartTurn",
    }, checker.counts
    no_early = _drive_turn_taking(dataclasses.replace(config, speculate_ms=0), [("voice", 25), ("silence", 30)], 3)
    assert no_early.counts == {"UserSpeaking": 1, "UserStopped": 1, "StartTurn": 1}


# --- 3. Connection ---------------------------------------------------------------------------

DOCUMENTED_CLOSE_CODES = {1000, 1001, 1002, 1003, 1009, 1011, 1013, 4001, 4002}
SERVER_EVENT_TYPES = documented_server_kinds()


@dataclasses.dataclass
class _Message:
    type: WSMsgType
    data: Any = None


@dataclasses.dataclass
class _Yield:
    """Not a message: the client pauses, so the session's tasks get the loop for a while."""

    turns: int


FRAME_S = 0.005
"""The client's time a scripted message takes: a quarter of an audio frame's, so a long script floods
the connection's limit of messages per second as a fast client would."""
TURN_S = 0.001
"""The client's time one loop turn of a pause takes."""


class _FakeSocket:
    """What Connection uses of aiohttp's WebSocketResponse, with the client's messages scripted.

    The client keeps its own time (now()): a message takes FRAME_S, a pause TURN_S a loop turn. The
    connection counts messages per second on it, so what a script does never depends on how fast
    the machine runs it (a fuzzer's outcomes, and the paths it learns from, stay the same run to run).
    """

    def __init__(self, script: list[_Message | _Yield]) -> None:
        self._script = list(script)
        self._now = 0.0
        self.closed = False
        self.close_code: int | None = None
        self.server_closed_with: int | None = None
        self.texts: list[str] = []
        self.frames: list[bytes] = []
        self.sent_after_close = 0
        self._receiving: AsyncIterator[_Message] | None = None

    def __aiter__(self) -> AsyncIterator[_Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[_Message]:
        for item in self._script:
            if self.closed:
                return
            if isinstance(item, _Yield):
                for _ in range(item.turns):
                    self._now += TURN_S
                    await asyncio.sleep(0)
                continue
            self._now += FRAME_S
            await asyncio.sleep(0)
            yield item
        # The client hangs up after its last message.
        if not self.closed:
            self.closed, self.close_code = True, 1000

    async def receive(self) -> _Message:
        """The next scripted message, as aiohttp's receive() gives it; CLOSED once the script is done."""
        if self._receiving is None:
            self._receiving = self._messages()
        try:
            return await anext(self._receiving)
        except StopAsyncIteration:
            return _Message(WSMsgType.CLOSED)

    def now(self) -> float:
        """The client's time, in seconds since it started."""
        return self._now

    def exception(self) -> BaseException | None:
        return ConnectionResetError("fake transport error")

    async def send_str(self, data: str) -> None:
        self.sent_after_close += self.closed
        self.texts.append(data)
        await asyncio.sleep(0)

    async def send_bytes(self, data: bytes) -> None:
        self.sent_after_close += self.closed
        self.frames.append(data)
        await asyncio.sleep(0)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        assert len(message) <= 123
        if self.closed:
            return False
        self.closed, self.close_code, self.server_closed_with = True, code, code
        return True


class StandInEngines:
    """What a turn uses of Engines, without models: the outcome depends on the utterance's length, so
    every kind occurs (a failure, a busy engine, nothing heard, a whole reply)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tts = types.SimpleNamespace(sample_rate=22_050)
        self.stt_idle = True
        self.serving_turns = False

    def expected_wait_s(self, _claim: object) -> float:
        return 0.0

    async def transcribe(self, samples: Samples, _claim: object = None) -> str:
        await asyncio.sleep(0)
        outcome = len(samples) // 320 % 4
        if outcome == 1:
            raise EdgevoiceError("stand-in failure")
        if outcome == 2:
            raise EngineBusy("stand-in busy")
        return "" if outcome == 3 else "hello there"

    async def reply(
        self, _messages: Sequence[Message], _claim: object = None, _key: object = None, _stats: object = None
    ) -> AsyncIterator[str]:
        await asyncio.sleep(0)
        yield "hi"

    async def speech(self, _text: str, *, first_words: bool = False, claim: object = None) -> AsyncIterator[Pcm16]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield np.zeros(441, dtype=np.int16)

    def prepare(self, _messages: Sequence[Message], _key: object = None, heard: str = "") -> None:
        pass


def _hello_json(draw: st.DrawFn) -> str:
    message: dict[str, Any] = {"type": "hello"}
    message["protocol"] = draw(st.sampled_from([1, 1, 1, 0, 2, -1, "1", True, None, 1.0]))
    message["sample_rate"] = draw(
        st.sampled_from([16_000, 16_000, 8_000, 48_000, 44_100, 22_050, 7_999, 48_001, 0, -16_000, "16000", 1e4])
        | st.integers(-(2**70), 2**70)
    )
    if draw(st.booleans()):
        message["client"] = draw(st.text(max_size=80) | st.integers() | st.none())
    if draw(st.booleans()):
        message["conversation"] = draw(
            st.sampled_from(sorted(RESERVED_CONVERSATIONS))
            | st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
            | st.text(max_size=70)
            | st.integers()
        )
    return json.dumps(message, ensure_ascii=draw(st.booleans()))


@st.composite
def _text_message(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return _hello_json(draw)
    if kind == 1:
        return json.dumps({"type": draw(st.sampled_from(["interrupt", "bye"]))})
    if kind == 2:  # a valid message, mutated: truncated, a character replaced or inserted
        text = draw(st.sampled_from(['{"type":"interrupt"}', '{"type":"bye"}'])) if draw(st.booleans()) else None
        text = text or _hello_json(draw)
        at = draw(st.integers(0, len(text)))
        action = draw(st.integers(0, 2))
        if action == 0:
            return text[:at]
        replacement = draw(st.characters())
        return text[:at] + replacement + text[at + (action == 1) :]
    if kind == 3:
        return draw(st.text(max_size=200))
    if kind == 4:  # deep nesting, under and over the parser's recursion limit and the size cap
        depth = draw(st.integers(1, 5000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"type":', "}")]))
        return opener * depth + "1" + closer * depth * draw(st.integers(0, 1))
    if kind == 5:  # any JSON value, the type field included or not
        value = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                max_leaves=20,
            )
        )
        if draw(st.booleans()):
            value = {"type": draw(st.text(max_size=50) | st.sampled_from(["hello", "bye", "interrupt"])), "x": value}
        return json.dumps(value)
    if kind == 6:  # over the size cap
        return '{"type":"bye","pad":"' + "é" * draw(st.integers(2000, 5000)) + '"}'
    return draw(st.sampled_from(["", " ", "null", "[]", "{}", '{"type":null}', "NaN", "\x00", "\ud800"]))


_t = np.arange(16_000) / 16_000
_VOICE = (sum(np.sin(2 * np.pi * 150 * k * _t) / k for k in range(1, 20)) * 0.3 * 32767).astype("<i2").tobytes()
"""A second of 150 Hz with harmonics, 16 kHz PCM: voiced for webrtcvad (98 % of frames)."""


@st.composite
def _binary_message(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    seq = draw(st.integers(0, 2**32 - 1) | st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=6))  # no header, header only, odd
    if kind == 1:  # silence of any length, odd included, over the 250 ms cap included
        return protocol.encode_client_audio(seq, bytes(draw(st.integers(0, 24_001))))
    if kind == 2:  # noise
        return protocol.encode_client_audio(seq, draw(st.binary(max_size=8_000)))
    if kind == 3:  # up to 250 ms of a buzz that webrtcvad takes for voice: it starts turns
        return protocol.encode_client_audio(seq, _VOICE[: 2 * draw(st.integers(1, 4000))])
    return draw(st.binary(min_size=24_000, max_size=30_000))


_script_item = st.one_of(
    _text_message().map(lambda text: _Message(WSMsgType.TEXT, text)),
    _binary_message().map(lambda data: _Message(WSMsgType.BINARY, data)),
    st.just(_Message(WSMsgType.ERROR)),
    st.integers(1, 30).map(_Yield),
)


@st.composite
def _scripts(draw: st.DrawFn) -> list[_Message | _Yield]:
    script: list[_Message | _Yield] = []
    if draw(st.booleans()):
        rate = draw(st.sampled_from([16_000, 8_000, 48_000]))
        script.append(_Message(WSMsgType.TEXT, protocol.Hello(rate, "fuzz").to_text()))
    for _ in range(draw(st.integers(1, 4))):
        script.extend(draw(st.lists(_script_item, max_size=10)))
        if draw(st.booleans()):  # a spoken turn: voice, then enough silence (or not) to end it
            voiced, silent = draw(st.integers(5, 40)), draw(st.integers(0, 40))
            pcm = [_VOICE[i % 25 * 640 : i % 25 * 640 + 640] for i in range(voiced)] + [bytes(640)] * silent
            script.extend(_Message(WSMsgType.BINARY, protocol.encode_client_audio(i, p)) for i, p in enumerate(pcm))
            script.append(_Yield(draw(st.integers(0, 50))))
    return script


@pytest.fixture(scope="module")
def fuzz_config() -> Config:
    # webrtcvad, which takes the buzz of _VOICE for voice (Silero, the default, does not): turns start.
    return load_config(None, environ={"EDGEVOICE_VAD_DETECTOR": "webrtc"})


def _check_outcome(ws: _FakeSocket, problems: list[str]) -> None:
    assert not problems, problems
    fatal = False
    for text in ws.texts:
        message = protocol.parse_server_text(text)  # every field of every message well formed
        assert message.kind in SERVER_EVENT_TYPES, message
        if isinstance(message, protocol.Error):
            fatal = fatal or message.fatal
    for frame in ws.frames:
        protocol.parse_server_audio(frame)
    if ws.server_closed_with is not None:
        assert ws.server_closed_with in DOCUMENTED_CLOSE_CODES, ws.server_closed_with
    if fatal:
        assert ws.server_closed_with in {1002, 1003}, (ws.server_closed_with, ws.texts[-3:])


async def _run_connection(config: Config, directory: Path, script: list[_Message | _Yield]) -> _FakeSocket:
    problems: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: problems.append(str(context.get("exception", context))))
    ws = _FakeSocket(script)
    store = ConversationStore(directory, config.llm.system_prompt, config.llm.history_turns, 4)
    engines: Any = StandInEngines(config)
    connection = Connection(
        ws,  # type: ignore[arg-type]
        engines,
        store,
        "fuzzbox",
        lambda _id, _connection: None,
        limits=Limits(clock=ws.now),
    )
    async with asyncio.timeout(20):
        await connection.run()
    _check_outcome(ws, problems)
    return ws


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(script=_scripts())
def test_connection_ends_every_script_in_a_defined_outcome(
    fuzz_config: Config, script: list[_Message | _Yield]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ws = asyncio.run(_run_connection(fuzz_config, Path(directory), script))
    sent = {protocol.parse_server_text(text).kind for text in ws.texts}
    hypothesis.event(f"closed by server with {ws.server_closed_with}")
    for kind in sorted(sent & {"ready", "speech_started", "turn_done", "busy", "interrupted", "gap", "error"}):
        hypothesis.event(f"sent {kind}")


def test_connection_fuzz_reaches_turns(fuzz_config: Config, tmp_path: Path) -> None:
    """The harness is not vacuous: loud audio after hello gives turns, and bye closes with 1000."""
    loud = protocol.encode_client_audio
    script: list[_Message | _Yield] = [_Message(WSMsgType.TEXT, protocol.Hello(16_000, "fuzz").to_text())]
    script += [_Message(WSMsgType.BINARY, loud(seq, _VOICE[seq * 640 : (seq + 1) * 640])) for seq in range(25)]
    script += [_Message(WSMsgType.BINARY, loud(30 + seq, bytes(640))) for seq in range(60)]
    script += [_Yield(200), _Message(WSMsgType.TEXT, '{"type":"bye"}')]
    ws = asyncio.run(_run_connection(fuzz_config, tmp_path, script))
    types_sent = [protocol.parse_server_text(text).kind for text in ws.texts]
    assert types_sent[0] == "ready", types_sent
    assert "speech_started" in types_sent, types_sent
    assert "turn_done" in types_sent, types_sent
    assert types_sent[-1] == "bye"
    assert ws.server_closed_with == 1000


# --- 4. STT screening ------------------------------------------------------------------------

special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-9, 3e38, -3e38, 1e300, -1e300, np.nan, np.inf, -np.inf])
arrays = st.one_of(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.float16]),
        st.integers(0, 40_000),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=16) | special.map(float),
    ),
    st.tuples(st.integers(0, 40_000), special).map(lambda t: np.full(t[0], t[1], dtype=np.float64)),  # DC
    st.tuples(st.integers(0, 40_000), st.floats(-1e6, 1e6)).map(
        lambda t: np.clip(np.sin(np.arange(t[0], dtype=np.float32)) * t[1], -1, 1).astype(np.float32)  # clipped
    ),
    st.tuples(st.integers(0, 40_000), st.floats(1e-6, 1e-2)).map(  # quiet, near the line between signal and none
        lambda t: (np.sin(np.arange(t[0], dtype=np.float32)) * t[1]).astype(np.float32)
    ),
    st.tuples(st.integers(1, 20_000), st.floats(1e30, 3.4e38)).map(  # halves of opposite huge values
        lambda t: np.concatenate([np.full(t[0], t[1], np.float32), np.full(t[0], -t[1], np.float32)])
    ),
)


def _screen_outcome(samples: np.ndarray) -> None:
    """screen() never raises: NaN and infinities become 0, values are clipped to [-1, 1], DC goes; a clip
    too short or without signal left after that is None, and any other is padded, never cut."""
    clip = screen(samples)
    if samples.size < MIN_SPEECH_SECONDS * 16_000:
        assert clip is None, "a clip too short to hold a word passed screening"
        return
    cleaned = np.clip(np.nan_to_num(samples.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
    if clip is None:
        assert float(np.ptp(cleaned.astype(np.float64))) < 2e-4 + 1e-6, "audio with signal in it was screened out"
        return
    assert clip.dtype == np.float32
    assert clip.ndim == 1
    assert clip.flags.c_contiguous
    assert clip.size == max(samples.size, int(MIN_SECONDS * 16_000))
    assert np.isfinite(clip).all(), f"non-finite samples passed screening: {clip[~np.isfinite(clip)][:3]}"
    assert float(np.abs(clip).max()) <= 1.0
    assert float(np.abs(clip).max()) >= 1e-4, "a clip with no signal left passed screening"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(samples=arrays)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_screen_returns_finite_audio_or_none(samples: np.ndarray) -> None:
    _screen_outcome(samples)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_screen_does_not_pass_nan_from_opposite_huge_halves() -> None:
    """Found by the test above: the mean of +3e38 and -3e38 halves overflows to inf - inf = NaN."""
    samples = np.concatenate([np.full(1000, 3e38, np.float32), np.full(1000, -3e38, np.float32)])
    _screen_outcome(samples)
