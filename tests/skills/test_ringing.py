"""Where timer events go and how a session announces, as pure logic: recording sessions, no voice, no socket.

The chime and the spoken line reaching a real client are in tests/server/test_skill_turns.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest

from edgevoice.announcements import ANNOUNCEMENT_TURNS, Announcements
from edgevoice.audio.pcm import Pcm16
from edgevoice.events import Event, Interrupted, ReplyAudio, ReplyAudioEnd, ReplyAudioStart
from edgevoice.protocol import Timer
from edgevoice.skills.ringing import NOTES, Ringer, chime
from edgevoice.skills.timers import TimerBook

T0 = 1_750_000_000.0


@dataclass
class Heard:
    """A session as the Ringer sees it, keeping what it was told."""

    told: list[Timer] = field(default_factory=list)
    announced: list[int] = field(default_factory=list)
    hushed: int = 0

    def tell(self, message: Timer) -> None:
        self.told.append(message)

    def announce(self, pcm: Pcm16, sample_rate: int) -> None:
        self.announced.append(len(pcm))

    def hush(self) -> None:
        self.hushed += 1


def test_the_chime_is_two_quiet_notes_then_a_pause() -> None:
    rate = 22_050
    pcm = chime(rate)
    notes = sum(int(rate * seconds) for _hz, seconds in NOTES)
    assert len(pcm) > notes
    assert pcm.dtype == np.int16
    assert np.abs(pcm[:notes]).max() > 5000
    assert np.abs(pcm[:notes]).max() < 0.4 * 32767
    assert not pcm[notes:].any(), "silence before the line"
    assert abs(int(pcm[0])) < 200, "faded in: no click"


def rung_book() -> tuple[TimerBook, str]:
    book = TimerBook(ring_every_s=10, ring_for_s=60)
    timer = book.start(T0, "kitchen", 5, "pasta").timer
    return book, timer.id


async def test_events_go_to_the_conversation_that_set_the_timer_and_the_one_that_changed_it() -> None:
    book, _ = rung_book()
    fed: list[Timer] = []
    ringer = Ringer(lambda: book, lambda: None, fed.append)
    kitchen, hall, other = Heard(), Heard(), Heard()
    ringer.join("kitchen", kitchen)
    ringer.join("hall", hall)
    ringer.join("other", other)
    started = book.start(T0, "kitchen", 60)
    ringer.publish(started, said_in="kitchen")
    cancelled = book.cancel(started.timer.id, T0 + 1)
    ringer.publish(cancelled, said_in="hall")
    assert [m.event for m in kitchen.told] == ["started", "cancelled"]
    assert [m.event for m in hall.told] == ["cancelled"]
    assert other.told == []
    assert [m.event for m in fed] == ["started", "cancelled"]
    assert kitchen.hushed == 0, "a timer cancelled before it rang silences nothing"


async def test_a_ring_nobody_heard_is_rung_when_its_conversation_comes_back() -> None:
    book, timer_id = rung_book()
    ringer = Ringer(lambda: book, lambda: None)
    [rang] = book.due(T0 + 6)
    ringer.publish(rang)
    elsewhere = Heard()
    ringer.join("hall", elsewhere)
    assert elsewhere.told == []
    back = Heard()
    ringer.join("kitchen", back)
    assert [(m.event, m.id, m.ring) for m in back.told] == [("finished", timer_id, 1)]
    again = Heard()
    ringer.join("kitchen", again)
    assert again.told == [], "told once"


async def test_a_ring_nobody_heard_rings_on_the_speaker_when_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    book, timer_id = rung_book()
    ringer = Ringer(lambda: book, lambda: None)
    rung: list[tuple[str, list[object]]] = []
    monkeypatch.setattr(ringer, "_ring", lambda event, sessions: rung.append((event.timer.id, sessions)))
    [rang] = book.due(T0 + 6)
    ringer.publish(rang)
    assert rung == [(timer_id, [])], "nobody to ring on yet"
    speaker = Heard()
    ringer.set_speaker(speaker)
    assert rung[1:] == [(timer_id, [speaker])]


async def test_a_ring_stopped_before_its_conversation_comes_back_is_not_rung() -> None:
    book, _ = rung_book()
    ringer = Ringer(lambda: book, lambda: None)
    [rang] = book.due(T0 + 6)
    ringer.publish(rang)
    for stopped in book.stop_ringing(T0 + 7):
        ringer.publish(stopped)
    back = Heard()
    ringer.join("kitchen", back)
    assert back.told == []


async def test_stopping_a_ring_hushes_its_conversation_and_the_speaker() -> None:
    book, _ = rung_book()
    ringer = Ringer(lambda: book, lambda: None)
    kitchen, speaker, hall = Heard(), Heard(), Heard()
    ringer.join("kitchen", kitchen)
    ringer.join("hall", hall)
    ringer.set_speaker(speaker)
    for event in book.due(T0 + 6):
        ringer.publish(event)
    assert [m.event for m in speaker.told] == [], "the speaker rings, it is not told"
    for stopped in book.stop_ringing(T0 + 7):
        ringer.publish(stopped, said_in="hall")
    assert (kitchen.hushed, speaker.hushed, hall.hushed) == (1, 1, 0)
    assert [m.reason for m in hall.told] == ["stopped"]


def audio_turns(events: list[Event]) -> list[int]:
    return [e.turn for e in events if isinstance(e, ReplyAudioStart)]


async def test_announcements_are_sent_whole_between_turns_under_new_numbers() -> None:
    events: list[Event] = []
    turn_over = asyncio.Event()
    announcements = Announcements(events.append, turn_over.wait)
    rate = 8000
    announcements.say(np.ones(rate // 4, dtype=np.int16), rate)
    announcements.say(np.ones(rate // 4, dtype=np.int16), rate)
    await asyncio.sleep(0.01)
    assert events == [], "a turn is answering: the ring waits"
    turn_over.set()
    await asyncio.sleep(0.01)
    first, second = audio_turns(events)
    assert first >= ANNOUNCEMENT_TURNS
    assert second == first + 1
    kinds = [type(e) for e in events]
    assert kinds == [ReplyAudioStart, *[ReplyAudio] * 3, ReplyAudioEnd] * 2
    assert sum(len(e.pcm) for e in events if isinstance(e, ReplyAudio)) == 2 * 2 * (rate // 4)
    # Both are still playing (a quarter second each, one after the other): hush interrupts both.
    announcements.hush(at_ms=1234)
    assert [(e.turn, e.at_ms) for e in events if isinstance(e, Interrupted)] == [(first, 1234), (second, 1234)]
    announcements.hush(at_ms=1300)
    assert len([e for e in events if isinstance(e, Interrupted)]) == 2, "nothing left to interrupt"
    await announcements.close()


async def test_hush_drops_what_waits_and_leaves_what_has_played() -> None:
    events: list[Event] = []
    turn_over = asyncio.Event()
    announcements = Announcements(events.append, turn_over.wait)
    announcements.say(np.ones(80, dtype=np.int16), 8000)  # 10 ms
    turn_over.set()
    await asyncio.sleep(0.05)
    turn_over.clear()
    announcements.say(np.ones(80, dtype=np.int16), 8000)
    announcements.hush(at_ms=5)
    turn_over.set()
    await asyncio.sleep(0.01)
    assert len(audio_turns(events)) == 1, "the one waiting was dropped"
    assert not [e for e in events if isinstance(e, Interrupted)], "the one sent had played"
    await announcements.close()
