"""The audio buffers the box and the client share: one bounded queue that drops the oldest item, one
playback buffer that interrupts drop at once, one pacer and one source that sends speech in real time.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Hashable
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from edgevoice.audio.pcm import SAMPLE_RATE, Pcm16, Samples, read_audio, to_pcm16

FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
"""Outgoing audio frames: 20 ms at 16 kHz, 16-bit mono."""
REMEMBERED_INTERRUPTS = 64
T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded queue for live audio: when full, the oldest item goes (stale audio is worth least)."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("a queue holds at least one item")
        self.max_items = max_items
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._waiter = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        if len(self._items) >= self.max_items:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._waiter.set()

    async def get(self) -> T:
        while not self._items:
            self._waiter.clear()
            await self._waiter.wait()
        return self._items.popleft()


class InterruptedTurns:
    """The turns cut off by an interrupt, remembered (a bounded few) so their late frames can be ignored."""

    def __init__(self) -> None:
        self._turns: collections.OrderedDict[Hashable, None] = collections.OrderedDict()

    def add(self, turn: Hashable) -> None:
        self._turns[turn] = None
        while len(self._turns) > REMEMBERED_INTERRUPTS:
            self._turns.popitem(last=False)

    def __contains__(self, turn: Hashable) -> bool:
        return turn in self._turns


class PlaybackBuffer:
    """Reply audio waiting for the speaker, at one sample rate.

    Bounded: when a push would take it past max_seconds, the oldest audio is dropped and counted in
    dropped_samples. interrupt() empties it at once and makes it ignore that turn's late frames.
    The event loop pushes and PortAudio's thread pulls, hence the lock.
    """

    def __init__(self, max_seconds: float, sample_rate: int) -> None:
        if max_seconds <= 0 or sample_rate <= 0:
            raise ValueError("a playback buffer needs a positive length and sample rate")
        self.sample_rate = sample_rate
        self.max_samples = max(1, int(max_seconds * sample_rate))
        self.dropped_samples = 0
        """Oldest audio dropped because the buffer was full."""
        self.cleared_samples = 0
        """Unplayed audio thrown away by interrupts."""
        self.late_frames = 0
        """Frames of an interrupted turn that arrived after the interrupt, ignored."""
        self._lock = threading.Lock()
        self._chunks: collections.deque[Pcm16] = collections.deque()
        self._head = 0  # samples of _chunks[0] already played
        self._buffered = 0
        self._interrupted = InterruptedTurns()

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    def push(self, turn: Hashable, pcm: bytes | Pcm16) -> bool:
        """Queue one frame of turn's audio; False (and nothing queued) for a late frame of an interrupted turn."""
        chunk = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
        with self._lock:
            if turn in self._interrupted:
                self.late_frames += 1
                return False
            if len(chunk) >= self.max_samples:  # one frame larger than the whole buffer: keep its end
                self._drop_all()
                self.dropped_samples += len(chunk) - self.max_samples
                chunk = chunk[len(chunk) - self.max_samples :]
            excess = self._buffered + len(chunk) - self.max_samples
            while excess > 0:
                head = self._chunks[0]
                left = len(head) - self._head
                if left <= excess:
                    self._chunks.popleft()
                    self._head = 0
                    taken = left
                else:
                    self._head += excess
                    taken = excess
                self._buffered -= taken
                self.dropped_samples += taken
                excess -= taken
            if len(chunk):
                self._chunks.append(chunk)
                self._buffered += len(chunk)
        return True

    def interrupt(self, turn: Hashable) -> int:
        """The turn was cut off: drop everything unplayed now and ignore that turn's later frames."""
        with self._lock:
            self._interrupted.add(turn)
            cleared = self._buffered
            self.cleared_samples += cleared
            self._drop_all()
        return cleared

    def _drop_all(self) -> None:
        self._chunks.clear()
        self._head = 0
        self._buffered = 0

    def fill(self, out: Pcm16) -> int:
        """Copy queued audio into out (PortAudio's callback buffer), silence after it; the samples copied."""
        flat = out.reshape(-1)
        wanted = len(flat)
        written = 0
        with self._lock:
            while written < wanted and self._chunks:
                head = self._chunks[0]
                take = min(len(head) - self._head, wanted - written)
                flat[written : written + take] = head[self._head : self._head + take]
                written += take
                self._head += take
                self._buffered -= take
                if self._head == len(head):
                    self._chunks.popleft()
                    self._head = 0
        flat[written:] = 0
        return written

    def pull(self, count: int) -> Pcm16:
        out = np.zeros(count, dtype=np.int16)
        self.fill(out)
        return out


class Pacer:
    """When each fixed-length frame is due, counted from one start time, so sleeps that overshoot do
    not add up to drift. A stall longer than max_lag_s (a suspended laptop) starts the count again
    rather than sending the backlog in one burst."""

    def __init__(self, frame_s: float, start: float, max_lag_s: float = 1.0) -> None:
        self.frame_s = frame_s
        self.max_lag_s = max_lag_s
        self.resyncs = 0
        self._start = start
        self._frames = 0

    def wait_s(self, now: float) -> float:
        """How long to wait before the next frame is due (0 when it is already late)."""
        due = self._start + (self._frames + 1) * self.frame_s
        if now - due > self.max_lag_s:
            self._start = now - self.frame_s
            self._frames = 0
            self.resyncs += 1
            due = now
        return max(0.0, due - now)

    def sent(self) -> None:
        self._frames += 1


class PacedSource:
    """Speech pushed in (a file, or a test's clips one at a time) sent in real time, silence around it.

    finish() says no more speech will come: ended is set once what was pushed has gone out.
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES, sample_rate: int = SAMPLE_RATE) -> None:
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self.ended = asyncio.Event()
        self._pending = bytearray()
        self._finished = False
        self._silence = bytes(2 * frame_samples)

    @classmethod
    def from_file(cls, path: Path) -> PacedSource:
        source = cls()
        source.push(read_audio(path))
        source.finish()
        return source

    @property
    def dropped_frames(self) -> int:
        return 0

    def push(self, samples: Samples) -> None:
        if self._finished:
            raise ValueError("no speech can be pushed after finish()")
        self._pending += to_pcm16(samples).tobytes()

    def finish(self) -> None:
        self._finished = True

    async def frames(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        pacer = Pacer(self.frame_samples / self.sample_rate, loop.time())
        size = 2 * self.frame_samples
        while True:
            await asyncio.sleep(pacer.wait_s(loop.time()))
            pacer.sent()
            if self._pending:
                frame = bytes(self._pending[:size]).ljust(size, b"\0")
                del self._pending[:size]
            else:
                if self._finished:
                    self.ended.set()
                frame = self._silence
            yield frame
