"""Piper through edgevoice's own engine: a long sentence is spoken in pieces (tts.max_words, tts.max_phonemes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.tts import PiperTts
from edgevoice.models.registry import Kind, resolve
from edgevoice.speech_text import clean_for_speech

LONG = (
    "The boiling point of water is about one hundred degrees Celsius at sea level but it falls "
    "as you climb because the air pressure is lower so on a high mountain water boils at a lower "
    "temperature and pasta takes longer to cook."
)
"""43 words without a comma, as a small model's run-on sentence comes."""
NUMBERS = "The boiling point of water is 1,023.75 degrees Celsius (2,049.68 degrees Fahrenheit)."
"""Twelve words, as a small model wrote them, that take eight seconds to say once the numbers are words."""


def test_a_long_sentence_comes_in_pieces_and_a_short_one_whole(engines: Engines) -> None:
    tts = engines.tts
    assert isinstance(tts, PiperTts)
    pieces = list(tts.synthesize(LONG))
    assert len(pieces) >= 4  # 43 words, at most 12 each, and at most 64 phonemes each
    seconds = [len(piece) / tts.sample_rate for piece in pieces]
    assert all(0.5 < s < 4.5 for s in seconds), seconds
    assert len(list(tts.synthesize("Timer set for two minutes."))) == 1


def test_a_sentence_of_long_numbers_is_cut_by_its_sounds_not_its_words(engines: Engines) -> None:
    tts = engines.tts
    assert isinstance(tts, PiperTts)
    spoken = clean_for_speech(NUMBERS, line_start=True)
    seconds = [len(piece) / tts.sample_rate for piece in tts.synthesize(spoken)]
    assert len(seconds) >= 3, seconds
    assert all(s < 4.5 for s in seconds), seconds
    assert sum(seconds) > 6.0, seconds


def test_the_limits_bound_the_memory_a_long_sentence_takes(config: Config) -> None:
    """In a process of its own: Piper's peak memory for a long sentence, with and without the limits."""
    voice = resolve(config, Kind.TTS).path

    def peak_growth_mb(text: str, max_words: int, max_phonemes: int) -> float:
        script = textwrap.dedent(
            f"""
            import dataclasses, pathlib
            from edgevoice.config import load_config
            from edgevoice.engines.tts import PiperTts
            def status(key):
                line = next(l for l in open("/proc/self/status") if l.startswith(key))
                return int(line.split()[1]) / 1024
            config = load_config(None)
            limits = dataclasses.replace(config.tts, max_words={max_words}, max_phonemes={max_phonemes})
            tts = PiperTts(limits, pathlib.Path({str(voice)!r}))
            tts.warm_up()
            before = status("VmHWM")
            tts.speak({text!r})
            print(status("VmHWM") - before)
            """
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
        return float(done.stdout.split()[-1])

    defaults = config.tts.max_words, config.tts.max_phonemes
    whole, cut = peak_growth_mb(LONG, 0, 0), peak_growth_mb(LONG, *defaults)
    assert whole > 150, whole
    assert cut < whole / 2, (cut, whole)
    numbers = clean_for_speech(NUMBERS, line_start=True)
    words_only, both = peak_growth_mb(numbers, config.tts.max_words, 0), peak_growth_mb(numbers, *defaults)
    assert words_only > 150, words_only
    assert both < words_only / 2, (both, words_only)
