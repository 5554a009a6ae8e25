"""The client's audio ends: what goes out (microphone, or speech paced in real time) and what comes
back (speaker, or a WAV file), with the bounded buffers between them and the event loop.

PlaybackBuffer, DropOldestQueue and Pacer are plain classes with no I/O, tested without devices.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Hashable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from edgevoice.audio import portaudio
from edgevoice.audio.pcm import (
    SAMPLE_RATE,
    Pcm16,
    Samples,
    StreamResampler,
    read_audio,
    to_pcm16,
    write_wav,
)
from edgevoice.errors import AudioError

_log = logging.getLogger(__name__)
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
"""Outgoing audio frames: 20 ms at 16 kHz, 16-bit mono."""
MIC_QUEUE_FRAMES = 50
WAV_MAX_SECONDS = 3600.0
"""--out keeps at most an hour of replies."""
_REMEMBERED_INTERRUPTS = 64
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


class _InterruptedTurns:
    """The turns cut off by an interrupt, remembered (a bounded few) so their late frames can be ignored."""

    def __init__(self) -> None:
        self._turns: collections.OrderedDict[Hashable, None] = collections.OrderedDict()

    def add(self, turn: Hashable) -> None:
        self._turns[turn] = None
        while len(self._turns) > _REMEMBERED_INTERRUPTS:
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
        self._interrupted = _InterruptedTurns()

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    @property
    def buffered_s(self) -> float:
        return self._buffered / self.sample_rate

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

    def clear(self) -> None:
        with self._lock:
            self.cleared_samples += self._buffered
            self._drop_all()

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


class AudioSource(Protocol):
    """16 kHz mono int16 audio going to the box, in FRAME_MS frames, paced as a microphone would."""

    ended: asyncio.Event
    """Set when a finite source (a file) has nothing more to say; it goes on yielding silence."""

    def frames(self) -> AsyncIterator[bytes]: ...

    @property
    def dropped_frames(self) -> int: ...


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

    @property
    def pending_s(self) -> float:
        return len(self._pending) / 2 / self.sample_rate

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


def check_device(kind: str) -> None:
    """AudioError naming the problem when there is no default input or output device, and what to use instead."""
    try:
        portaudio.check_device(kind)
    except AudioError as err:
        hint = "speak from a file with --wav FILE" if kind == "input" else "write replies to a file with --out FILE.wav"
        raise AudioError(f"{err}; {hint}") from None


class MicSource:
    """The default microphone through sounddevice; PortAudio's thread hands frames over a bounded queue."""

    def __init__(self, queue_frames: int = MIC_QUEUE_FRAMES) -> None:
        self.ended = asyncio.Event()  # a microphone never runs out
        self._queue: DropOldestQueue[bytes] = DropOldestQueue(queue_frames)

    @property
    def dropped_frames(self) -> int:
        return self._queue.dropped

    async def frames(self) -> AsyncIterator[bytes]:
        sd = portaudio.load_sounddevice()
        loop = asyncio.get_running_loop()

        def on_input(data: Any, _frames: int, _time: Any, status: Any) -> None:
            if status:
                _log.debug("input status: %s", status)
            with contextlib.suppress(RuntimeError):  # the loop closed under a last callback
                loop.call_soon_threadsafe(self._queue.put, bytes(data))

        stream = sd.RawInputStream(
            samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=FRAME_SAMPLES, callback=on_input
        )
        with stream:
            while True:
                yield await self._queue.get()


TurnKey = tuple[int, int]
"""(connection number, turn number): turn numbers start again at 1 on every connection."""


class AudioSink(Protocol):
    """Where reply audio goes."""

    def audio(self, turn: TurnKey, sample_rate: int, pcm: bytes) -> None: ...

    def interrupt(self, turn: TurnKey) -> None: ...

    async def finish(self, drain: bool) -> str | None:
        """Play out or write what is left; a line for the user, if there is one to say."""
        ...

    @property
    def dropped_samples(self) -> int:
        """Reply audio dropped because the playback buffer was full."""
        ...

    @property
    def late_frames(self) -> int:
        """Frames of interrupted turns that came after the interrupt, ignored."""
        ...


