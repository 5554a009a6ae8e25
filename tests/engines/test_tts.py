"""Piper through edgevoice's own engine: a long sentence is spoken in pieces (tts.max_words)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.tts import PiperTts
from edgevoice.models.registry import Kind, resolve

LONG = (
    "The boiling point of water is about one hundred degrees Celsius at sea level but it falls "
    "as you climb because the air pressure is lower so on a high mountain water boils at a lower "
    "temperature and pasta takes longer to cook."
)
"""43 words without a comma, as a small model's run-on sentence comes."""


def test_a_long_sentence_comes_in_pieces_and_a_short_one_whole(engines: Engines) -> None:
    tts = engines.tts
    assert isinstance(tts, PiperTts)
    pieces = list(tts.synthesize(LONG))
    assert len(pieces) == 4  # 43 words, at most 12 each
    seconds = [len(piece) / tts.sample_rate for piece in pieces]
    assert all(1.0 < s < 6.0 for s in seconds), seconds
    assert len(list(tts.synthesize("Timer set for two minutes."))) == 1


def test_the_limit_bounds_the_memory_a_long_sentence_takes(config: Config) -> None:
    """In a process of its own: Piper's peak memory for the long sentence, with and without the limit."""
    voice = resolve(config, Kind.TTS).path

    def peak_growth_mb(max_words: int) -> float:
        script = textwrap.dedent(
            f"""
            import dataclasses, pathlib
            from edgevoice.config import load_config
            from edgevoice.engines.tts import PiperTts
            def status(key):
                line = next(l for l in open("/proc/self/status") if l.startswith(key))
                return int(line.split()[1]) / 1024
            config = load_config(None)
            tts = PiperTts(dataclasses.replace(config.tts, max_words={max_words}), pathlib.Path({str(voice)!r}))
            tts.warm_up()
            before = status("VmHWM")
            tts.speak({LONG!r})
            print(status("VmHWM") - before)
            """
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
        return float(done.stdout.split()[-1])

    whole, cut = peak_growth_mb(0), peak_growth_mb(12)
    assert whole > 150, whole
    assert cut < whole / 2, (cut, whole)
