"""Keep the assistant from hearing itself: an energy gate on the microphone, sans-I/O.

The box's speaker sits next to its microphone, so without a gate the endpointer hears the reply
as new speech: the session barges in on itself, or answers itself. Echo cancellation would
subtract the reply sample by sample; this gate asks a cheaper question per mic frame: is this
frame louder than the echo of what the speaker just played could explain? If it is, someone is
talking over the reply and the frame passes (barge-in keeps working); if not, the frame becomes
silence, so the endpointer hears nothing. When the speaker has been quiet for a tail the gate
is transparent.

The gate is fed two streams, each stamped by the caller with when its audio met the air, on any
clock the two share (the speaker's PCM with when its first sample plays, a mic frame with when
its first sample was captured). It holds no threads and does no I/O; a caller feeding it from
two audio threads guards it with one lock.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgevoice.audio.pcm import SAMPLE_RATE

_FULL_SCALE = 32768.0
_REFERENCE_BLOCK_S = 0.010
"""The speaker's PCM is kept as the RMS of 10 ms blocks: fine enough to follow syllables."""
_REFERENCE_HISTORY_BLOCKS = 1000
"""A bound on the blocks kept when mic frames stop arriving (they are what prunes old blocks)."""


@dataclass(frozen=True)
class EchoGateSettings:
    """How the gate tells the echo of the reply from a user talking over it."""

    tail_ms: int = 300
    """How long after the speaker played a sound its echo may still reach the mic: the output and
    input latency the timestamps miss, plus the room's reverberation."""
    lead_ms: int = 40
    """How much earlier than the timestamps say an echo may arrive: jitter between the two
    streams' clocks and callback sizes."""
    margin: float = 2.0
    """How many times louder (RMS) than the loudest echo expected a mic frame must be to pass:
    2 is 6 dB. The loudest is taken over the whole tail, so echo alone almost never passes;
    a user speaking up over the reply does."""
    initial_coupling: float = 1.0
    """Speaker-to-mic coupling (mic RMS per reference RMS) assumed before any is measured:
    the mic hears the speaker as loud as it was played, which a box with its speaker beside
    its mic and sane gain rarely exceeds; the margin covers up to twice that from the start."""
    min_coupling: float = 0.02
    """The estimate never goes below this (-34 dB), whatever a quiet room suggests."""
    max_coupling: float = 4.0
    """Nor above this (+12 dB): a user talking under the reply for a long time must not teach
    the gate that nothing short of shouting is speech."""
    measure_frames: int = 25
    """Mic frames silenced while the speaker played that are summed into one measurement of the
    coupling (25 frames of 20 ms: half a second of reply), long enough that the echo's delay
    and reverberation fall mostly inside it."""
    memory: int = 8
    """Measurements the estimate averages over when they say the room is quieter than it thought
    (four seconds of reply): the mean of the default and the measurements until there are this
    many, an exponential average after. Lowering the estimate lets quieter sounds through, so
    it is done slowly."""
    rise_memory: int = 3
    """The same when they say the room is louder: an estimate too low lets the echo through,
    which is the failure that matters, so it is corrected faster."""
    speaker_floor: float = 0.003
    """Reference RMS (of full scale, about -50 dBFS) below which the speaker counts as silent."""
    mic_floor: float = 0.0003
    """A measurement whose mic RMS is below this (about -70 dBFS, under any real mic's own noise)
    is skipped: a muted or dead mic says nothing about the room, and learning from it would
    leave the estimate at its minimum for when the mic comes back."""


@dataclass(frozen=True)
class _Block:
    start: float
    end: float
    rms: float


