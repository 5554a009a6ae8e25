"""The clip set maker: espeak-ng voices only (no model), clean and noisy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevoice.audio.pcm import read_audio
from edgevoice.bench.clipset import QUESTIONS, main
from edgevoice.bench.measure import true_end_of_speech
from edgevoice.bench.run import load_clips


def test_a_noisy_set_is_laid_out_for_the_bench_and_noisier_than_the_clean_one(tmp_path: Path) -> None:
    assert main([str(tmp_path / "clean"), "--voices", "en-us"]) == 0
    assert main([str(tmp_path / "noisy"), "--voices", "en-us,en-gb", "--snr", "10"]) == 0
    clean = load_clips(tmp_path / "clean")
    noisy = load_clips(tmp_path / "noisy")
    assert len(clean) == len(QUESTIONS)
    assert len(noisy) == 2 * len(QUESTIONS)
    assert {clip.reference for clip in noisy} == set(QUESTIONS)
    quiet = read_audio(tmp_path / "clean" / "en-us-00.wav")
    loud = read_audio(tmp_path / "noisy" / "en-us-00-snr10.wav")
    assert len(quiet) == len(loud)
    lead = slice(0, 4000)  # the half second before speech: silent, or room noise
    assert float(np.abs(quiet[lead]).max()) < 1e-3
    assert float(np.sqrt(np.mean(loud[lead] ** 2))) > 0.005
    assert true_end_of_speech(quiet) > 8000
