"""The box's own echo handling between its sound device's threads: the canceller, the gate behind it.

The echo canceller and the echo gate are sans-I/O. The speaker's audio reaches them from PortAudio's
output thread and the mic's from wherever the mic's frames are handled (the daemon's event loop, the
echo bench's input thread), so one lock guards them, held for well under a millisecond each time.
The gate stands behind the canceller while it converges (or alone, without a canceller). The devices'
xruns are counted, as each breaks a stream's samples and so the echo's delay, and each new one is
logged once.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import numpy.typing as npt

from edgevoice.audio.aec import EchoCanceller
from edgevoice.audio.echo_gate import EchoGate

_log = logging.getLogger(__name__)


class EchoPath:
    def __init__(self, canceller: EchoCanceller | None, gate: EchoGate) -> None:
        self.canceller = canceller
        self.gate = gate
        self._lock = threading.Lock()
        self.speaker_underflows = 0
        self.mic_overflows = 0
        self._logged = (0, 0)
        self.cancelled = b""
        """The last mic frame after the canceller, before the gate (what the echo bench records)."""

    def speaker(self, pcm: npt.NDArray[np.int16], sample_rate: int, plays_at: float, *, ran_dry: bool) -> None:
        """What the speaker plays from plays_at; ran_dry: it underran before this (on PortAudio's output thread)."""
        with self._lock:
            self.speaker_underflows += ran_dry
            if self.canceller is not None:
                self.canceller.reference(pcm, sample_rate, plays_at, gap=ran_dry)
            self.gate.reference(pcm, sample_rate, plays_at)

    def mic(self, frame: bytes, captured_at: float, *, gap: bool) -> bytes:
        """A mic frame captured from captured_at with the echo taken out; gap: mic audio was lost before it."""
        with self._lock:
            self.mic_overflows += gap
            if self.canceller is not None:
                frame = self.canceller.process(frame, captured_at, gap=gap)
            self.cancelled = frame
            if self.canceller is None or self.canceller.converging:
                frame = self.gate.process(frame, captured_at)
            now = (self.speaker_underflows, self.mic_overflows)
        if now != self._logged:
            self._logged = now
            restarts = (
                "" if self.canceller is None else f"; the speaker's stream restarted {self.canceller.restarts} times"
            )
            _log.info("sound device xruns: the speaker ran dry %d times, the mic lost audio %d times%s", *now, restarts)
        return frame

    def log_summary(self, dropped: int) -> None:
        """At the end of a session: what the canceller and the gate did, and the mic frames dropped on the way."""
        if dropped:
            _log.warning("dropped %d microphone frames the pipeline could not keep up with", dropped)
        _log.info(
            "echo gate: silenced %d of %d microphone frames heard while the speaker played; "
            "coupling %.3f; the loudest silenced frame was %.2f of its threshold",
            self.gate.gated_frames,
            self.gate.frames_while_speaking,
            self.gate.coupling,
            self.gate.closest_call,
        )
        if self.canceller is not None and self.canceller.erle_db is not None:
            _log.info("echo canceller: %.1f dB taken out while the speaker played", self.canceller.erle_db)
