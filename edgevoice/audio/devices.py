"""The box's own microphone and speaker through sounddevice (PortAudio).

PortAudio calls back on its own threads; audio crosses to the event loop through bounded
queues that drop the oldest audio when full, and count what they dropped. What the speaker
plays is also handed to an EchoGate, which silences the microphone's frames that only carry
the reply's echo, so the assistant neither answers nor interrupts itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgevoice.audio.echo_gate import EchoGate
from edgevoice.audio.pcm import SAMPLE_RATE
from edgevoice.audio.portaudio import check_device, load_sounddevice
from edgevoice.config import Config
from edgevoice.engines.loaded import Engines
from edgevoice.errors import AudioError
from edgevoice.events import Event, Interrupted, ReplyAudio, TurnDone
from edgevoice.pipeline import Conversation
from edgevoice.session import VoiceSession

_log = logging.getLogger(__name__)
MIC_QUEUE_FRAMES = 100
SPEAKER_BUFFER_SECONDS = 30
_MAX_DEVICE_LATENCY_S = 1.0
"""A latency PortAudio reports beyond this is taken for a host API that reports nonsense."""


def has_duplex_device() -> bool:
    try:
        check_device("input")
        check_device("output")
    except AudioError:
        return False
    return True


class SpeakerListener:
    """Plays reply audio as it arrives; barge-in empties the buffer at once. Every event also goes to on_event."""

    def __init__(self, sample_rate: int, on_event: Callable[[Event], None] | None = None) -> None:
        self.sample_rate = sample_rate
        self._on_event = on_event
        self._lock = threading.Lock()
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._buffered = 0
        self._limit = sample_rate * SPEAKER_BUFFER_SECONDS
        self.dropped_samples = 0

    def emit(self, event: Event) -> None:
        if isinstance(event, ReplyAudio):
            chunk = np.frombuffer(event.pcm, dtype="<i2")
            with self._lock:
                self._chunks.append(chunk)
                self._buffered += len(chunk)
                while self._buffered > self._limit:
                    self.dropped_samples += len(self._chunks[0])
                    self._buffered -= len(self._chunks.popleft())
        if self._on_event is not None:
            self._on_event(event)

    def drop_audio(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._buffered = 0

    def playing(self) -> bool:
        return self._buffered > 0

    def fill(self, out: np.ndarray) -> None:
        """PortAudio's callback: copy queued audio into out (frames x 1), silence for the rest."""
        wanted = len(out)
        written = 0
        with self._lock:
            while written < wanted and self._chunks:
                chunk = self._chunks[0]
                take = min(len(chunk), wanted - written)
                out[written : written + take, 0] = chunk[:take]
                written += take
                self._buffered -= take
                if take == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[take:]
        out[written:, 0] = 0


def _latency(later: float, earlier: float) -> float:
    """The gap between two of PortAudio's stream times, or 0 where the host API reports none that makes sense."""
    gap = later - earlier
    return gap if 0.0 <= gap <= _MAX_DEVICE_LATENCY_S else 0.0


async def run_mic(
    engines: Engines,
    conversation: Conversation | None = None,
    *,
    on_event: Callable[[Event], None] | None = None,
    ready: asyncio.Event | None = None,
    echo_gate: EchoGate | None = None,
) -> None:
    """A voice session on the default input and output devices until cancelled.

    ready is set once both streams are open; every session event also goes to on_event (on the
    event loop). echo_gate, if given, is the gate used (a caller may read its counters); its
    methods must not be called while this runs.
    """
    sd = load_sounddevice()
    speaker = SpeakerListener(engines.tts.sample_rate, on_event)
    session = VoiceSession(engines, speaker, conversation)
    gate = echo_gate or EchoGate()
    # The gate is sans-I/O and sees the speaker's audio from PortAudio's output thread and the
    # mic's on the event loop: one lock, held for a few microseconds of numpy each time.
    gate_lock = threading.Lock()
    loop = asyncio.get_running_loop()
    frames: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(maxsize=MIC_QUEUE_FRAMES)
    dropped = 0

    def enqueue(frame: tuple[bytes, float]) -> None:
        nonlocal dropped
        if frames.full():
            frames.get_nowait()
            dropped += 1
        frames.put_nowait(frame)

    def on_input(data: Any, _frames: int, timing: Any, status: Any) -> None:
        if status:
            _log.debug("input status: %s", status)
        # Stamped with when the frame's first sample met the mic, on the clock the speaker's
        # audio is stamped with below, so the gate can line the echo up with its cause.
        captured_at = time.monotonic() - _latency(timing.currentTime, timing.inputBufferAdcTime)
        loop.call_soon_threadsafe(enqueue, (bytes(data), captured_at))

    def on_output(out: np.ndarray, _frames: int, timing: Any, _status: Any) -> None:
        speaker.fill(out)
        plays_at = time.monotonic() + _latency(timing.outputBufferDacTime, timing.currentTime)
        with gate_lock:
            gate.reference(out[:, 0], speaker.sample_rate, plays_at)

    blocksize = SAMPLE_RATE * engines.config.vad.frame_ms // 1000
    try:
        with (
            sd.RawInputStream(
                samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=blocksize, callback=on_input
            ),
            sd.OutputStream(samplerate=speaker.sample_rate, channels=1, dtype="int16", callback=on_output),
        ):
            if ready is not None:
                ready.set()
            while True:
                frame, captured_at = await frames.get()
                with gate_lock:
                    frame = gate.process(frame, captured_at)
                session.feed(frame)
    finally:
        await session.close()
        if dropped:
            _log.warning("dropped %d microphone frames the pipeline could not keep up with", dropped)
        _log.info(
            "echo gate: silenced %d of %d microphone frames heard while the speaker played; "
            "coupling %.3f; the loudest silenced frame was %.2f of its threshold",
            gate.gated_frames,
            gate.frames_while_speaking,
            gate.coupling,
            gate.closest_call,
        )


def _print_turn(event: Event) -> None:
    if isinstance(event, TurnDone):
        print(f"you: {event.transcript}\nedgevoice: {event.reply}", flush=True)
    elif isinstance(event, Interrupted):
        print("edgevoice: (interrupted)", flush=True)


async def talk(config: Config) -> int:
    """A conversation on the default input and output devices until interrupted, printed as it goes."""
    engines = await asyncio.to_thread(Engines.load, config)
    ready = asyncio.Event()
    mic = asyncio.create_task(run_mic(engines, on_event=_print_turn, ready=ready), name="mic")
    opened = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait((mic, opened), return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            print("edgevoice: listening (Ctrl-C to stop)", flush=True)
        await mic
    finally:
        opened.cancel()
        mic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await mic
        engines.close()
    return 0