class SpeakerSink:
    """The default speaker, opened at the first reply's sample rate; audio waits in a PlaybackBuffer."""

    def __init__(self, buffer_s: float) -> None:
        self.buffer_s = buffer_s
        self.buffer: PlaybackBuffer | None = None
        self._stream: Any = None
        self._early_interrupts: list[TurnKey] = []  # before the stream opened
        self._resamplers: dict[int, StreamResampler] = {}

    @property
    def dropped_samples(self) -> int:
        return 0 if self.buffer is None else self.buffer.dropped_samples

    @property
    def late_frames(self) -> int:
        return 0 if self.buffer is None else self.buffer.late_frames

    def _open(self, sample_rate: int) -> PlaybackBuffer:
        buffer = PlaybackBuffer(self.buffer_s, sample_rate)
        for turn in self._early_interrupts:
            buffer.interrupt(turn)

        def on_output(out: Pcm16, _frames: int, _time: Any, _status: Any) -> None:
            buffer.fill(out)

        sd = portaudio.load_sounddevice()
        try:
            stream = sd.OutputStream(samplerate=sample_rate, channels=1, dtype="int16", callback=on_output)
            stream.start()
        except Exception as err:  # PortAudioError: the device went away or refuses the rate
            raise AudioError(f"cannot play audio at {sample_rate} Hz on the speaker ({err})") from None
        self.buffer, self._stream = buffer, stream
        return buffer

    def audio(self, turn: TurnKey, sample_rate: int, pcm: bytes) -> None:
        buffer = self.buffer or self._open(sample_rate)
        if sample_rate != buffer.sample_rate:  # another voice: play it at the rate the stream runs at
            converter = self._resamplers.setdefault(sample_rate, StreamResampler(sample_rate, buffer.sample_rate))
            pcm = converter.feed(pcm)
        buffer.push(turn, pcm)

    def interrupt(self, turn: TurnKey) -> None:
        if self.buffer is None:
            self._early_interrupts = [*self._early_interrupts[-_REMEMBERED_INTERRUPTS:], turn]
        else:
            self.buffer.interrupt(turn)

    async def finish(self, drain: bool) -> str | None:
        if self.buffer is not None and drain:
            deadline = asyncio.get_running_loop().time() + self.buffer_s + 1.0
            # PortAudio's thread empties the buffer; polling it is simpler than an event across threads.
            while self.buffer.buffered_samples and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        return None


class WavSink:
    """Reply audio of every turn, in order, written to one WAV file at the end (at the first reply's rate).

    At most max_seconds are kept: a microphone session left running for days must not fill memory;
    what comes after is counted as dropped.
    """

    def __init__(self, path: Path, max_seconds: float = WAV_MAX_SECONDS) -> None:
        self.path = path
        self.sample_rate: int | None = None
        self.late_frames = 0
        self.max_seconds = max_seconds
        self._chunks: list[Pcm16] = []
        self._samples = 0
        self._dropped = 0
        self._interrupted = _InterruptedTurns()
        self._resamplers: dict[int, StreamResampler] = {}

    @property
    def dropped_samples(self) -> int:
        return self._dropped

    @property
    def samples(self) -> int:
        return self._samples

    def audio(self, turn: TurnKey, sample_rate: int, pcm: bytes) -> None:
        if turn in self._interrupted:
            self.late_frames += 1
            return
        if self.sample_rate is None:
            self.sample_rate = sample_rate
        if sample_rate != self.sample_rate:
            converter = self._resamplers.setdefault(sample_rate, StreamResampler(sample_rate, self.sample_rate))
            pcm = converter.feed(pcm)
        chunk = np.frombuffer(pcm, dtype="<i2")
        if self._samples + len(chunk) > self.max_seconds * self.sample_rate:
            self._dropped += len(chunk)
            return
        self._chunks.append(chunk)
        self._samples += len(chunk)

    def interrupt(self, turn: TurnKey) -> None:
        self._interrupted.add(turn)

    async def finish(self, drain: bool) -> str | None:
        rate = self.sample_rate or SAMPLE_RATE
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        await asyncio.to_thread(write_wav, self.path, pcm, rate)
        return f"reply audio written to {self.path} ({len(pcm) / rate:.1f} s)"
