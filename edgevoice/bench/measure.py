"""What `edgevoice bench` measures, without sockets: true end of speech, per-clip records, their summary.

Every time here is the benchmark client's own time.monotonic(); the daemon's VAD is what is being
measured, so the end of speech is found in the audio itself, not taken from the daemon.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevoice.audio.pcm import SAMPLE_RATE, Samples
from edgevoice.bench.wer import normalise, word_error_rate
from edgevoice.conversation import copies_earlier
from edgevoice.protocol import (
    Busy,
    Error,
    ReplyText,
    ServerMessage,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnDone,
)
from edgevoice.server.turnlog import percentile

STAGES = ("vad_end", "transcript", "first_text", "first_audio")
WORK_STAGES = ("started", "stt_done", "first_token", "first_audio")
"""The daemon's side: when its work started after the true end of speech, then its engines' times from there."""
"""The stages timed per turn, each in ms after the true end of speech."""
ENERGY_FRAME_MS = 10
SPEECH_THRESHOLD_DB = -35.0
"""A 10 ms frame is speech when its RMS is within this many dB of the clip's loudest frame."""
AUDIBLE_GAP_MS = 100.0
"""A silence this long inside a reply, where its audio ran out, is heard as a stall (a client with
no jitter buffer hears shorter ones too; the network on loopback adds a few ms)."""


def true_end_of_speech(samples: Samples, threshold_db: float = SPEECH_THRESHOLD_DB, rate: int = SAMPLE_RATE) -> int:
    """The sample index just after the last 10 ms frame whose RMS is within threshold_db of the loudest; 0: silent."""
    step = rate * ENERGY_FRAME_MS // 1000
    count = len(samples) // step + (1 if len(samples) % step else 0)
    if count == 0:
        return 0
    padded = np.zeros(count * step, dtype=np.float64)
    padded[: len(samples)] = samples
    rms = np.sqrt(np.mean(padded.reshape(count, step) ** 2, axis=1))
    peak = float(rms.max())
    if peak <= 0.0:
        return 0
    loud = np.flatnonzero(rms >= peak * 10 ** (threshold_db / 20))
    return min(len(samples), (int(loud[-1]) + 1) * step)


@dataclass
class ServerTurn:
    """One turn as the daemon numbered it, stamped with when each of its events reached the client."""

    number: int
    vad_end_at: float | None = None
    transcript_at: float | None = None
    first_text_at: float | None = None
    first_audio_at: float | None = None
    transcript: str = ""
    reply: str = ""
    done: TurnDone | None = None
    """The turn_done message, with the daemon's own timings."""
    play_until: float = 0.0
    """When the reply audio received so far would have finished playing."""
    gaps_s: list[float] = field(default_factory=list)
    """Each time the reply's audio ran out before its next piece came: how long the listener heard nothing."""


@dataclass
class ClipRecord:
    """One clip played on one connection: what was sent and what came back."""

    client: int
    clip: str
    reference: str | None
    speech_end_at: float | None = None
    """When the frame holding the clip's last speech sample was sent."""
    server_turns: list[ServerTurn] = field(default_factory=list)
    play_until: float = 0.0
    """When the reply audio received so far would have finished playing, by the client's reckoning."""
    timed_out: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def answer(self) -> ServerTurn | None:
        """The daemon's turn that answers this clip: the last one it heard in it."""
        return self.server_turns[-1] if self.server_turns else None

    def finished(self, now: float) -> bool:
        """Heard, every turn done, and the reply played out: the next clip will not talk over it."""
        turns = self.server_turns
        return bool(turns) and all(t.done is not None for t in turns) and now >= self.play_until

    def stages_ms(self) -> dict[str, float | None]:
        answer = self.answer
        stamps = {
            "vad_end": answer.vad_end_at if answer else None,
            "transcript": answer.transcript_at if answer else None,
            "first_text": answer.first_text_at if answer else None,
            "first_audio": answer.first_audio_at if answer else None,
        }
        start = self.speech_end_at
        return {
            stage: None if stamp is None or start is None else round((stamp - start) * 1000.0, 1)
            for stage, stamp in stamps.items()
        }

    def work_ms(self) -> dict[str, float | None]:
        """When the daemon started work on the turn (ms after the true end of speech), then its engines' times."""
        answer = self.answer
        timings = answer.done.timings if answer and answer.done else {}
        vad_end = self.stages_ms()["vad_end"]
        speculated = timings.get("speculated")
        started = None if vad_end is None else vad_end + (speculated or 0.0)
        work = {"started": started}
        for stage in WORK_STAGES[1:]:
            work[stage] = timings.get(f"work_{stage}")
        return work

    def reply_gap_ms(self) -> float | None:
        """How long the answer's reply audio ran out between its pieces, in all; None without reply audio."""
        answer = self.answer
        if answer is None or answer.first_audio_at is None:
            return None
        return round(sum(answer.gaps_s) * 1000.0, 1)

    def audible_gaps(self) -> int:
        """The answer's gaps of AUDIBLE_GAP_MS or more."""
        answer = self.answer
        return 0 if answer is None else sum(gap * 1000.0 >= AUDIBLE_GAP_MS for gap in answer.gaps_s)

    @property
    def missing(self) -> bool:
        """No reply audio came back for this clip (within the timeout)."""
        return self.answer is None or self.answer.first_audio_at is None

    @property
    def wer(self) -> float | None:
        if self.reference is None or self.answer is None:
            return None
        return word_error_rate(self.reference, self.answer.transcript)

    def to_json(self) -> dict[str, Any]:
        answer = self.answer
        return {
            "client": self.client,
            "clip": self.clip,
            "reference": self.reference,
            "transcript": answer.transcript if answer else None,
            "reply": answer.reply if answer else None,
            "intent": answer.done.intent if answer and answer.done else None,
            "wer": self.wer,
            "missing": self.missing,
            "timed_out": self.timed_out,
            "server_turns": [t.number for t in self.server_turns],
            "ms_after_end_of_speech": self.stages_ms(),
            "server_timings": dict(answer.done.timings) if answer and answer.done else None,
            "work_ms": self.work_ms(),
            "reply_gap_ms": self.reply_gap_ms(),
            "audible_gaps": self.audible_gaps(),
            "errors": self.errors,
        }


