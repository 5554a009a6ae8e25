"""read_ct2 on small synthetic model.bin files written by the test."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from edgevoice.errors import ModelError
from edgevoice.models.ct2 import Ct2Model, read_ct2

_DTYPE_CODES = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<i4"): 3, np.dtype("<f2"): 4}


def ct2_string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def ct2_variable(name: str, array: np.ndarray, dtype_code: int | None = None) -> bytes:
    code = _DTYPE_CODES[array.dtype] if dtype_code is None else dtype_code
    data = array.tobytes()
    return (
        ct2_string(name)
        + struct.pack("<B", array.ndim)
        + struct.pack(f"<{array.ndim}I", *array.shape)
        + struct.pack("<B", code)
        + struct.pack("<I", len(data))
        + data
    )


def ct2_model_bytes(
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    *,
    spec: str = "WhisperSpec",
    revision: int = 3,
    version: int = 6,
) -> bytes:
    out = struct.pack("<I", version) + ct2_string(spec) + struct.pack("<I", revision)
    out += struct.pack("<I", len(variables))
    for name, array in variables.items():
        out += ct2_variable(name, array)
    aliases = aliases or {}
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += ct2_string(alias) + ct2_string(target)
    return out


WEIGHT = np.arange(12, dtype=np.float32).reshape(3, 4) / 7.0
BIAS = np.array([0.5, -1.25, 3.0], dtype=np.float16)
EMBED = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
VARIABLES = {
    "encoder/layer_0/linear/weight": WEIGHT,
    "encoder/layer_0/linear/bias": BIAS,
    "decoder/embeddings/weight": EMBED,
    "num_heads": np.array(6, dtype=np.int32),
    "decoder/scale_embeddings": np.array(1, dtype=np.int8),
}
ALIASES = {"decoder/projection/weight": "decoder/embeddings/weight"}


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(ct2_model_bytes(VARIABLES, ALIASES))
    return path


def test_reads_spec_revision_and_arrays(model_path: Path) -> None:
    model = read_ct2(model_path)
    assert isinstance(model, Ct2Model)
    assert model.spec == "WhisperSpec"
    assert model.revision == 3
    assert set(model.variables) == set(VARIABLES)
    weight = model.tensor("encoder/layer_0/linear/weight")
    assert weight.dtype == np.float32
    assert weight.shape == (3, 4)
    np.testing.assert_array_equal(weight, WEIGHT)
    bias = model.tensor("encoder/layer_0/linear/bias")
    assert bias.dtype == np.float16
    np.testing.assert_array_equal(bias, BIAS)
    np.testing.assert_array_equal(model.tensor("decoder/embeddings/weight"), EMBED)


def test_scalars_are_rank_zero_variables(model_path: Path) -> None:
    model = read_ct2(model_path)
    assert model.variables["num_heads"].shape == ()
    assert model.scalar("num_heads") == 6
    assert model.scalar("decoder/scale_embeddings") == 1
    with pytest.raises(ModelError, match="no scalar 'missing'"):
        model.scalar("missing")
    with pytest.raises(ModelError, match="no scalar"):
        model.scalar("encoder/layer_0/linear/weight")  # not rank 0


def test_aliases_resolve_through_tensor(model_path: Path) -> None:
    model = read_ct2(model_path)
    assert model.aliases == ALIASES
    np.testing.assert_array_equal(model.tensor("decoder/projection/weight"), EMBED)
    with pytest.raises(ModelError, match="no variable 'decoder/nothing'"):
        model.tensor("decoder/nothing")


def test_empty_model_and_version_5(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(ct2_model_bytes({}, version=5, spec="", revision=0))
    model = read_ct2(path)
    assert (model.spec, model.revision, model.variables, model.aliases) == ("", 0, {}, {})


def test_utf8_names(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(ct2_model_bytes({"poids/é": np.zeros(2, dtype=np.float32)}))
    assert "poids/é" in read_ct2(path).variables


def test_bfloat16_is_widened_to_float32(tmp_path: Path) -> None:
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    body = ct2_variable("w", bf16, dtype_code=5)
    data = struct.pack("<I", 6) + ct2_string("Spec") + struct.pack("<II", 1, 1) + body + struct.pack("<I", 0)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    array = read_ct2(path).tensor("w")
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, values)


@pytest.mark.parametrize("keep", [0, 3, 10, 40, 100, -20, -1])
def test_truncated_file_raises_model_error(model_path: Path, keep: int) -> None:
    data = model_path.read_bytes()
    model_path.write_bytes(data[:keep])
    with pytest.raises(ModelError, match="truncated CTranslate2 file") as caught:
        read_ct2(model_path)
    assert str(model_path) in str(caught.value)


@pytest.mark.parametrize("version", [0, 4, 7, 0x67676D6C])
def test_wrong_version_raises_model_error(tmp_path: Path, version: int) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(ct2_model_bytes(VARIABLES, version=version))
    with pytest.raises(ModelError, match=f"format version {version}") as caught:
        read_ct2(path)
    assert "not a CTranslate2 model.bin" in str(caught.value)


def test_nonexistent_path_raises_model_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "model.bin"
    with pytest.raises(ModelError, match="cannot open CTranslate2 model") as caught:
        read_ct2(path)
    assert str(path) in str(caught.value)
    assert "No such file" in str(caught.value)


def test_trailing_bytes_raise_model_error(model_path: Path) -> None:
    model_path.write_bytes(model_path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="trailing bytes"):
        read_ct2(model_path)


def test_unknown_dtype_raises_model_error(tmp_path: Path) -> None:
    body = ct2_variable("w", np.zeros(2, dtype=np.float32), dtype_code=9)
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<I", 6) + ct2_string("S") + struct.pack("<II", 1, 1) + body + struct.pack("<I", 0))
    with pytest.raises(ModelError, match="'w' has unknown dtype code 9"):
        read_ct2(path)


def test_shape_that_does_not_match_the_data_raises_model_error(tmp_path: Path) -> None:
    raw = np.zeros(5, dtype=np.float32).tobytes()
    body = ct2_string("w") + struct.pack("<BII", 2, 2, 3) + struct.pack("<BI", 0, len(raw)) + raw
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<I", 6) + ct2_string("S") + struct.pack("<II", 1, 1) + body + struct.pack("<I", 0))
    with pytest.raises(ModelError, match=r"'w' holds 5 values, its shape \[2, 3\] needs 6"):
        read_ct2(path)


@pytest.mark.parametrize("raw_name", [b"abc", b"\xff\xfe\0"])
def test_malformed_string_raises_model_error(tmp_path: Path, raw_name: bytes) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<I", 6) + struct.pack("<H", len(raw_name)) + raw_name + b"\0" * 16)
    with pytest.raises(ModelError, match="malformed string"):
        read_ct2(path)
