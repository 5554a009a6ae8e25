"""Echo cancellation: WebRTC's AEC3 subtracts what the box's speaker plays from its microphone, sans-I/O.

AEC3 (pywebrtc-audio) needs the speaker's signal beside each microphone frame, sample for
sample, with the echo arriving in the microphone no earlier than its cause arrives in the
reference; it finds the rest of the delay itself. The speaker plays at the voice's own rate,
in callbacks of its own size, on its own thread. FarEnd lines the two up on the clock both
are stamped with (the speaker's PCM with when its first sample plays, a mic frame with when
its first sample was captured): it resamples the speaker's stream to 16 kHz and lays it on a
timeline, from which each mic frame takes the stretch that played from lead_ms after it began.
Taking the reference a little ahead of the mic keeps the echo late in it even when the stamps
are off by a few milliseconds; AEC3 cannot cancel an echo that comes before its reference.

While AEC3 converges (the first fraction of a second of the speaker) the echo still comes
through, and Silero would take it for speech: the EchoGate stands behind the canceller until
then. Not after: at a person's level its threshold chops their words between syllables, while
AEC3 alone leaves of the echo mostly digital silence.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from edgevoice.audio.pcm import SAMPLE_RATE, to_pcm16

_TIMELINE_S = 4
"""Speaker audio kept: more than any output latency, so a mic frame always finds what played with it."""


@dataclass(frozen=True)
class AecSettings:
    lead_ms: int = 20
    """The reference given with a mic frame starts this much after the frame: the echo lands this much
    (plus the room's delay) later in the mic than in the reference, never earlier. Speaker audio is
    stamped when handed to the device, ahead of playing by its output latency, so it is there."""
    restart_ms: int = 200
    """A chunk stamped this much away from where its stream has got to starts the stream anew (the
    output restarted after an underrun, the mic after an overrun); nearer ones follow on."""
    noise_suppression: bool = False
    """WebRTC's noise suppressor after the canceller; off: Silero and whisper hear better without it."""
    converge_s: float = 1.0
    """Speaker audio the canceller must have heard before it is trusted alone: AEC3 cut the echo of the
    PulseAudio room by 10 dB within its first 250 ms every time; until then the echo gate stands behind it."""


_SETTLE_S = 1.5
"""After a stream (re)starts, its clock jumps to where its stamps put it, this long: at first to an
earlier stamp at once, then to the least lateness over the last _WINDOW_S (a device's first callbacks
come in a burst, stamped earlier than the stream then runs)."""
_WINDOW_S = 1.0
"""The span over which the least lateness of a stream's stamps is taken as where it really is."""
_SLEW = 0.001
"""After settling, a stream's clock moves at most this many seconds per second of audio (0.1 %, ten
times what sound cards drift): a sample in 62 ms at 16 kHz, which AEC3 follows without a leak."""
_STEP_S = 0.02
"""Where the stamps say a settled stream is this far from its clock, it moved: it starts anew."""
_DEAD_BAND_S = 0.005
"""Nor does it move while it is within this of where the stamps put it. The stamps of two streams of
one device wander against each other by a few ms (PulseAudio's null sink: 0.35 ms a second for 9 s),
where the samples themselves keep in step: the clocks follow the stamps only past this."""


class StreamClock:
    """When each chunk of a continuous stream met the air, from the stamps its callbacks were given.

    A callback learns its chunk's time from the clock when it runs, and runs late by varying amounts
    (scheduling, chunks delivered in bursts), never early: the chunks themselves follow each other
    without gaps. So the chunks are laid end to end, and the stream's place on the clock is the least
    lateness of its stamps. For the first _SETTLE_S after it (re)starts, an earlier stamp moves it at
    once. After that it slews: towards the least lateness over the last _WINDOW_S, by at most _SLEW
    and not for less than _DEAD_BAND_S, so it follows a device clock that drifts against ours without
    ever jumping. The canceller pairs the mic's and the speaker's streams by these clocks, and a jump
    of a few samples in either (as the stamps' jitter gave before) is a change in the echo's path
    that AEC3 leaks through while it adapts. A restart is taken as it is stamped and settles anew: a
    chunk after a gap the device reported, a stamp restart_s away from where the stream has got to,
    or a settled stream whose stamps moved _STEP_S (every one of a window late, or one early).
    """

    def __init__(self, restart_s: float) -> None:
        self._restart_s = restart_s
        self._base: float | None = None
        """Where the stream would be from its (re)start on, by its length alone."""
        self._offset = 0.0
        """Where it is placed, against _base."""
        self._since = 0.0
        """Seconds of the stream since it (re)started."""
        self._least: collections.deque[tuple[float, float]] = collections.deque()
        """(_since, lateness against _base) of recent chunks, the lateness increasing: the window's minimum first."""
        self.restarts = 0

    def place(self, at: float, duration: float, *, gap: bool = False) -> tuple[float, bool]:
        """(the chunk's time, whether the stream starts anew with it). gap: the device says the stream
        broke before this chunk (an underrun or an overrun), so its samples no longer follow on."""
        fresh = gap or self._base is None or abs(at - (self._base + self._offset)) > self._restart_s
        if self._base is not None and not fresh:
            lateness = at - self._base
            least = self._count(lateness)
            # Every chunk of the last window _STEP_S late, or one that early: the stream moved (a device
            # that recovered from an xrun without saying so), as no drift does. It starts anew.
            fresh = not self.settling and abs(least - self._offset) > _STEP_S
        if self._base is None or fresh:
            if self._base is not None:
                self.restarts += 1
            self._base, self._offset, self._since = at, 0.0, 0.0
            self._least.clear()
            lateness = least = self._count(0.0)
        if self.settling:
            self._offset = least if self._since >= _WINDOW_S / 2 else min(self._offset, lateness)
        else:
            error = least - self._offset
            if abs(error) > _DEAD_BAND_S:
                step = _SLEW * duration
                self._offset += max(-step, min(step, error))
        placed = self._base + self._offset
        self._base += duration
        self._since += duration
        return placed, fresh

    def _count(self, lateness: float) -> float:
        """Counts this chunk's lateness into the window; the least lateness over it."""
        while self._least and self._least[-1][1] >= lateness:
            self._least.pop()
        self._least.append((self._since, lateness))
        while self._least[0][0] < self._since - _WINDOW_S:
            self._least.popleft()
        return self._least[0][1]

    @property
    def settling(self) -> bool:
        """Whether the stream (re)started less than _SETTLE_S ago: its place on the clock may still jump."""
        return self._since < _SETTLE_S


class FarEnd:
    """The speaker's output at 16 kHz on the shared clock: write(pcm, rate, at), read(at, n) -> samples.

    The speaker's chunks are placed by a StreamClock and resampled as one stream: their stamps
    jitter, the audio does not.
    """

    def __init__(self, settings: AecSettings | None = None) -> None:
        self.settings = settings or AecSettings()
        self._size = _TIMELINE_S * SAMPLE_RATE
        self._ring = np.zeros(self._size, dtype=np.int16)
        self._clock = StreamClock(self.settings.restart_ms / 1000)
        self._origin = 0.0
        self._started = False
        self._written_to = 0
        """Timeline index (samples from the origin) just after the last sample written."""
        self._resampler: soxr.ResampleStream | None = None
        self._rate = 0
        self._fed = 0
        """Speaker samples (at its own rate) resampled since the stream (re)started."""
        self._made = 0
        """16 kHz samples the resampler has given for them."""

    @property
    def restarts(self) -> int:
        return self._clock.restarts

    @property
    def settling(self) -> bool:
        return self._clock.settling

    def _index(self, at: float) -> int:
        return round((at - self._origin) * SAMPLE_RATE)

    def write(self, pcm: npt.NDArray[np.int16], sample_rate: int, at: float, *, gap: bool = False) -> None:
        """The speaker's PCM (16-bit mono at sample_rate) whose first sample plays at `at` seconds; gap:
        the output ran dry before it."""
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        if not self._started:
            self._started = True
            self._origin = at
        placed, fresh = self._clock.place(at, len(pcm) / sample_rate, gap=gap)
        if fresh or sample_rate != self._rate:
            # The quick (cubic) quality keeps no samples back, so what is written is where it belongs
            # at once; the canceller models the room, and the last bits of fidelity do not matter to it.
            self._resampler = (
                None
                if sample_rate == SAMPLE_RATE
                else soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="QQ")
            )
            self._rate, self._fed, self._made = sample_rate, 0, 0
        if self._resampler is None:
            samples = np.asarray(pcm, dtype=np.int16)
        else:
            floats = np.asarray(pcm, dtype=np.float32) / 32768.0
            samples = to_pcm16(np.asarray(self._resampler.resample_chunk(floats), dtype=np.float32))
        # Samples the resampler still owes for earlier chunks come out first, just before this one's time.
        owed = round(self._fed * SAMPLE_RATE / sample_rate) - self._made
        position = self._index(placed) - owed
        if position > self._written_to:
            self._clear(self._written_to, position)
        self._put(position, samples)
        self._fed += len(pcm)
        self._made += len(samples)
        self._written_to = position + len(samples)

    def read(self, at: float, count: int) -> npt.NDArray[np.int16]:
        """The count samples that played from `at` + lead_ms; silence where nothing did (or is not yet known)."""
        out = np.zeros(count, dtype=np.int16)
        if not self._started:
            return out
        start = self._index(at) + SAMPLE_RATE * self.settings.lead_ms // 1000
        first, last = max(start, self._written_to - self._size), min(start + count, self._written_to)
        if first < last:
            out[first - start : last - start] = self._take(first, last)
        return out

    def _put(self, index: int, samples: npt.NDArray[np.int16]) -> None:
        if len(samples) > self._size:
            index += len(samples) - self._size
            samples = samples[-self._size :]
        at = index % self._size
        head = min(len(samples), self._size - at)
        self._ring[at : at + head] = samples[:head]
        self._ring[: len(samples) - head] = samples[head:]

    def _take(self, first: int, last: int) -> npt.NDArray[np.int16]:
        at = first % self._size
        count = last - first
        head = min(count, self._size - at)
        return np.concatenate([self._ring[at : at + head], self._ring[: count - head]])

    def _clear(self, first: int, last: int) -> None:
        first = max(first, last - self._size)
        self._put(first, np.zeros(last - first, dtype=np.int16))


