"""Whole turns through a voice session, and barge-in while the reply is still playing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from edgevoice.audio.pcm import SAMPLE_RATE, Samples, to_pcm16
from edgevoice.bench.wer import word_error_rate
from edgevoice.conversation import copies_earlier
from edgevoice.engines.engines import Engines
from edgevoice.events import (
    Event,
    Interrupted,
    PartialTranscript,
    ReplyAudio,
    ReplyText,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnDone,
)
from edgevoice.session import VoiceSession
from tests.conftest import with_silence


@dataclass
class PlaybackListener:
    """A speaker that plays reply audio at the pace input frames are fed, recording when each event came.

    Like every output it only listens: Interrupted empties what it still had to play.
    """

    frame_ms: int
    frames_fed: int = 0
    queued_ms: float = 0.0
    log: list[tuple[int, Event]] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.log.append((self.frames_fed, event))
        if isinstance(event, ReplyAudio):
            self.queued_ms += len(event.pcm) / 2 / event.sample_rate * 1000
        elif isinstance(event, Interrupted):
            self.queued_ms = 0.0

    def playing(self) -> bool:
        return self.queued_ms > 0

    def frame_played(self) -> None:
        self.frames_fed += 1
        self.queued_ms = max(0.0, self.queued_ms - self.frame_ms)

    def events(self, kind: type) -> list[tuple[int, Event]]:
        return [(at, e) for at, e in self.log if isinstance(e, kind)]


def _frames(samples: Samples, frame_ms: int) -> list[bytes]:
    pcm = to_pcm16(samples).tobytes()
    size = SAMPLE_RATE * frame_ms // 1000 * 2
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


async def test_barge_in_cancels_reply_and_starts_next_turn(engines: Engines, espeak: Callable[[str], Samples]) -> None:
    frame_ms = engines.config.vad.frame_ms
    listener = PlaybackListener(frame_ms)
    session = VoiceSession(engines, listener)
    silence = np.zeros(SAMPLE_RATE * frame_ms // 1000, dtype=np.int16).tobytes()

    def feed(frame: bytes) -> None:
        session.feed(frame)
        listener.frame_played()

    async with asyncio.timeout(120):
        for frame in _frames(with_silence(espeak("Tell me about the history of Rome."), after_s=0.0), frame_ms):
            feed(frame)
        # Silence until the reply is audibly under way.
        while not listener.events(ReplyAudio):
            feed(silence)
            await asyncio.sleep(frame_ms / 1000)
        assert listener.playing()
        assert session.responding

        second = "What is the weather like today?"
        for frame in _frames(with_silence(espeak(second), before_s=0.0, after_s=1.0), frame_ms):
            feed(frame)
            await asyncio.sleep(0)
        await session.finish()

    starts = listener.events(SpeechStarted)
    assert [e.turn for _, e in starts] == [1, 2]  # type: ignore[attr-defined]
    barge_in_frame = starts[1][0]
    interrupts = listener.events(Interrupted)
    assert len(interrupts) == 1
    # Cancelled in the very feed() call whose frame made the decision.
    assert interrupts[0][0] == barge_in_frame
    assert all(at <= barge_in_frame for at, e in listener.events(ReplyAudio) if e.turn == 1)  # type: ignore[attr-defined]

    done = {e.turn: e for _, e in listener.events(TurnDone)}  # type: ignore[attr-defined]
    assert done[1].interrupted  # type: ignore[attr-defined]
    assert not done[2].interrupted  # type: ignore[attr-defined]
    transcripts = {e.turn: e.text for _, e in listener.events(Transcript)}  # type: ignore[attr-defined]
    assert word_error_rate(second, transcripts[2]) < 0.3
    # The conversation remembers the interrupted exchange and the new one (unless the new reply
    # copies the first, which tiny models do: such a reply is not kept).
    remembered = list(session.conversation.history)
    copied = copies_earlier(remembered[:1], done[2].transcript, done[2].reply)  # type: ignore[attr-defined]
    assert len(remembered) == (1 if copied else 2)


async def test_turn_timings_are_ordered(engines: Engines, espeak: Callable[[str], Samples]) -> None:
    frame_ms = engines.config.vad.frame_ms
    listener = PlaybackListener(frame_ms)
    session = VoiceSession(engines, listener)
    async with asyncio.timeout(120):
        for frame in _frames(with_silence(espeak("What is the capital of France?")), frame_ms):
            session.feed(frame)
        await session.finish()
    (_, done), *_ = listener.events(TurnDone)
    assert isinstance(done, TurnDone)
    assert done.transcript
    assert done.reply
    stages = done.timings.as_ms()
    order = [stages[k] for k in ("speech_end", "stt_done", "first_token", "first_audio", "last_audio")]
    assert all(v is not None for v in order)
    assert order == sorted(order)  # type: ignore[type-var]


def _trimmed(samples: Samples) -> Samples:
    """The clip without espeak's own leading and trailing silence, so a gap we add is the whole gap."""
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    return samples[loud[0] : loud[-1] + 1]


