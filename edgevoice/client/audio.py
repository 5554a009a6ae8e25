"""The client's audio ends: what goes out (microphone, or speech paced in real time) and what comes
back (speaker, or a WAV file), with the bounded buffers between them and the event loop.

PlaybackBuffer, DropOldestQueue and Pacer are plain classes with no I/O, tested without devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgevoice.audio import portaudio
from edgevoice.audio.buffers import (
    FRAME_SAMPLES,
    REMEMBERED_INTERRUPTS,
    DropOldestQueue,
    InterruptedTurns,
    PlaybackBuffer,
)
from edgevoice.audio.pcm import (
    SAMPLE_RATE,
    Pcm16,
    StreamResampler,
    write_wav,
)
from edgevoice.errors import AudioError

_log = logging.getLogger(__name__)
MIC_QUEUE_FRAMES = 50
WAV_MAX_SECONDS = 3600.0
"""--out keeps at most an hour of replies."""


class AudioSource(Protocol):
    """16 kHz mono int16 audio going to the box, in FRAME_MS frames, paced as a microphone would."""

    ended: asyncio.Event
    """Set when a finite source (a file) has nothing more to say; it goes on yielding silence."""

    def frames(self) -> AsyncIterator[bytes]: ...

    @property
    def dropped_frames(self) -> int: ...


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
            self._early_interrupts = [*self._early_interrupts[-REMEMBERED_INTERRUPTS:], turn]
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
        self._interrupted = InterruptedTurns()
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
