"""Convert a CTranslate2 Whisper model (model.bin + vocabulary.txt) into whisper.cpp's ggml file.

The ggml file is: magic; eleven i32 hyperparameters; the mel filterbank; the byte-level
vocabulary of ordinary tokens; then every tensor as (n_dims, name length, type, dims in
ggml order, name, data). whisper.cpp's loader rejects any tensor it does not know, so the
all-zero key biases that CTranslate2 keeps inside its fused projections are left out.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from edgevoice.errors import ModelError
from edgevoice.models.ct2 import Ct2Model, read_ct2

GGML_MAGIC = 0x67676D6C
SAMPLE_RATE = 16000
N_FFT = 400
_QNT_VERSION_FACTOR = 1000
_QNT_VERSION = 2
_Q8_BLOCK = 32

Array = npt.NDArray[np.generic]


class WeightType(enum.Enum):
    """Storage of the large 2-D weights; value = (header ftype, ggml tensor type)."""

    F32 = (0, 0)
    F16 = (1, 1)
    Q8_0 = (7 + _QNT_VERSION * _QNT_VERSION_FACTOR, 8)

    @property
    def header_ftype(self) -> int:
        return self.value[0]

    @property
    def tensor_type(self) -> int:
        return self.value[1]


@dataclass(frozen=True)
class WhisperHparams:
    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= 51865


def _count_layers(model: Ct2Model, prefix: str) -> int:
    count = 0
    while f"{prefix}/layer_{count}/ffn/linear_0/weight" in model.variables:
        count += 1
    return count


def hparams_of(model: Ct2Model) -> WhisperHparams:
    if model.spec != "WhisperSpec":
        raise ModelError(f"CTranslate2 model is a {model.spec}, not a Whisper model")
    embeddings = model.tensor("decoder/embeddings/weight")
    audio_pos = model.tensor("encoder/position_encodings/encodings")
    text_pos = model.tensor("decoder/position_encodings/encodings")
    conv1 = model.tensor("encoder/conv1/weight")
    return WhisperHparams(
        n_vocab=embeddings.shape[0],
        n_audio_ctx=audio_pos.shape[0],
        n_audio_state=audio_pos.shape[1],
        n_audio_head=model.scalar("encoder/num_heads"),
        n_audio_layer=_count_layers(model, "encoder"),
        n_text_ctx=text_pos.shape[0],
        n_text_state=embeddings.shape[1],
        n_text_head=model.scalar("decoder/num_heads"),
        n_text_layer=_count_layers(model, "decoder"),
        n_mels=conv1.shape[1],
    )


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3.0
    log_step = math.log(6.4) / 27.0
    linear = hz / f_sp
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3.0
    log_step = math.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), f_sp * mel)


def mel_filterbank(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> npt.NDArray[np.float32]:
    """Triangular Slaney-normalised mel filters, shape (n_mels, n_fft // 2 + 1), as Whisper was trained with."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_edges = np.linspace(0.0, float(_hz_to_mel(np.array(sample_rate / 2.0))), n_mels + 2)
    hz_edges = _mel_to_hz(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.astype(np.float32)


def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-printable-character table used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


def read_vocabulary(path: Path) -> list[bytes]:
    """The ordinary (non-special) tokens of vocabulary.txt as raw bytes, in id order."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot read Whisper vocabulary {path}: {err}") from None
    table = _unicode_to_byte()
    tokens: list[bytes] = []
    for line in lines:
        if line.startswith("<|") and line.endswith("|>"):
            break
        try:
            tokens.append(bytes(table[ch] for ch in line))
        except KeyError as err:
            raise ModelError(f"{path}: token {len(tokens)} has a character outside the byte table: {err}") from None
    if len(tokens) < 50000:
        raise ModelError(f"{path}: only {len(tokens)} ordinary tokens, not a Whisper vocabulary")
    return tokens


def _split_rows(array: Array, parts: int) -> list[Array]:
    return list(np.split(array, parts, axis=0))


def _ggml_tensors(model: Ct2Model, hp: WhisperHparams) -> Iterator[tuple[str, Array]]:
    """Yield (whisper.cpp name, array in numpy order) for every tensor the loader expects."""
    t = model.tensor

    def norm(src: str, dst: str) -> Iterator[tuple[str, Array]]:
        yield f"{dst}.weight", t(f"{src}/gamma")
        yield f"{dst}.bias", t(f"{src}/beta")

    def linear(src: str, dst: str) -> Iterator[tuple[str, Array]]:
        yield f"{dst}.weight", t(f"{src}/weight")
        yield f"{dst}.bias", t(f"{src}/bias")

    def fused_self_attention(src: str, dst: str) -> Iterator[tuple[str, Array]]:
        q_w, k_w, v_w = _split_rows(t(f"{src}/linear_0/weight"), 3)
        q_b, _zero_k_b, v_b = _split_rows(t(f"{src}/linear_0/bias"), 3)
        yield f"{dst}.query.weight", q_w
        yield f"{dst}.query.bias", q_b
        yield f"{dst}.key.weight", k_w
        yield f"{dst}.value.weight", v_w
        yield f"{dst}.value.bias", v_b
        yield from linear(f"{src}/linear_1", f"{dst}.out")

    def ffn(src: str, dst: str) -> Iterator[tuple[str, Array]]:
        yield from norm(f"{src}/layer_norm", f"{dst}.mlp_ln")
        yield from linear(f"{src}/linear_0", f"{dst}.mlp.0")
        yield from linear(f"{src}/linear_1", f"{dst}.mlp.2")

    yield "encoder.positional_embedding", t("encoder/position_encodings/encodings")
    for conv in ("conv1", "conv2"):
        yield f"encoder.{conv}.weight", t(f"encoder/{conv}/weight")
        yield f"encoder.{conv}.bias", t(f"encoder/{conv}/bias").reshape(hp.n_audio_state, 1)
    yield from norm("encoder/layer_norm", "encoder.ln_post")
    for i in range(hp.n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        yield from fused_self_attention(f"{src}/self_attention", f"{dst}.attn")
        yield from ffn(f"{src}/ffn", dst)

    yield "decoder.positional_embedding", t("decoder/position_encodings/encodings")
    yield "decoder.token_embedding.weight", t("decoder/embeddings/weight")
    yield from norm("decoder/layer_norm", "decoder.ln")
    for i in range(hp.n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        yield from fused_self_attention(f"{src}/self_attention", f"{dst}.attn")
        yield from norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        yield from linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        k_w, v_w = _split_rows(t(f"{src}/attention/linear_1/weight"), 2)
        _zero_k_b, v_b = _split_rows(t(f"{src}/attention/linear_1/bias"), 2)
        yield f"{dst}.cross_attn.key.weight", k_w
        yield f"{dst}.cross_attn.value.weight", v_w
        yield f"{dst}.cross_attn.value.bias", v_b
        yield from linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        yield from ffn(f"{src}/ffn", dst)


def quantize_q8_0(array: npt.NDArray[np.float32]) -> bytes:
    """ggml's Q8_0: blocks of 32 values along a row, each an f16 scale then 32 int8."""
    if array.shape[-1] % _Q8_BLOCK:
        raise ModelError(f"rows of {array.shape[-1]} values cannot be split into Q8_0 blocks of {_Q8_BLOCK}")
    blocks = array.astype(np.float32).reshape(-1, _Q8_BLOCK)
    scale = np.abs(blocks).max(axis=1) / 127.0
    inverse = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    scaled = blocks * inverse[:, None]
    quants = (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int8)
    packed = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", (_Q8_BLOCK,))])
    packed["d"] = scale.astype(np.float16)
    packed["qs"] = quants
    return packed.tobytes()


def _encode(name: str, array: Array, weight_type: WeightType) -> tuple[int, bytes]:
    """Pick the storage type whisper.cpp expects for this tensor and return (ggml type, bytes)."""
    values = array.astype(np.float32)
    if (
        name.endswith("positional_embedding")
        or array.ndim == 1
        or (name.startswith("encoder.conv") and name.endswith(".bias"))
    ):
        return 0, values.astype("<f4").tobytes()
    if name.startswith("encoder.conv"):
        conv_type = 0 if weight_type is WeightType.F32 else 1
        return conv_type, values.astype("<f4" if conv_type == 0 else "<f2").tobytes()
    if weight_type is WeightType.Q8_0:
        return weight_type.tensor_type, quantize_q8_0(values)
    return weight_type.tensor_type, values.astype("<f4" if weight_type is WeightType.F32 else "<f2").tobytes()


def _write_i32(out: BinaryIO, *values: int) -> None:
    out.write(struct.pack(f"<{len(values)}i", *values))


def write_ggml(model: Ct2Model, vocabulary: list[bytes], out: BinaryIO, weight_type: WeightType) -> int:
    """Write the whole ggml file to out; return the number of tensors written."""
    hp = hparams_of(model)
    out.write(struct.pack("<I", GGML_MAGIC))
    _write_i32(
        out,
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
        weight_type.header_ftype,
    )
    filters = mel_filterbank(hp.n_mels)
    _write_i32(out, *filters.shape)
    out.write(filters.astype("<f4").tobytes())
    _write_i32(out, len(vocabulary))
    for token in vocabulary:
        _write_i32(out, len(token))
        out.write(token)
    count = 0
    for name, array in _ggml_tensors(model, hp):
        tensor_type, data = _encode(name, array, weight_type)
        encoded_name = name.encode("ascii")
        _write_i32(out, array.ndim, len(encoded_name), tensor_type)
        _write_i32(out, *reversed(array.shape))
        out.write(encoded_name)
        out.write(data)
        count += 1
    return count


def convert(model_dir: Path, out: BinaryIO, weight_type: WeightType = WeightType.F16) -> int:
    """Convert the CTranslate2 Whisper model in model_dir; return the number of tensors written."""
    model = read_ct2(model_dir / "model.bin")
    vocabulary = read_vocabulary(model_dir / "vocabulary.txt")
    return write_ggml(model, vocabulary, out, weight_type)