class EchoGate:
    """Silences mic frames the speaker's recent output explains; passes everything else.

    A frame passes when its RMS exceeds margin * coupling * the loudest reference block
    within [frame start - tail, frame end + lead]. Taking the loudest over the tail, rather
    than the block at one estimated delay, makes the decision indifferent to how long the
    echo takes to arrive and to reverberation that outlasts the sound.

    The coupling is learned from frames the gate silenced while the speaker played, the frames
    where only the assistant speaks as far as the gate can tell: every half second of them is
    one measurement (their energy over the reference energy played during them), and the
    estimate averages the last few. Frames that passed are left out, so a user barging in does
    not teach the gate that the echo is loud; since the threshold uses the loudest block of the
    tail, most echo frames stay below it even while the estimate is too low, so the estimate
    can still climb towards a louder room (up to about margin times the current one).
    """

    def __init__(self, settings: EchoGateSettings | None = None) -> None:
        self.settings = settings or EchoGateSettings()
        s = self.settings
        self._blocks: collections.deque[_Block] = collections.deque(maxlen=_REFERENCE_HISTORY_BLOCKS)
        self._log_coupling = math.log(self._clamp(s.initial_coupling))
        self._measurements = 0
        self._mic_energy = 0.0
        self._reference_energy = 0.0
        self._measured_frames = 0
        self.frames = 0
        """Mic frames processed."""
        self.frames_while_speaking = 0
        """Mic frames that arrived while the speaker's output (or its tail) could be heard."""
        self.gated_frames = 0
        """Mic frames replaced with silence."""
        self.closest_call = 0.0
        """The highest RMS-to-threshold ratio of any silenced frame (above 1 it would have passed).
        Over replies no one spoke over, it is how near the echo came to getting through: what to
        look at when tuning margin on a real box."""

    @property
    def coupling(self) -> float:
        """The current speaker-to-mic coupling estimate (mic RMS per reference RMS), clamped."""
        return math.exp(self._log_coupling)

    @property
    def passed_while_speaking(self) -> int:
        """Mic frames loud enough to pass over the reply: a user barging in (or echo let through)."""
        return self.frames_while_speaking - self.gated_frames

    def reference(self, pcm: bytes | npt.NDArray[np.int16], sample_rate: int, at: float) -> None:
        """The speaker's output: 16-bit mono PCM at sample_rate whose first sample plays at `at` seconds."""
        samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        block = max(1, round(sample_rate * _REFERENCE_BLOCK_S))
        floor = self.settings.speaker_floor
        for offset in range(0, len(samples), block):
            piece = samples[offset : offset + block].astype(np.float32) / _FULL_SCALE
            rms = float(np.sqrt(np.mean(piece * piece)))
            # Silence is not kept: a window with no block in it is a speaker that said nothing.
            if rms >= floor:
                start = at + offset / sample_rate
                self._blocks.append(_Block(start, start + len(piece) / sample_rate, rms))

    def process(self, frame: bytes, at: float) -> bytes:
        """A mic frame (16 kHz 16-bit mono) captured from `at` seconds: returned as is, or as silence."""
        s = self.settings
        self.frames += 1
        duration = len(frame) / 2 / SAMPLE_RATE
        window_start = at - s.tail_ms / 1000.0
        window_end = at + duration + s.lead_ms / 1000.0
        while self._blocks and self._blocks[0].end <= window_start:
            self._blocks.popleft()
        loudest = 0.0
        overlap_energy = 0.0
        for block in self._blocks:
            if block.start >= window_end:
                # Still to be played. Not a break: after an underrun the output stream restarts,
                # and its blocks need not stay in time order.
                continue
            loudest = max(loudest, block.rms)
            overlap = min(block.end, at + duration) - max(block.start, at)
            if overlap > 0:
                overlap_energy += block.rms * block.rms * overlap
        if loudest == 0.0:
            return frame
        self.frames_while_speaking += 1
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / _FULL_SCALE
        energy = float(np.mean(samples * samples)) if len(samples) else 0.0
        threshold = s.margin * self.coupling * loudest
        if math.sqrt(energy) > threshold:
            return frame
        self.gated_frames += 1
        self.closest_call = max(self.closest_call, math.sqrt(energy) / threshold)
        self._learn(energy, overlap_energy / duration if duration else 0.0)
        return bytes(len(frame))

    def _clamp(self, coupling: float) -> float:
        return min(max(coupling, self.settings.min_coupling), self.settings.max_coupling)

    def _learn(self, mic_energy: float, reference_energy: float) -> None:
        # Energies are summed over many frames before they are compared: the echo of a block
        # lands in a later frame (delay, reverberation), so one frame's ratio means little, but
        # over half a second of reply the echo and the sound that caused it are both in the sums.
        s = self.settings
        self._mic_energy += mic_energy
        self._reference_energy += reference_energy
        self._measured_frames += 1
        if self._measured_frames < s.measure_frames:
            return
        frames = self._measured_frames
        if self._reference_energy > 0.0 and self._mic_energy / frames >= s.mic_floor**2:
            measured = self._clamp(math.sqrt(self._mic_energy / self._reference_energy))
            # Averaged as logarithms, so going from 1 to 0.1 takes as long as from 0.1 to 0.01,
            # and each measurement is clamped, so one odd half-second moves the estimate a bounded step.
            self._measurements += 1
            step = math.log(measured) - self._log_coupling
            memory = s.rise_memory if step > 0 else s.memory
            self._log_coupling += step / min(self._measurements + 1, memory)
        self._mic_energy = self._reference_energy = 0.0
        self._measured_frames = 0
