"""The box's own microphone and speaker as a transport: a voice session on PortAudio through sounddevice.

PortAudio calls back on its own threads; audio crosses to the event loop through bounded
queues that drop the oldest audio when full, and count what they dropped. What the speaker
plays is also handed to an EchoCanceller (WebRTC's AEC3), which takes the reply's echo out of
the microphone's frames, and to an EchoGate, which silences frames that only carry the echo while
the canceller converges (or always, with [vad] echo_canceller off), so the assistant neither
answers nor interrupts itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgevoice.announcements import ANNOUNCEMENT_TURNS
from edgevoice.audio.aec import EchoCanceller
from edgevoice.audio.buffers import DropOldestQueue, PlaybackBuffer
from edgevoice.audio.echo_gate import EchoGate
from edgevoice.audio.echo_path import EchoPath
from edgevoice.audio.pcm import SAMPLE_RATE
from edgevoice.audio.portaudio import check_device, load_sounddevice
from edgevoice.config import Config
from edgevoice.conversation import Conversation
from edgevoice.engines.engines import Engines
from edgevoice.errors import AudioError
from edgevoice.events import Event, Interrupted, ReplyAudio, Timer, TurnDone
from edgevoice.session import VoiceSession
from edgevoice.skills.box import BoxSkills, ConversationSkills

_log = logging.getLogger(__name__)
MIC_QUEUE_FRAMES = 100
SPEAKER_BUFFER_SECONDS = 30
TALK_CONVERSATION = "mic"
"""The conversation `edgevoice talk` sets its timers in: the box's own, as the daemon's --mic."""
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
    """Plays reply audio as it arrives; Interrupted empties the buffer at once. Every event also goes to on_event."""

    def __init__(self, sample_rate: int, on_event: Callable[[Event], None] | None = None) -> None:
        self.sample_rate = sample_rate
        self._on_event = on_event
        self.buffer = PlaybackBuffer(SPEAKER_BUFFER_SECONDS, sample_rate)

    @property
    def dropped_samples(self) -> int:
        return self.buffer.dropped_samples

    def emit(self, event: Event) -> None:
        if isinstance(event, ReplyAudio):
            self.buffer.push(event.turn, event.pcm)
        elif isinstance(event, Interrupted):
            self.buffer.interrupt(event.turn)
        if self._on_event is not None:
            self._on_event(event)

    def fill(self, out: np.ndarray) -> None:
        """PortAudio's callback: copy queued audio into out (frames x 1), silence for the rest."""
        self.buffer.fill(out)


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
    skills: ConversationSkills | None = None,
) -> None:
    """A voice session on the default input and output devices until cancelled.

    ready is set once both streams are open; every session event also goes to on_event (on the
    event loop). echo_gate, if given, is the gate used (a caller may read its counters); its
    methods must not be called while this runs. With skills, every timer of the box rings on the
    speaker too.
    """
    sd = load_sounddevice()
    speaker = SpeakerListener(engines.tts.sample_rate, on_event)
    session = VoiceSession(engines, speaker, conversation, skills=skills)
    if skills is not None:
        skills.box.ringer.join(skills.conversation_id, session)
        skills.box.ringer.set_speaker(session)
    echo = EchoPath(EchoCanceller() if engines.config.vad.echo_canceller else None, echo_gate or EchoGate())
    loop = asyncio.get_running_loop()
    frames: DropOldestQueue[tuple[bytes, float, bool]] = DropOldestQueue(MIC_QUEUE_FRAMES)

    def on_input(data: Any, _frames: int, timing: Any, status: Any) -> None:
        # Stamped with when the frame's first sample met the mic, on the clock the speaker's
        # audio is stamped with below, so the canceller can line the echo up with its cause.
        captured_at = time.monotonic() - _latency(timing.currentTime, timing.inputBufferAdcTime)
        loop.call_soon_threadsafe(frames.put, (bytes(data), captured_at, bool(status.input_overflow)))

    def on_output(out: np.ndarray, _frames: int, timing: Any, status: Any) -> None:
        speaker.fill(out)
        plays_at = time.monotonic() + _latency(timing.outputBufferDacTime, timing.currentTime)
        echo.speaker(out[:, 0], speaker.sample_rate, plays_at, ran_dry=bool(status.output_underflow))

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
            dropped = 0
            while True:
                frame, captured_at, overflowed = await frames.get()
                # Frames lost before this one, on the device or in the queue: the mic's stream broke.
                gap, dropped = overflowed or frames.dropped != dropped, frames.dropped
                session.feed(echo.mic(frame, captured_at, gap=gap))
    finally:
        if skills is not None:
            skills.box.ringer.set_speaker(None)
            skills.box.ringer.leave(skills.conversation_id, session)
        await session.close()
        echo.log_summary(frames.dropped)


def _print_turn(event: Event) -> None:
    if isinstance(event, TurnDone):
        print(f"you: {event.transcript}\nedgevoice: {event.reply}", flush=True)
    elif isinstance(event, Interrupted) and event.turn < ANNOUNCEMENT_TURNS:
        print("edgevoice: (interrupted)", flush=True)
    elif isinstance(event, Timer) and event.event == "finished":
        print(f"edgevoice: {event.text}", flush=True)


async def talk(config: Config) -> int:
    """A conversation on the default input and output devices until interrupted, printed as it goes;
    the skills answer first, and timers ring on the speaker."""
    engines = await asyncio.to_thread(Engines.load, config)
    skills = await BoxSkills.open(config, lambda: engines)
    skills.start()
    ready = asyncio.Event()
    mic = asyncio.create_task(
        run_mic(engines, on_event=_print_turn, ready=ready, skills=skills.for_conversation(TALK_CONVERSATION)),
        name="mic",
    )
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
        await skills.close()
        engines.close()
    return 0
