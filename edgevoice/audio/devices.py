"""The box's own microphone and speaker through sounddevice (PortAudio).

PortAudio calls back on its own thread; audio crosses to the event loop through bounded
queues that drop the oldest audio when full, and count what they dropped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Any

import numpy as np

from edgevoice.audio.pcm import SAMPLE_RATE
from edgevoice.config import Config
from edgevoice.engines.loaded import Engines
from edgevoice.events import Event, ReplyAudio, TurnDone
from edgevoice.session import VoiceSession

_log = logging.getLogger(__name__)
MIC_QUEUE_FRAMES = 100
SPEAKER_BUFFER_SECONDS = 30


def _sounddevice() -> Any:
    """Import sounddevice late: it needs the PortAudio library, which a box without audio may lack."""
    import sounddevice  # noqa: PLC0415

    return sounddevice


def has_duplex_device() -> bool:
    try:
        sd = _sounddevice()
        sd.query_devices(kind="input")
        sd.query_devices(kind="output")
    except Exception:  # PortAudio library missing (OSError) or no such device (PortAudioError)
        return False
    return True


class SpeakerListener:
    """Plays reply audio as it arrives; barge-in empties the buffer at once."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
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
        elif isinstance(event, TurnDone):
            print(f"you: {event.transcript}\nedgevoice: {event.reply}", flush=True)

    def drop_audio(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._buffered = 0

    def playing(self) -> bool:
        return self._buffered > 0

    def fill(self, out: np.ndarray) -> None:
        """PortAudio's callback: copy queued audio into out, silence for the rest."""
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


async def talk(config: Config) -> int:
    """A conversation on the default input and output devices until interrupted."""
    sd = _sounddevice()
    engines = await asyncio.to_thread(Engines.load, config)
    speaker = SpeakerListener(engines.tts.sample_rate)
    session = VoiceSession(engines, speaker)
    loop = asyncio.get_running_loop()
    frames: asyncio.Queue[bytes] = asyncio.Queue(maxsize=MIC_QUEUE_FRAMES)
    dropped = 0

    def enqueue(pcm: bytes) -> None:
        nonlocal dropped
        if frames.full():
            frames.get_nowait()
            dropped += 1
        frames.put_nowait(pcm)

    def on_input(data: Any, _frames: int, _time: Any, status: Any) -> None:
        if status:
            _log.debug("input status: %s", status)
        loop.call_soon_threadsafe(enqueue, bytes(data))

    def on_output(out: np.ndarray, _frames: int, _time: Any, _status: Any) -> None:
        speaker.fill(out)

    blocksize = SAMPLE_RATE * config.vad.frame_ms // 1000
    with (
        sd.RawInputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=blocksize, callback=on_input),
        sd.OutputStream(samplerate=speaker.sample_rate, channels=1, dtype="int16", callback=on_output),
    ):
        print("edgevoice: listening (Ctrl-C to stop)", flush=True)
        try:
            while True:
                session.feed(await frames.get())
        finally:
            await session.close()
            engines.close()
            if dropped:
                _log.warning("dropped %d microphone frames the pipeline could not keep up with", dropped)
    return 0