class Tracker:
    """Files one connection's server messages under the clip being played when the daemon heard its speech."""

    def __init__(self) -> None:
        self.current: ClipRecord | None = None
        self._turns: dict[int, tuple[ClipRecord, ServerTurn]] = {}
        self.busy = 0

    def start_clip(self, record: ClipRecord | None) -> None:
        """Speech heard from now on belongs to record (None: to no clip)."""
        self.current = record

    def on_event(self, message: ServerMessage, now: float) -> None:
        if isinstance(message, Busy):
            self.busy += 1
            if self.current is not None:
                self.current.errors.append(f"busy: {message.message}")
            return
        if isinstance(message, Error):  # an error names no turn: it goes to the clip being played
            if self.current is not None:
                self.current.errors.append(f"{message.code}: {message.message}")
            return
        if isinstance(message, SpeechStarted) and self.current is not None and message.turn not in self._turns:
            turn = ServerTurn(message.turn)
            self.current.server_turns.append(turn)
            self._turns[message.turn] = (self.current, turn)
            return
        if not isinstance(message, SpeechStopped | Transcript | ReplyText | TurnDone):
            return
        found = self._turns.get(message.turn)
        if found is None:
            return
        turn = found[1]
        if isinstance(message, SpeechStopped):
            turn.vad_end_at = now
        elif isinstance(message, Transcript):
            turn.transcript_at = now
            turn.transcript = message.text
        elif isinstance(message, ReplyText):
            turn.first_text_at = turn.first_text_at or now
            turn.reply += message.delta
        else:
            turn.done = message
            turn.reply = message.reply

    def on_audio(self, number: int, samples: int, rate: int, now: float) -> None:
        found = self._turns.get(number)
        if found is None or rate <= 0:
            return
        record, turn = found
        if turn.first_audio_at is None:
            turn.first_audio_at = now
        elif now > turn.play_until:
            turn.gaps_s.append(now - turn.play_until)
        turn.play_until = max(turn.play_until, now) + samples / rate
        record.play_until = max(record.play_until, now) + samples / rate


def stage_summary(values: Iterable[float | None]) -> dict[str, float | int | None]:
    present = sorted(v for v in values if v is not None)
    if not present:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    return {
        "n": len(present),
        "p50": round(percentile(present, 0.50), 1),
        "p95": round(percentile(present, 0.95), 1),
        "max": round(present[-1], 1),
    }


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float | None:
    """Word errors over all (reference, transcript) pairs divided by all reference words; None: no pairs."""
    errors = 0.0
    words = 0
    for reference, transcript in pairs:
        count = len(normalise(reference))
        errors += word_error_rate(reference, transcript) * max(count, 1)
        words += max(count, 1)
    return round(errors / words, 4) if words else None


def copied_replies(records: Sequence[ClipRecord]) -> int:
    """Replies that copy an earlier reply, to other words, of the same client's conversation, by the
    rule of what a conversation keeps (conversation.copies_earlier); records in the order each
    client played them."""
    copies = 0
    earlier: dict[int, list[tuple[str, str]]] = {}
    for record in records:
        answer = record.answer
        if answer is None or answer.done is None or not answer.reply:
            continue
        exchanges = earlier.setdefault(record.client, [])
        copies += copies_earlier(exchanges, answer.transcript, answer.reply)
        exchanges.append((answer.transcript, answer.reply))
    return copies


def summarise(records: Sequence[ClipRecord], clients: int) -> dict[str, Any]:
    stages = {stage: stage_summary(r.stages_ms()[stage] for r in records) for stage in STAGES}
    pairs = [(r.reference, r.answer.transcript) for r in records if r.reference is not None and r.answer]
    pairs += [(r.reference, "") for r in records if r.reference is not None and not r.answer]
    first_audio = stages["first_audio"]
    return {
        "turns": len(records),
        "missing": sum(r.missing for r in records),
        "stages_ms": stages,
        "work_ms": {stage: stage_summary(r.work_ms()[stage] for r in records) for stage in WORK_STAGES},
        "end_of_speech_to_first_audio_ms": {"p50": first_audio["p50"], "p95": first_audio["p95"]},
        "prompt_tokens": {
            name: stage_summary(r.answer.done.timings.get(name) for r in records if r.answer and r.answer.done)
            for name in ("prompt_tokens", "evaluated_prompt_tokens")
        },
        "reply_gap_ms": stage_summary(r.reply_gap_ms() for r in records),
        "replies_with_audible_gaps": sum(r.audible_gaps() > 0 for r in records),
        "copied_replies": copied_replies(records),
        "wer": corpus_wer(pairs),
        "per_client": [
            {
                "client": c,
                "turns": sum(r.client == c for r in records),
                "missing": sum(r.client == c and r.missing for r in records),
            }
            for c in range(clients)
        ],
    }
