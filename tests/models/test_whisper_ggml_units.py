"""Parts of the Whisper converter that need no model file."""

from __future__ import annotations

import numpy as np
import pytest

from edgevoice.errors import ModelError
from edgevoice.models.whisper_ggml import _hz_to_mel, _mel_to_hz, _unicode_to_byte, mel_filterbank, quantize_q8_0

BIN_HZ = 16_000 / 400  # spacing of the 201 FFT bins
Q8_DTYPE = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])


@pytest.fixture(scope="module")
def mel80() -> np.ndarray:
    return mel_filterbank(80)


def test_mel_filterbank_shape_and_type(mel80: np.ndarray) -> None:
    assert mel80.shape == (80, 201)
    assert mel80.dtype == np.float32
    assert np.all(np.isfinite(mel80))
    assert np.all(mel80 >= 0.0)


def test_mel_filterbank_other_sizes() -> None:
    assert mel_filterbank(128).shape == (128, 201)
    assert mel_filterbank(40, n_fft=512).shape == (40, 257)


def test_every_filter_is_a_single_triangle(mel80: np.ndarray) -> None:
    for index, row in enumerate(mel80):
        nonzero = np.flatnonzero(row)
        assert nonzero.size >= 1, f"filter {index} is empty"
        # The support is contiguous, rising to one peak and falling after it.
        assert np.all(np.diff(nonzero) == 1), f"filter {index} has a gap"
        values = row[nonzero[0] : nonzero[-1] + 1]
        peak = int(np.argmax(values))
        assert np.all(np.diff(values[: peak + 1]) >= 0), f"filter {index} does not rise to its peak"
        assert np.all(np.diff(values[peak:]) <= 0), f"filter {index} does not fall after its peak"


def test_filters_move_up_in_frequency(mel80: np.ndarray) -> None:
    freqs = np.arange(201) * BIN_HZ
    centroids = (mel80 * freqs).sum(axis=1) / mel80.sum(axis=1)
    assert np.all(np.diff(centroids) > 0)
    # The low filters are narrower than the 40 Hz bins, so two neighbours can share a peak bin
    # (as in Whisper's own mel_filters.npz): peaks never move down, and most move up.
    peaks = mel80.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)
    assert len(set(peaks.tolist())) >= 75


def test_filters_cover_low_to_high_frequencies(mel80: np.ndarray) -> None:
    first = np.flatnonzero(mel80[0]) * BIN_HZ
    last = np.flatnonzero(mel80[-1]) * BIN_HZ
    assert first.max() < 100.0
    assert last.min() > 7000.0
    assert last.max() <= 8000.0


def test_slaney_normalisation_gives_each_filter_unit_area(mel80: np.ndarray) -> None:
    # Each triangle is scaled to height 2 / bandwidth, so its area in Hz is 1.
    areas = mel80.sum(axis=1) * BIN_HZ
    assert np.all(np.abs(areas - 1.0) < 0.1)
    # The triangles' corners are equally spaced in mels from 0 to 8 kHz; each reaches at most
    # height 2 / (upper corner - lower corner), and the bin nearest its centre gets close to that.
    corners = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(8000.0))), 82))
    height = 2.0 / (corners[2:] - corners[:-2])
    peaks = mel80.max(axis=1)
    assert np.all(peaks <= height * (1 + 1e-5))
    assert np.all(peaks >= height * 0.45)
    # Equal widths in the linear part below 1 kHz, widening above it.
    assert np.allclose(height[:20], height[0])
    assert np.all(np.diff(height[30:]) < 0)


def test_slaney_mel_scale() -> None:
    hz = np.array([0.0, 200.0 / 3.0, 1000.0, 6400.0, 8000.0])
    mel = _hz_to_mel(hz)
    assert mel[:3] == pytest.approx([0.0, 1.0, 15.0])
    assert mel[3] == pytest.approx(15.0 + 27.0)  # 27 steps per factor of 6.4 above 1 kHz
    assert _mel_to_hz(mel) == pytest.approx(hz)


def test_byte_table_maps_256_characters_onto_all_bytes() -> None:
    table = _unicode_to_byte()
    assert len(table) == 256
    assert sorted(table.values()) == list(range(256))
    assert all(len(ch) == 1 for ch in table)


@pytest.mark.parametrize(
    ("char", "byte"), [("!", 0x21), ("A", 0x41), ("~", 0x7E), ("Ġ", 0x20), ("Ċ", 0x0A), ("Ā", 0x00)]
)
def test_byte_table_matches_gpt2(char: str, byte: int) -> None:
    assert _unicode_to_byte()[char] == byte


def test_byte_table_decodes_a_bpe_token() -> None:
    table = _unicode_to_byte()
    assert bytes(table[ch] for ch in "Ġhello") == b" hello"
    # "é" in UTF-8 is c3 a9, which the table writes as "Ã©".
    assert bytes(table[ch] for ch in "ĠcafÃ©").decode("utf-8") == " café"


def test_quantize_q8_0_size_and_accuracy() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 64)).astype(np.float32) * 3.0
    packed = quantize_q8_0(data)
    assert len(packed) == 4 * 64 // 32 * 34

    blocks = np.frombuffer(packed, dtype=Q8_DTYPE)
    assert blocks.shape == (8,)
    restored = blocks["d"].astype(np.float32)[:, None] * blocks["qs"].astype(np.float32)
    original = data.reshape(-1, 32)
    block_max = np.abs(original).max(axis=1)
    error = np.abs(restored - original).max(axis=1)
    assert np.all(error <= 0.01 * block_max)
    # The largest value of each block uses the full int8 range.
    assert np.all(np.abs(blocks["qs"]).max(axis=1) == 127)


def test_quantize_q8_0_of_zeros_has_zero_scale() -> None:
    blocks = np.frombuffer(quantize_q8_0(np.zeros((2, 32), dtype=np.float32)), dtype=Q8_DTYPE)
    assert np.all(blocks["d"] == 0)
    assert np.all(blocks["qs"] == 0)


def test_quantize_q8_0_accepts_float16_input() -> None:
    data = np.linspace(-1.0, 1.0, 64, dtype=np.float16).reshape(1, 64)
    blocks = np.frombuffer(quantize_q8_0(data), dtype=Q8_DTYPE)
    restored = (blocks["d"].astype(np.float32)[:, None] * blocks["qs"]).reshape(1, 64)
    assert np.allclose(restored, data.astype(np.float32), atol=0.01)


@pytest.mark.parametrize("shape", [(4, 48), (3, 33), (31,)])
def test_quantize_q8_0_rejects_rows_not_divisible_by_32(shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelError, match="cannot be split into Q8_0 blocks of 32"):
        quantize_q8_0(np.ones(shape, dtype=np.float32))
