"""Cheap format checks, run before a file reaches native code that would crash on it.

Native loaders (whisper.cpp above all) can abort the process on a malformed file, which in a
daemon would end every conversation; these checks turn such files into a ModelError first.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from edgevoice.errors import ModelError
from edgevoice.models.whisper_ggml import GGML_MAGIC

# Bytes per block and values per block of the ggml tensor types a Whisper file may hold.
_GGML_TYPE_LAYOUT = {0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32)}


def _require_file(path: Path, what: str) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"{what} {path} does not exist") from None
    except OSError as err:
        raise ModelError(f"{what} {path} cannot be read: {err.strerror}") from None
    if not path.is_file():
        raise ModelError(f"{what} {path} is not a file")
    if size == 0:
        raise ModelError(f"{what} {path} is empty")
    if not os.access(path, os.R_OK):
        raise ModelError(f"{what} {path} is not readable by this user")
    return size


def check_whisper_ggml(path: Path) -> dict[str, int]:
    """Walk the whole ggml file (header, filters, vocab, tensor table); return the hyperparameters."""
    size = _require_file(path, "Whisper model")
    with path.open("rb") as stream:

        def take(n: int, part: str) -> bytes:
            data = stream.read(n)
            if len(data) != n:
                raise ModelError(f"Whisper model {path} is truncated (ends inside the {part}; {size} bytes)")
            return data

        magic = struct.unpack("<I", take(4, "header"))[0]
        if magic != GGML_MAGIC:
            raise ModelError(f"{path} is not a whisper.cpp ggml model (bad magic {magic:#010x})")
        names = ["n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_text_ctx"]
        names += ["n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype"]
        hparams = dict(zip(names, struct.unpack("<11i", take(44, "header")), strict=True))
        if not (
            0 < hparams["n_audio_layer"] <= 64 and 0 < hparams["n_mels"] <= 256 and 0 < hparams["n_vocab"] < 1 << 20
        ):
            raise ModelError(f"Whisper model {path} has implausible hyperparameters {hparams}")
        n_mel, n_fft = struct.unpack("<2i", take(8, "mel filters"))
        if not (0 < n_mel <= 256 and 0 < n_fft <= 4096):
            raise ModelError(f"Whisper model {path} has a malformed mel filterbank ({n_mel}x{n_fft})")
        take(4 * n_mel * n_fft, "mel filters")
        (n_tokens,) = struct.unpack("<i", take(4, "vocabulary"))
        if not 0 <= n_tokens <= hparams["n_vocab"]:
            raise ModelError(f"Whisper model {path} has a malformed vocabulary ({n_tokens} tokens)")
        for _ in range(n_tokens):
            (length,) = struct.unpack("<i", take(4, "vocabulary"))
            if not 0 <= length <= 1024:
                raise ModelError(f"Whisper model {path} has a malformed vocabulary entry")
            take(length, "vocabulary")
        tensors = 0
        while header := stream.read(12):
            if len(header) != 12:
                raise ModelError(f"Whisper model {path} is truncated (ends inside tensor {tensors})")
            n_dims, name_length, tensor_type = struct.unpack("<3i", header)
            if not (1 <= n_dims <= 4 and 0 < name_length < 256 and tensor_type in _GGML_TYPE_LAYOUT):
                raise ModelError(f"Whisper model {path} has a malformed tensor header at tensor {tensors}")
            dims = struct.unpack(f"<{n_dims}i", take(4 * n_dims, "tensor table"))
            take(name_length, "tensor table")
            count = 1
            for dim in dims:
                count *= dim
            block_bytes, block_values = _GGML_TYPE_LAYOUT[tensor_type]
            nbytes = count // block_values * block_bytes
            if stream.seek(nbytes, os.SEEK_CUR) > size:
                raise ModelError(f"Whisper model {path} is truncated (ends inside tensor {tensors})")
            tensors += 1
        if tensors == 0:
            raise ModelError(f"Whisper model {path} holds no tensors")
    hparams["tensors"] = tensors
    return hparams


def check_gguf(path: Path) -> None:
    size = _require_file(path, "LLM model")
    with path.open("rb") as stream:
        head = stream.read(24)
    if len(head) < 24 or head[:4] != b"GGUF":
        raise ModelError(f"{path} is not a GGUF model file (llama.cpp's format)")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3) or n_tensors == 0 or n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise ModelError(f"GGUF model {path} has a malformed header (version {version}, {n_tensors} tensors)")
    if size < 1024:
        raise ModelError(f"GGUF model {path} is truncated ({size} bytes)")


def check_piper_voice(path: Path) -> dict[str, Any]:
    """Check the .onnx file and its .onnx.json; return the parsed JSON."""
    _require_file(path, "Piper voice")
    with path.open("rb") as stream:
        first = stream.read(2)
    if first[:1] != b"\x08":  # ONNX ModelProto starts with field 1 (ir_version), a varint
        raise ModelError(f"{path} is not an ONNX model (a Piper voice is an .onnx file)")
    config_path = path.with_name(path.name + ".json")
    _require_file(config_path, "Piper voice config")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"Piper voice config {config_path} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or "phoneme_id_map" not in config or "audio" not in config:
        raise ModelError(f"Piper voice config {config_path} lacks phoneme_id_map or audio settings")
    return config
