"""The asyncio driver of a TimerBook: it keeps the book in a file and wakes when a timer is due.

Whoever changes the book calls changed(): the book is saved and the service looks again at when
it must next wake. A timer that ended while the daemon was down rings on the first pass of run().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from edgevoice.skills.files import read_json, write_json
from edgevoice.skills.timers import TimerBook, TimerEvent

_log = logging.getLogger(__name__)
MAX_SLEEP_S = 30.0
"""The longest the service sleeps without looking: the wall clock may jump (NTP setting it at boot)
while asyncio sleeps on the monotonic one."""

OnFinished = Callable[[str, TimerEvent], None]
"""(conversation id, event): a timer rang (kind finished), or stopped ringing unanswered (kind
cancelled, reason expired)."""


class TimerService:
    def __init__(
        self, book: TimerBook, path: Path, on_finished: OnFinished, clock: Callable[[], float] = time.time
    ) -> None:
        self.book = book
        self.path = path
        self.on_finished = on_finished
        self.clock = clock
        self._wake: asyncio.Event | None = None

    def load(self) -> None:
        """Read the timers saved by an earlier run (a missing or damaged file: none)."""
        data = read_json(self.path)
        if data is None:
            return
        try:
            self.book = TimerBook.from_json(data, self.book.ring_every_s, self.book.ring_for_s)
        except ValueError as err:
            _log.warning("ignoring timers file %s: %s", self.path, err)

    def changed(self) -> None:
        """The book was changed: save it, and let run() see the new deadlines."""
        write_json(self.path, self.book.to_json())
        if self._wake is not None:
            self._wake.set()

    def tick(self) -> list[TimerEvent]:
        """Hand what is due now to on_finished, save when anything happened, and return it."""
        events = self.book.due(self.clock())
        if events:
            write_json(self.path, self.book.to_json())
        for event in events:
            try:
                self.on_finished(event.timer.conversation_id, event)
            except Exception:
                _log.exception("a timer's listener failed on %s", event.kind.value)
        return events

    async def run(self) -> None:
        """Ring timers as they end, until cancelled."""
        self._wake = asyncio.Event()
        try:
            while True:
                self.tick()
                deadline = self.book.next_deadline()
                wait = MAX_SLEEP_S if deadline is None else min(MAX_SLEEP_S, max(0.0, deadline - self.clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                self._wake.clear()
        finally:
            self._wake = None
