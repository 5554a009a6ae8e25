"""The clip set maker: espeak-ng voices only (no model), clean and noisy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.pcm import read_audio
from edgevoice.bench.clipset import QUESTIONS, main
from edgevoice.bench.daemon import BenchError
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


def test_the_bench_takes_the_true_end_from_the_clean_clip_not_from_the_noise(tmp_path: Path) -> None:
    assert main([str(tmp_path / "clean"), "--voices", "en-us"]) == 0
    assert main([str(tmp_path / "noisy"), "--voices", "en-us", "--snr", "10"]) == 0
    clean = {clip.name: clip for clip in load_clips(tmp_path / "clean")}
    for clip in load_clips(tmp_path / "noisy"):
        twin = clean[clip.name.removesuffix("-snr10")]
        assert clip.speech_end == twin.speech_end == true_end_of_speech(twin.samples)
        assert clip.speech_end < len(clip.samples) - 4000  # the half second of noise after it is not speech
    # Found in the audio, the noise would pass for speech to the clip's last frame.
    noisy = read_audio(tmp_path / "noisy" / "en-us-00-snr10.wav")
    assert true_end_of_speech(noisy) > len(noisy) - 800


@pytest.mark.parametrize("text", ["soon", "0", "99999999"])
def test_a_bad_end_file_is_refused_by_name(tmp_path: Path, text: str) -> None:
    assert main([str(tmp_path), "--voices", "en-us"]) == 0
    (tmp_path / "en-us-00.end").write_text(text, encoding="utf-8")
    with pytest.raises(BenchError, match=r"en-us-00\.end"):
        load_clips(tmp_path)