async def _paced(session: VoiceSession, listener: PlaybackListener, samples: Samples) -> None:
    """Feed like a microphone: one frame per frame time, so early work runs during pauses."""
    frame_ms = listener.frame_ms
    for frame in _frames(samples, frame_ms):
        session.feed(frame)
        listener.frame_played()
        await asyncio.sleep(frame_ms / 1000)
    await session.finish()


def _index(listener: PlaybackListener, kind: type) -> list[int]:
    return [i for i, (_, e) in enumerate(listener.log) if isinstance(e, kind)]


async def test_a_pause_within_the_hangover_stays_one_turn(engines: Engines, espeak: Callable[[str], Samples]) -> None:
    """Early work starts on the pause, is dropped when speech goes on, and nothing of it is heard.

    The words before the pause end on "of": they do not sound finished, so the pause is not
    taken for the end even though it is longer than vad.quick_end_ms.
    """
    config = engines.config.vad
    assert config.speculate_ms < config.quick_end_ms < 380 < config.hangover_ms
    gap = np.zeros(SAMPLE_RATE * 380 // 1000, dtype=np.float32)
    clip = np.concatenate([_trimmed(espeak("What is the capital of")), gap, _trimmed(espeak("France?"))])
    listener = PlaybackListener(config.frame_ms)
    session = VoiceSession(engines, listener)
    async with asyncio.timeout(120):
        await _paced(session, listener, with_silence(clip, 0.4, 1.0))
    assert len(listener.events(SpeechStarted)) == 1
    (_, done), *more = listener.events(TurnDone)
    assert not more
    assert isinstance(done, TurnDone)
    assert "capital" in done.transcript.lower()
    assert "france" in done.transcript.lower()  # both halves, not just the words before the pause
    assert len(listener.events(Transcript)) == 1
    assert not done.interrupted
    assert len(session.conversation.history) == 1
    (stopped,) = _index(listener, SpeechStopped)
    assert all(i > stopped for kind in (Transcript, ReplyText, ReplyAudio) for i in _index(listener, kind))


async def test_a_finished_sounding_pause_ends_the_turn_and_speech_after_it_continues_it(
    engines: Engines, espeak: Callable[[str], Samples], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "What is the capital" sounds finished, so a pause past vad.quick_end_ms ends the turn; when
    the speaker goes on, the early answer stops and the reply is to the whole sentence."""
    # The pause and the words are sized for webrtcvad's view of them (Silero hears the pause from
    # a frame or two later, and whisper then hears the glued clip differently now and then).
    monkeypatch.setattr(
        engines,
        "config",
        dataclasses.replace(engines.config, vad=dataclasses.replace(engines.config.vad, detector="webrtc")),
    )
    config = engines.config.vad
    gap = np.zeros(SAMPLE_RATE * 420 // 1000, dtype=np.float32)
    clip = np.concatenate([_trimmed(espeak("Set a timer")), gap, _trimmed(espeak("for ten minutes."))])
    listener = PlaybackListener(config.frame_ms)
    session = VoiceSession(engines, listener)
    async with asyncio.timeout(120):
        await _paced(session, listener, with_silence(clip, 0.4, 1.5))
    dones = [done for _, done in listener.events(TurnDone) if isinstance(done, TurnDone)]
    stops = [stop for _, stop in listener.events(SpeechStopped) if isinstance(stop, SpeechStopped)]
    # The quick end came 300 ms into the 420 ms pause: before the hangover could have ended it.
    first_stop = stops[0]
    assert first_stop.end_ms < stops[-1].end_ms
    assert len(dones) == 2
    # (Its reply may have been cut by the speaker going on, or have finished already: either way it is dropped.)
    first = dones[0].transcript.lower()
    assert first.startswith("set")
    assert "minutes" not in first
    # The second turn heard the first one's words again: one exchange, about the whole question.
    whole = dones[1].transcript.lower()
    assert whole.startswith("set")
    assert "minutes" in whole
    assert len(whole.split()) > len(first.split())
    assert not dones[1].interrupted
    assert [said.lower() for said, _ in session.conversation.history] == [whole]


async def test_an_early_turn_is_heard_only_once_the_turn_ends(
    engines: Engines, espeak: Callable[[str], Samples]
) -> None:
    listener = PlaybackListener(engines.config.vad.frame_ms)
    session = VoiceSession(engines, listener)
    async with asyncio.timeout(120):
        await _paced(session, listener, with_silence(espeak("What is the capital of France?"), 0.4, 1.5))
    (stopped,) = _index(listener, SpeechStopped)
    (transcript,) = _index(listener, Transcript)
    assert transcript > stopped
    (_, done), *_ = listener.events(TurnDone)
    assert isinstance(done, TurnDone)
    stages = done.timings.as_ms()
    # Started on the pause, before the end was decided: the work's stamps run from then, in order.
    timings = done.timings
    assert timings.speculated is not None
    assert timings.stt_done is not None
    assert timings.first_token is not None
    assert timings.first_audio is not None
    assert timings.speculated < timings.speech_end
    assert timings.speculated < timings.stt_done <= timings.first_token <= timings.first_audio
    assert stages["speculated"] is not None
    assert stages["speculated"] < 0
    # The engines' own times run from the early start, so they are not clipped at the end of the turn.
    work = [stages["work_stt_done"], stages["work_first_token"], stages["work_first_audio"]]
    assert all(value is not None and value > 0 for value in work)
    assert work == sorted(work)  # type: ignore[type-var]
    # A stage done before the end was decided counts as done at the end: the same stamps, seen from there.
    for stage, worked in zip(("stt_done", "first_audio"), (work[0], work[2]), strict=True):
        heard = max(0.0, worked + stages["speculated"])  # type: ignore[operator]
        assert stages[stage] is not None
        assert abs(stages[stage] - heard) <= 0.2, (stage, stages)
    # What the speaker feels runs from the last voiced audio the session was fed: before the early
    # start, which needed speculate_ms of silence after it, and before the decision.
    assert timings.voice_end is not None
    assert timings.voice_end <= timings.speculated
    assert stages["decided"] is not None
    assert stages["decided"] >= engines.config.vad.speculate_ms - engines.config.vad.frame_ms
    assert stages["felt_first_audio"] == pytest.approx(stages["decided"] + stages["first_audio"], abs=0.2)


async def test_a_long_turn_shows_what_was_heard_so_far_before_it_ends(
    engines: Engines, espeak: Callable[[str], Samples]
) -> None:
    """While the person speaks, the idle speech-to-text says what it heard so far; never after the turn ended."""
    assert engines.config.vad.partial_every_ms > 0
    sentence = "Tell me how long I should boil an egg so that the yolk stays soft and the white is firm"
    listener = PlaybackListener(engines.config.vad.frame_ms)
    session = VoiceSession(engines, listener)
    async with asyncio.timeout(120):
        await _paced(session, listener, with_silence(espeak(sentence), 0.4, 1.5))
    partials = [e for _, e in listener.events(PartialTranscript)]
    assert partials, "no partial transcript during a long turn"
    assert all(isinstance(e, PartialTranscript) and e.turn == 1 and e.text for e in partials)
    (stopped,) = _index(listener, SpeechStopped)
    assert all(i < stopped for i in _index(listener, PartialTranscript))
    heard = set(partials[0].text.lower().replace(",", "").replace(".", "").split())  # type: ignore[attr-defined]
    assert heard & {"tell", "me", "how", "long", "boil", "egg"}, partials
    (_, done), *_ = listener.events(TurnDone)
    assert isinstance(done, TurnDone)
    assert "egg" in done.transcript.lower()
    # The model read the words heard so far while the person spoke: the turn read fewer than its own words.
    words = len(engines.llm._llama.tokenize(done.transcript.encode(), add_bos=False))  # type: ignore[attr-defined]
    assert done.timings.evaluated_prompt_tokens is not None
    assert done.timings.evaluated_prompt_tokens < words, (partials, done.transcript)
