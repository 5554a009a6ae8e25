"""A voice session: the asyncio driver of turn-taking's decisions (edgevoice.turn_taking).

feed() is called with input audio as it arrives; turn-taking says what to do about it, and that
is done within the same call: turns start as tasks, work started early has what it says held
back until it is confirmed (then released) or discarded (then forgotten), and a turn the user
talks over is cancelled, with Interrupted telling every output to drop the reply audio it holds.

Outputs only listen: each gets every event through emit(), and nothing is asked of them.

With skills, a transcript a skill answers gets the skill's answer (edgevoice.turn), taken back if
the speaker goes on after the turn ended on a short pause (Continue); "stop" also
silences what the session announces on its own: a timer ringing (edgevoice.announcements), told to
it by the box's Ringer through tell(), announce() and hush().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Protocol

from edgevoice.announcements import Announcements
from edgevoice.audio.pcm import Pcm16, from_pcm16
from edgevoice.audio.smart_turn import SmartTurn
from edgevoice.conversation import Conversation
from edgevoice.engines.engines import Engines
from edgevoice.engines.schedule import Claim, Rank
from edgevoice.engines.worker import EngineBusy
from edgevoice.errors import EdgevoiceError
from edgevoice.events import (
    Busy,
    Error,
    Event,
    Interrupted,
    PartialTranscript,
    ReplyAudio,
    SpeechStarted,
    SpeechStopped,
    Timer,
    Transcript,
    TurnDone,
    TurnTimings,
)
from edgevoice.skills.box import ConversationSkills
from edgevoice.turn import TurnResult, run_turn
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

_log = logging.getLogger(__name__)


class Listener(Protocol):
    """Where a session's events go: a socket, a speaker, a file. emit() must not block.

    Interrupted means: drop the reply audio received but not yet played.
    """

    def emit(self, event: Event) -> None: ...


class _Work:
    """One turn's task; while it was started early and is not confirmed, what it says is held."""

    def __init__(self, work: int, start: StartEarly | StartTurn, timings: TurnTimings) -> None:
        self.id = work
        self.start = start
        self.timings = timings
        early = isinstance(start, StartEarly)
        self.held: list[Event] | None = [] if early else None
        self.claim = Claim(timings.speech_end, Rank.SPECULATIVE if early else Rank.CONFIRMED)
        """Its standing with the engines, shared by all its jobs: confirmed with the turn."""
        self.counts = asyncio.Event()
        """Set once the turn is known to count: at once for a live start, on Confirm for an early one."""
        if not early:
            self.counts.set()
        self.task: asyncio.Task[None] | None = None
        self.result = TurnResult()
        self.discarded = False
        self.continued = False
        """Ended on a short pause, but the speaker went on: the next turn says it whole."""
        self.remembered = False


class _Arrivals:
    """When each stretch of input audio arrived: a position in the stream (ms) back to the clock."""

    KEPT = 4096
    """About a minute and a half of 20 ms frames: longer than any turn (max_utterance_ms) and its hold."""

    def __init__(self) -> None:
        self._ends: deque[tuple[float, float]] = deque(maxlen=self.KEPT)
        self._fed_ms = 0.0

    def fed(self, pcm: bytes, now: float) -> None:
        self._fed_ms += len(pcm) / 32.0  # 16 kHz, 16-bit mono
        self._ends.append((self._fed_ms, now))

    def at(self, position_ms: int) -> float | None:
        """When the audio up to position_ms had arrived; None when it is older than what is kept."""
        for end_ms, arrived in self._ends:
            if end_ms >= position_ms:
                return arrived
        return None


