"""What `edgevoice client` prints: the box's events and the client's own facts (`client_*` lines),
as JSON lines on stdout for --json, or as lines for a person (the talk on stdout, status on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgevoice.protocol import Busy, Error, Interrupted, ReplyText, ServerMessage, Timer, Transcript, TurnDone, dumps

Observer = Callable[[dict[str, Any]], None]


class ClientOutput:
    """Server events and the client's own facts: JSON lines, or lines for a person."""

    def __init__(self, json_lines: bool, observer: Observer | None) -> None:
        self.json_lines = json_lines
        self.observer = observer
        self._reply_open = False  # an "edgevoice: ..." line is being written delta by delta

    def line(self, message: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer(message)
        if self.json_lines:
            print(dumps(message), flush=True)

    def status(self, text: str) -> None:
        if not self.json_lines:
            self._close_reply()
            print(f"edgevoice: {text}", file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        self._close_reply()
        self.line({"type": "client_error", "message": text})
        print(f"edgevoice: {text}", file=sys.stderr, flush=True)

    def _close_reply(self) -> None:
        if self._reply_open:
            print(flush=True)
            self._reply_open = False

    def event(self, message: ServerMessage) -> None:
        self.line(message.to_json())
        if self.json_lines:
            return
        if isinstance(message, Transcript) and message.text:
            self._close_reply()
            print(f"you: {message.text}", flush=True)
        elif isinstance(message, ReplyText):
            if not self._reply_open:
                print("edgevoice: ", end="")
                self._reply_open = True
            print(message.delta, end="", flush=True)
        elif isinstance(message, TurnDone):
            self._close_reply()
        elif isinstance(message, Interrupted):
            self._close_reply()
            print("(interrupted)", flush=True)
        elif isinstance(message, Timer):
            self._close_reply()
            print(f"timer: {timer_line(message)}", flush=True)
        elif isinstance(message, Busy):
            self.status(f"the box is busy: {message.message}")
        elif isinstance(message, Error):
            print(f"edgevoice: error from the box: {message.message}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def timer_line(timer: Timer) -> str:
    """A timer event for a person: "pasta 8:00 started", "pasta rings: Your ... is done."."""
    name = timer.name or f"{_clock(timer.duration_s)} timer"
    if timer.event == "finished":
        return f"{name} rings: {timer.text}"
    if timer.event == "cancelled":
        return f"{name} {timer.reason or 'cancelled'}"
    if timer.event == "started":
        return f"{name} started, {_clock(timer.remaining_s)} to go"
    return f"{name} {timer.state}, {_clock(timer.remaining_s)} left"


@dataclass
class ClientCounts:
    """What the client counts over a whole run, across connections; the last line, `client_stats`, reports it."""

    frames_sent: int = 0
    send_failed: int = 0
    """Frames taken for sending when the connection died: lost, so counted as dropped."""
    bad_frames: int = 0
    """Reply audio frames that did not parse."""
    turns: int = 0
    reply_audio_s: float = 0.0

    def stats_line(
        self,
        *,
        queue_dropped: int,
        playback_dropped_samples: int,
        late_frames_ignored: int,
        connections: int,
        conversation: str | None,
    ) -> dict[str, Any]:
        """The `client_stats` line; queue_dropped: outgoing frames dropped before they were sent."""
        return {
            "type": "client_stats",
            "frames_sent": self.frames_sent,
            "frames_dropped": queue_dropped + self.send_failed,
            "playback_dropped_samples": playback_dropped_samples,
            "late_frames_ignored": late_frames_ignored,
            "bad_frames": self.bad_frames,
            "connections": connections,
            "reconnects": max(0, connections - 1),
            "turns": self.turns,
            "reply_audio_s": round(self.reply_audio_s, 2),
            "conversation": conversation,
        }
