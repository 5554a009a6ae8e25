"""Turn-taking, sans-I/O: input audio and early transcripts in, decisions about turns out.

The endpointer finds the user's turns in the input audio; this decides what to do about them,
and the session carries the decisions out (it runs the turns, holds and releases what they say).
Time is the input stream's, in ms: nothing here reads a clock.

A turn starts early, on the endpointer's pause (vad.speculate_ms of silence, or
vad.speculate_idle_ms while the engines have no turn's work: engines_free()): its work runs while
the rest of the hangover passes, with everything it says held back. When the turn really ends,
that work is confirmed (what it held is heard at once, and the rest live); when the speaker goes
on instead, it is discarded, unheard.

The turn really ends after the hangover, or sooner, on the pause, when it sounds finished. With
vad.turn_end = "words", after vad.quick_end_ms of silence when the early transcript sounds finished
(edgevoice.turn_end). With "smart-turn", after vad.turn_check_ms, when the end-of-turn model
(JudgeEnd, answered by judged(); edgevoice.audio.smart_turn) hears the voice finish and the words
sound finished too; a pause it did not end lasts vad.turn_wait_ms, not the hangover. When the pause
reaches that point before the transcript (and the model's answer) are in, input audio is held, not
judged, until they are: so the turns found in a recording depend on its audio, its words and the
model only, never on how busy the box is. Speech that starts within a hangover of
such a quick end continues that turn: its answer stops and is not remembered, and its audio is
heard again at the start of the next turn, so the reply is to the whole sentence.

New speech while the assistant is answering (a turn's work is running, or the reply audio it
emitted is still playing) interrupts it: barge-in. Playing is judged from the audio's length and
the stream time it was emitted at, as a speaker fed in step with the input would play it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgevoice.audio.vad import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VadEvent
from edgevoice.config import VadConfig
from edgevoice.turn_end import sounds_finished, turn_complete

MAX_HELD_MS = 30_000
"""Input audio held while waiting for an early transcript, at most; past it the pause is judged without one."""


@dataclass(frozen=True)
class UserSpeaking:
    """The user began turn `turn`: tell the outputs (SpeechStarted)."""

    turn: int
    start_ms: int


@dataclass(frozen=True)
class UserStopped:
    """The user's turn ended: tell the outputs (SpeechStopped). A Confirm or StartTurn follows."""

    turn: int
    start_ms: int
    end_ms: int
    truncated: bool


@dataclass(frozen=True)
class StartEarly:
    """Start work on the turn on its pause, holding back all it says until Confirm; Discard forgets it."""

    work: int
    """Names this work in later decisions and in what the driver reports (heard, finished)."""
    turn: int
    pcm: bytes
    """What to transcribe: the utterance so far, after the audio of a turn it continues."""
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class StartTurn:
    """Start work on a turn that has ended, live: nothing was started early, or not for this end."""

    work: int
    turn: int
    pcm: bytes
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Confirm:
    """The pause was the end: what the early work held is heard now, and from here on it is live."""

    work: int


@dataclass(frozen=True)
class Discard:
    """The speaker went on: cancel the early work and forget all it held; this turn never happened."""

    work: int


@dataclass(frozen=True)
class Continue:
    """The turn that ended on a short pause was not over: its answer must not be remembered
    (forget it, if it already was). Its audio starts the next turn."""

    work: int


@dataclass(frozen=True)
class Interrupt:
    """Stop answering: cancel the running work, if any, and tell the outputs (Interrupted), which drop
    the reply audio they still hold."""

    turn: int
    at_ms: int
    work: int | None
    """The work still running, or None when only its audio was still playing."""


@dataclass(frozen=True)
class HearSoFar:
    """The person is still speaking: what was heard of the turn so far may be transcribed, to show."""

    turn: int
    pcm: bytes


@dataclass(frozen=True)
class JudgeEnd:
    """Ask the end-of-turn model whether the turn heard so far (its pause included) is complete, and
    tell judged(work, probability). Input is held from here until it is told."""

    work: int
    pcm: bytes


Decision = (
    UserSpeaking
    | UserStopped
    | StartEarly
    | StartTurn
    | Confirm
    | Discard
    | Continue
    | Interrupt
    | JudgeEnd
    | HearSoFar
)


@dataclass
class _Early:
    work: int
    end_ms: int
    """End of the last voiced frame before the pause: it is confirmed by an end at the same place."""
    transcript: str | None = None
    finished: bool = False
    asked: bool = False
    """The end-of-turn model was asked about this pause (JudgeEnd)."""
    probability: float | None = None
    """Its answer: how sure it is that the turn is complete."""


