"""TimerService: timers kept in a file across restarts, and rung on time by the running service."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from edgevoice.skills.timer_service import TimerService
from edgevoice.skills.timers import TimerBook, TimerEvent, TimerEventKind
from tests.skills.conftest import FakeClock


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, TimerEvent]] = []
        self.arrived = asyncio.Event()

    def __call__(self, conversation_id: str, event: TimerEvent) -> None:
        self.events.append((conversation_id, event))
        self.arrived.set()


def test_changes_are_saved_and_read_back(tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "state" / "timers.json"  # the directory is made on the first write
    service = TimerService(TimerBook(), path, Heard(), fake_clock)
    service.book.start(fake_clock.now, "kitchen", 600, "pasta")
    service.changed()
    assert json.loads(path.read_text())["timers"][0]["name"] == "pasta"
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(path.parent.iterdir()) == [path]  # write_atomic left no temporary file behind

    again = TimerService(TimerBook(), path, Heard(), fake_clock)
    again.load()
    assert again.book.timers == service.book.timers


def test_a_timer_that_ended_while_the_daemon_was_down_rings_at_start(tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "timers.json"
    before = TimerService(TimerBook(), path, Heard(), fake_clock)
    before.book.start(fake_clock.now, "kitchen", 60, "tea")
    before.changed()

    fake_clock.advance(3600)  # down for an hour
    heard = Heard()
    after = TimerService(TimerBook(), path, heard, fake_clock)
    after.load()
    after.tick()
    [(conversation, event)] = heard.events
    assert conversation == "kitchen"
    assert event.kind is TimerEventKind.FINISHED
    assert event.text == "Your one minute tea timer finished fifty-nine minutes ago."
    assert json.loads(path.read_text())["timers"][0]["state"] == "ringing"  # saved as it changed


def test_a_damaged_file_means_no_timers(tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "timers.json"
    for text in ("{not json", '{"version": 99}', "\xff"):
        path.write_text(text)
        service = TimerService(TimerBook(), path, Heard(), fake_clock)
        service.load()
        assert service.book.timers == []


def test_a_failing_listener_does_not_stop_the_others(tmp_path: Path, fake_clock: FakeClock) -> None:
    heard: list[str] = []

    def listener(conversation_id: str, event: TimerEvent) -> None:
        heard.append(event.timer.name)
        if event.timer.name == "first":
            raise RuntimeError("a socket went away")

    service = TimerService(TimerBook(), tmp_path / "timers.json", listener, fake_clock)
    service.book.start(fake_clock.now, "kitchen", 10, "first")
    service.book.start(fake_clock.now, "kitchen", 10, "second")
    fake_clock.advance(10)
    assert len(service.tick()) == 2
    assert heard == ["first", "second"]


async def test_run_rings_on_time_and_wakes_for_a_new_timer(tmp_path: Path) -> None:
    heard = Heard()
    service = TimerService(TimerBook(ring_every_s=1.0, ring_for_s=0.0), tmp_path / "timers.json", heard)
    runner = asyncio.create_task(service.run())
    try:
        await asyncio.sleep(0.05)  # the service is asleep with nothing to do (MAX_SLEEP_S)
        set_at = time.time()
        service.book.start(set_at, "kitchen", 0.3, "toast")
        service.changed()  # wakes it: without this it would sleep on for half a minute
        await asyncio.wait_for(heard.arrived.wait(), 5)
        rang_after = time.time() - set_at
        assert 0.25 <= rang_after < 2.0, rang_after
        [(conversation, event)] = heard.events
        assert (conversation, event.kind, event.timer.name) == ("kitchen", TimerEventKind.FINISHED, "toast")
        heard.arrived.clear()
        # ring_for_s 0: it stops ringing at once, and the listener hears that too.
        await asyncio.wait_for(heard.arrived.wait(), 5)
        assert heard.events[-1][1].reason == "expired"
        assert service.book.timers == []
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