class EchoCanceller:
    """AEC3 on mic frames, with the speaker's output as reference. Not thread-safe: callers feeding it
    from two audio threads guard it with one lock (each call is well under a millisecond)."""

    def __init__(self, settings: AecSettings | None = None) -> None:
        from pywebrtc_audio import AudioProcessor  # noqa: PLC0415 (a native module: loaded only when cancelling)

        self.settings = settings or AecSettings()
        self.far = FarEnd(self.settings)
        self._mic_clock = StreamClock(self.settings.restart_ms / 1000)
        self._processor = AudioProcessor(
            sample_rate=SAMPLE_RATE,
            echo_cancellation=True,
            noise_suppression=self.settings.noise_suppression,
            stream_delay_ms=self.settings.lead_ms,
        )
        self.frames = 0
        self.aligned_far_s = 0.0
        """Seconds of mic frames processed while the speaker played, since both streams' clocks last
        settled: what AEC3 has had to converge on their pairing."""
        self.mic_energy = 0.0
        """Sum of squares of the mic frames processed while a reference played (for ERLE)."""
        self.out_energy = 0.0
        """The same after cancellation."""
        self.last_reference = np.zeros(0, dtype=np.int16)
        """The speaker's samples given to AEC3 with the last mic frame (what a recording of a run keeps)."""

    def reference(self, pcm: npt.NDArray[np.int16], sample_rate: int, at: float, *, gap: bool = False) -> None:
        """The speaker's output: 16-bit mono PCM at sample_rate whose first sample plays at `at` seconds;
        gap: the output ran dry before it (PortAudio's output_underflow)."""
        self.far.write(pcm, sample_rate, at, gap=gap)

    def process(self, frame: bytes, at: float, *, gap: bool = False) -> bytes:
        """A mic frame (16 kHz 16-bit mono) captured from `at` seconds, with the speaker's echo taken out;
        gap: mic audio was lost before it (an overflow, or frames dropped on the way)."""
        near = np.frombuffer(frame, dtype="<i2")
        at, _ = self._mic_clock.place(at, len(near) / SAMPLE_RATE, gap=gap)
        far = self.far.read(at, len(near))
        out = np.asarray(self._processor.process(near, far), dtype="<i2")
        self.last_reference = far
        self.frames += 1
        playing = bool(far.any())
        if self._mic_clock.settling or self.far.settling:
            self.aligned_far_s = 0.0
        elif playing:
            self.aligned_far_s += len(near) / SAMPLE_RATE
        if playing:
            self.mic_energy += float(np.dot(near.astype(np.float64), near))
            self.out_energy += float(np.dot(out.astype(np.float64), out))
        return out.tobytes()

    @property
    def restarts(self) -> int:
        """Times the speaker's stream started anew (after an underrun) since the first."""
        return self.far.restarts

    @property
    def converging(self) -> bool:
        """Whether the canceller has yet to hear converge_s of the speaker since the two streams' pairing
        last settled (they started, or one restarted): its echo may still come through."""
        return self.aligned_far_s < self.settings.converge_s

    @property
    def erle_db(self) -> float | None:
        """Echo return loss enhancement over every frame heard while the speaker played (user speech included)."""
        if self.out_energy <= 0.0 or self.mic_energy <= 0.0:
            return None
        return 10.0 * float(np.log10(self.mic_energy / self.out_energy))