@dataclass(frozen=True)
class _QuickEnd:
    work: int
    ended_ms: int
    pcm: bytes
    """All the turn heard, to be heard again if the speaker goes on."""


class TurnTaking:
    """Decides, from one stream of input audio, when turns start, end, are dropped, and are interrupted."""

    def __init__(self, config: VadConfig, is_speech: Callable[[bytes], bool] | None = None) -> None:
        self._config = config
        self._smart = config.turn_end == "smart-turn"
        self._threshold = config.turn_threshold
        self._check_ms = config.turn_check_ms if self._smart else config.quick_end_ms
        """The silence at which a pause may end the turn early; 0: never."""
        self._endpointer = Endpointer(config, is_speech, hangover_ms=config.turn_wait_ms if self._smart else None)
        self._turn = 0
        self._works = 0
        self._early: _Early | None = None
        self._running: int | None = None
        """The live work (started, or started early and confirmed) until it finishes or is interrupted."""
        self._quick: _QuickEnd | None = None
        """The last turn, while it is the last, when it ended on a short pause."""
        self._carry = b""
        """Audio of a turn ended too soon, said again at the start of the one that continues it."""
        self._playing_until_ms = 0.0
        self._partial_at_ms = 0
        """Stream time of the turn's last HearSoFar (or of its start)."""
        self._held = bytearray()
        """Input audio not judged yet: it came while the quick end waited for the early transcript."""
        self._frame_bytes = 16 * config.frame_ms * 2

    @property
    def now_ms(self) -> int:
        return self._endpointer.now_ms

    @property
    def responding(self) -> bool:
        """Whether the assistant is answering: a turn's work runs, or its audio is still playing."""
        return self._running is not None or self.now_ms < self._playing_until_ms

    def engines_free(self, free: bool) -> None:
        """Whether the engines have no turn's work now: a pause then starts work after
        vad.speculate_idle_ms (nothing waits that it could delay), else after vad.speculate_ms."""
        config = self._config
        sooner = free and config.speculate_idle_ms > 0 and config.speculate_ms > 0
        self._endpointer.speculate_ms = config.speculate_idle_ms if sooner else config.speculate_ms

    @property
    def waiting(self) -> bool:
        """Whether input is held until the early transcript (and the model) say if the pause ends the turn."""
        early = self._early
        if early is None or not 0 < self._check_ms <= self._endpointer.silence_ms:
            return False
        if early.transcript is None:
            return not early.finished
        # The words are in: the model's answer matters only if they sound finished.
        return self._smart and early.probability is None and sounds_finished(early.transcript)

    def feed(self, pcm: bytes) -> list[Decision]:
        """Input audio (16 kHz, 16-bit mono, any length)."""
        self._held.extend(pcm)
        early = self._early
        if early is not None and self.waiting:
            if len(self._held) <= MAX_HELD_MS * 32:
                return []
            self._give_up_waiting(early)  # too long: judge the pause without what did not come
        return self._judge_held()

    def flush(self) -> list[Decision]:
        """End of input: a turn in progress ends now (what was held is judged first, without waiting)."""
        if self._early is not None:
            self._give_up_waiting(self._early)
        decisions = self._judge_held()
        for event in self._endpointer.flush():
            decisions += self._on_vad(event)
        return decisions

    def heard(self, work: int, transcript: str) -> list[Decision]:
        """What early work transcribed; it may be enough to end the turn on its pause."""
        if self._early is None or self._early.work != work:
            return []
        self._early.transcript = transcript
        return self._end_if_finished() + self._judge_held()

    def judged(self, work: int, probability: float) -> list[Decision]:
        """The end-of-turn model's answer to JudgeEnd: how sure it is that the turn is complete."""
        if self._early is None or self._early.work != work:
            return []
        self._early.probability = probability
        return self._end_if_finished() + self._judge_held()

    @staticmethod
    def _give_up_waiting(early: _Early) -> None:
        if early.transcript is None:
            early.transcript = ""
        if early.probability is None:
            early.probability = 0.0

    def _judge_held(self) -> list[Decision]:
        """Feed the held audio frame by frame, stopping where a decision waits for an early transcript."""
        decisions: list[Decision] = []
        size = self._frame_bytes
        while len(self._held) >= size and not self.waiting:
            frame = bytes(self._held[:size])
            del self._held[:size]
            for event in self._endpointer.feed(frame):
                decisions += self._on_vad(event)
            decisions += self._ask_model() + self._end_if_finished() + self._hear_so_far()
        return decisions  # less than a frame stays held until the next feed

    def reply_audio(self, samples: int, sample_rate: int) -> None:
        """Reply audio just went to the outputs: it plays after what was sent before, or from now."""
        start = max(self._playing_until_ms, float(self.now_ms))
        self._playing_until_ms = start + samples * 1000 / sample_rate

    def finished(self, work: int) -> list[Decision]:
        """Work has ended, whatever its outcome; what it emitted may still be playing. Early work that
        ends without a transcript (nothing heard, or it failed) stops the wait for one."""
        if self._running == work:
            self._running = None
        elif self._early is not None and self._early.work == work:
            self._early.finished = True
            return self._judge_held()
        return []

    def interrupt(self) -> list[Decision]:
        """Stop answering now (barge-in, or the user's explicit request); nothing if not answering."""
        if not self.responding:
            return []
        decision = Interrupt(self._turn, self.now_ms, self._running)
        self._running = None
        self._playing_until_ms = 0.0
        return [decision]

    def _on_vad(self, event: VadEvent) -> list[Decision]:
        if isinstance(event, SpeechStarted):
            decisions = [*self._continue_if_resumed(event), *self.interrupt()]
            self._turn += 1
            self._partial_at_ms = self.now_ms
            return [*decisions, UserSpeaking(self._turn, event.start_ms)]
        if isinstance(event, SpeechPaused):
            return self._start_early(event)
        if isinstance(event, SpeechResumed):
            return self._discard_early()
        return self._end_turn(event)

    def _hear_so_far(self) -> list[Decision]:
        every = self._config.partial_every_ms
        pcm = self._endpointer.heard_pcm()
        if every <= 0 or not pcm or self._endpointer.silence_ms or self.now_ms - self._partial_at_ms < every:
            return []
        self._partial_at_ms = self.now_ms
        return [HearSoFar(self._turn, self._carry + pcm)]

    def _ask_model(self) -> list[Decision]:
        early = self._early
        if not self._smart or early is None or early.asked or self._endpointer.silence_ms < self._check_ms:
            return []
        early.asked = True
        return [JudgeEnd(early.work, self._carry + self._endpointer.heard_pcm())]

    def _end_if_finished(self) -> list[Decision]:
        """End the turn on its pause, before the hangover, when it already sounds finished."""
        early = self._early
        if early is None or early.transcript is None or self._check_ms <= 0:
            return []
        if self._endpointer.silence_ms < self._check_ms:
            return []
        if self._smart:
            if early.probability is None or not turn_complete(early.probability, early.transcript, self._threshold):
                return []
        elif not sounds_finished(early.transcript):
            return []
        ended = self._endpointer.end_now()
        if ended is None:
            return []
        heard = self._carry + ended.pcm  # _end_turn hands the carry to this turn and clears it
        decisions = self._end_turn(ended)
        self._quick = _QuickEnd(early.work, ended.decided_ms, heard)
        return decisions

    def _continue_if_resumed(self, started: SpeechStarted) -> list[Decision]:
        """Speech soon after a turn ended on a short pause continues that turn: it was not over."""
        quick, self._quick = self._quick, None
        if quick is None or started.start_ms - quick.ended_ms > self._config.hangover_ms:
            return []
        self._carry = quick.pcm
        return [Continue(quick.work)]

    def _start_early(self, paused: SpeechPaused) -> list[Decision]:
        decisions = self._discard_early()
        self._works += 1
        self._early = _Early(self._works, paused.end_ms)
        pcm = self._carry + paused.pcm
        return [*decisions, StartEarly(self._works, self._turn, pcm, paused.start_ms, paused.end_ms)]

    def _discard_early(self) -> list[Decision]:
        early, self._early = self._early, None
        return [] if early is None else [Discard(early.work)]

    def _end_turn(self, ended: SpeechEnded) -> list[Decision]:
        decisions: list[Decision] = [UserStopped(self._turn, ended.start_ms, ended.end_ms, ended.truncated)]
        self._quick = None
        carry, self._carry = self._carry, b""
        early = self._early
        if early is not None and early.end_ms == ended.end_ms:
            self._early = None
            self._running = None if early.finished else early.work
            return [*decisions, Confirm(early.work)]
        decisions += self._discard_early()
        self._works += 1
        self._running = self._works
        return [*decisions, StartTurn(self._works, self._turn, carry + ended.pcm, ended.start_ms, ended.end_ms)]