class VoiceSession:
    def __init__(
        self,
        engines: Engines,
        listener: Listener,
        conversation: Conversation | None = None,
        *,
        audio_plays: bool = True,
        skills: ConversationSkills | None = None,
    ) -> None:
        """audio_plays=False where reply audio is collected, not played (a recording): nobody hears it,
        so nobody talks over it. skills: answered before the model (None: the model answers all)."""
        config = engines.config
        self._engines = engines
        self._listener = listener
        self._skills = skills
        self._announcements = Announcements(listener.emit, self._quiet)
        self._audio_plays = audio_plays
        self.conversation = conversation or Conversation(config.llm.system_prompt, config.llm.history_turns)
        self._turns = TurnTaking(config.vad)
        self._early: _Work | None = None
        self._live: _Work | None = None
        """The turn answering now (or last), started live or started early and confirmed."""
        self._judging: set[asyncio.Task[None]] = set()
        self._partial: asyncio.Task[None] | None = None
        self._speaking: int | None = None
        """The turn the person is speaking now, if any."""
        self._smart_turn: SmartTurn | None = None
        self._judged = asyncio.Event()
        """Clear while turn-taking holds input until the early transcript is in."""
        self._judged.set()
        self._arrivals = _Arrivals()

    @property
    def responding(self) -> bool:
        return self._turns.responding

    def feed(self, pcm: bytes) -> None:
        """Take input audio (16 kHz, 16-bit mono, any length). Never blocks."""
        self._arrivals.fed(pcm, time.monotonic())
        self._turns.engines_free(not self._engines.serving_turns)
        self._carry_out(self._turns.feed(pcm))

    async def finish(self) -> None:
        """End of input: a turn in progress ends now; wait for the last turn to complete."""
        self._carry_out(self._turns.flush())
        await self.wait_turn()

    async def wait_turn(self) -> None:
        """Wait until the input fed so far is judged (no early transcript awaited) and its turn is done."""
        await self._judged.wait()
        if self._live is not None and self._live.task is not None:
            await asyncio.shield(self._live.task)

    def interrupt(self) -> None:
        """Stop talking now (a client's explicit request), and stop this conversation's timers ringing."""
        self._carry_out(self._turns.interrupt())
        self.hush()
        if self._skills is not None:
            self._skills.stop_ringing()

    def tell(self, message: Timer) -> None:
        """A timer event for this session's listener, outside any turn."""
        self._listener.emit(message)

    def announce(self, pcm: Pcm16, sample_rate: int) -> None:
        """Say something on the box's own account (a timer's chime and line) once no turn is answering."""
        self._announcements.say(pcm, sample_rate)

    def hush(self) -> None:
        """Stop announcing at once."""
        self._announcements.hush(self._turns.now_ms)

    async def _quiet(self) -> None:
        while (live := self._live) is not None and live.task is not None and not live.task.done():
            await asyncio.wait([live.task])

    async def close(self) -> None:
        await self._announcements.close()
        self._stop_partial()
        for task in list(self._judging):
            task.cancel()
        await asyncio.gather(*self._judging, return_exceptions=True)
        if self._early is not None:
            self._discard(self._early)
            if self._early.task is not None:
                await asyncio.gather(self._early.task, return_exceptions=True)
            self._early = None
        if self._live is not None and self._live.task is not None and not self._live.task.done():
            self._live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._live.task

    def _carry_out(self, decisions: list[Decision]) -> None:
        if self._turns.waiting:
            self._judged.clear()
        else:
            self._judged.set()
        for decision in decisions:
            if isinstance(decision, UserSpeaking):
                self._speaking = decision.turn
                self._emit(SpeechStarted(decision.turn, decision.start_ms))
            elif isinstance(decision, UserStopped):
                self._speaking = None
                self._stop_partial()
                self._emit(SpeechStopped(decision.turn, decision.start_ms, decision.end_ms, decision.truncated))
            elif isinstance(decision, HearSoFar):
                self._hear_so_far(decision)
            elif isinstance(decision, StartEarly):
                self._stop_partial()  # the turn's own transcription goes first
                timings = TurnTimings(time.monotonic())
                timings.speculated = timings.speech_end
                self._early = self._start(decision, timings)
            elif isinstance(decision, StartTurn):
                self._live = self._start(decision, TurnTimings(time.monotonic()))
            elif isinstance(decision, Confirm):
                self._confirm(decision)
            elif isinstance(decision, Discard):
                if self._early is not None and self._early.id == decision.work:
                    self._discard(self._early)
                    self._early = None
            elif isinstance(decision, Continue):
                self._continue(decision)
            elif isinstance(decision, JudgeEnd):
                self._judge_end(decision)
            else:
                self._interrupt(decision)

    def _hear_so_far(self, heard: HearSoFar) -> None:
        """Transcribe the turn so far to show it, only when speech-to-text has nothing else to do."""
        if (self._partial is not None and not self._partial.done()) or not self._engines.stt_idle:
            return
        self._partial = asyncio.get_running_loop().create_task(self._partial_transcript(heard), name="partial")

    async def _partial_transcript(self, heard: HearSoFar) -> None:
        try:
            claim = Claim(time.monotonic(), Rank.BACKGROUND)
            text = (await self._engines.transcribe(from_pcm16(heard.pcm), claim)).strip()
        except EdgevoiceError as err:
            _log.debug("no partial transcript: %s", err)
            return
        if text and self._speaking == heard.turn:
            self._emit(PartialTranscript(heard.turn, text))
            # The model reads the words so far while the person speaks on: their turn pays for the rest.
            self._engines.prepare(self.conversation.history_messages(), self.conversation.key, heard=text)

    def _stop_partial(self) -> None:
        if self._partial is not None:
            self._partial.cancel()
            self._partial = None

    def _judge_end(self, judge: JudgeEnd) -> None:
        task = asyncio.get_running_loop().create_task(self._ask_end_model(judge), name="end-of-turn")
        self._judging.add(task)
        task.add_done_callback(self._judging.discard)

    async def _ask_end_model(self, judge: JudgeEnd) -> None:
        """smart-turn on the turn so far, off the event loop (tens of ms of CPU); a failure counts as "not sure"."""
        try:
            probability = await asyncio.to_thread(self._end_model().probability, from_pcm16(judge.pcm))
        except Exception:  # onnxruntime failing on one pause must not stop the conversation
            _log.exception("the end-of-turn model failed; the pause waits for the hangover")
            probability = 0.0
        self._carry_out(self._turns.judged(judge.work, probability))

    def _end_model(self) -> SmartTurn:
        if self._smart_turn is None:
            self._smart_turn = SmartTurn()
        return self._smart_turn

    def _start(self, start: StartEarly | StartTurn, timings: TurnTimings) -> _Work:
        timings.voice_end = self._arrivals.at(start.end_ms)
        work = _Work(start.work, start, timings)
        kind = "early" if work.held is not None else "live"
        work.task = asyncio.get_running_loop().create_task(self._run(work), name=f"turn-{start.turn}-{kind}")
        return work

    def _confirm(self, confirm: Confirm) -> None:
        early = self._early
        if early is None or early.id != confirm.work:
            return
        self._early, self._live = None, early
        early.counts.set()
        early.claim.rank = Rank.CONFIRMED
        # The pause was the end: what the early turn has done so far is heard from now.
        early.timings.speech_end = time.monotonic()
        held, early.held = early.held or [], None
        for event in held:
            self._emit(event)

    def _discard(self, work: _Work) -> None:
        work.discarded = True
        work.held = None
        if work.task is not None:
            work.task.cancel()

    def _continue(self, decision: Continue) -> None:
        """The early answer stops, is not remembered, and what its skill changed is taken back: the next
        turn, the whole sentence, answers it anew.

        The answer is cancelled here (an Interrupt may not follow: the turn may not count as answering
        yet). A skill acts in the same step as it resumes from counts(), so by now it has acted
        (result.undo says what it did) or, cancelled where it waits, it never will.
        """
        work = self._live
        if work is None or work.id != decision.work:
            return
        work.continued = True
        if work.task is not None and not work.task.done():
            work.task.cancel()
        if work.remembered and self.conversation.history:
            self.conversation.history.pop()  # its answer was complete, but to half a sentence
        undo, work.result.undo = work.result.undo, None
        if undo is not None and self._skills is not None:
            self._skills.undo(undo)

    def _interrupt(self, decision: Interrupt) -> None:
        work = self._live
        if work is not None and work.id == decision.work and work.task is not None:
            work.task.cancel()
        self._emit(Interrupted(decision.turn, decision.at_ms))

    def _emit(self, event: Event) -> None:
        if isinstance(event, ReplyAudio) and self._audio_plays:
            self._turns.reply_audio(len(event.pcm) // 2, event.sample_rate)
        self._listener.emit(event)

    def _emit_for(self, work: _Work, event: Event) -> None:
        if work.discarded:
            return
        if isinstance(event, Transcript) and work is self._early:
            # Heard before the end was decided: it may say the turn is over already (Confirm).
            self._carry_out(self._turns.heard(work.id, event.text))
            if work.discarded:
                return  # the audio held until now went on to more speech
        if work.held is not None:
            work.held.append(event)
        else:
            self._emit(event)

    def _admit(self, work: _Work) -> None:
        """Raise EngineBusy when the turn, were it confirmed, would wait longer than server.turn_wait_s:
        rather than answer late, the client hears it now (a turn started early says it when confirmed)."""
        bound = self._engines.config.server.turn_wait_s
        wait = self._engines.expected_wait_s(_confirmed(work.claim))
        if wait > bound:
            _log.info("turn %d not started: it would wait %.1f s for the engines", work.start.turn, wait)
            raise EngineBusy(f"the box is busy answering other rooms: about {wait:.0f} s to wait")

    async def _run(self, work: _Work) -> None:
        start, timings, result = work.start, work.timings, work.result
        interrupted = False
        try:
            self._admit(work)
            await run_turn(
                self._engines,
                self.conversation,
                turn=start.turn,
                pcm=start.pcm,
                timings=timings,
                emit=lambda event: self._emit_for(work, event),
                result=result,
                skills=self._skills,
                counts=work.counts.wait,
                claim=work.claim,
            )
        except asyncio.CancelledError:
            interrupted = True
            timings.interrupted = time.monotonic()
        except EngineBusy as err:
            self._emit_for(work, Busy(str(err), round(self._engines.expected_wait_s(_confirmed(work.claim)), 1)))
        except EdgevoiceError as err:
            _log.error("turn %d failed: %s", start.turn, err)
            self._emit_for(work, Error(str(err), "turn_failed"))
        try:
            if work.discarded:
                return  # the speaker went on: this turn never happened
            if result.stop:
                self.hush()
            reply = result.reply.strip()
            remember = bool(result.transcript) and not work.continued and not result.stop
            if remember:
                self.conversation.remember(result.transcript, reply)
                work.remembered = True
            done = TurnDone(
                start.turn, result.transcript, reply, timings, start.start_ms, start.end_ms, interrupted, result.intent
            )
            self._emit_for(work, done)
            if remember:
                self._engines.prepare(self.conversation.history_messages(), self.conversation.key)
        finally:
            self._carry_out(self._turns.finished(work.id))


def _confirmed(claim: Claim) -> Claim:
    """The claim as it would stand once its turn is confirmed."""
    return Claim(claim.since, Rank.CONFIRMED, claim.first_words_out)
